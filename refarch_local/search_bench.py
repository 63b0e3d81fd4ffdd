"""Search benchmarks: relevance per query class and mode, latency per mode, and the query-embedding cache.

`refarch bench relevance` and `refarch bench search` run these alone on an embedded Postgres of
their own; `refarch bench` (make bench) runs them as part of the full benchmark.
Benchmarks print and write their numbers; they assert nothing (tests check behaviour).
"""

from __future__ import annotations

import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refarch import catalog
from refarch.db import Database, connect, migrate, with_database
from refarch.embeddings import Embedder
from refarch.index.pgvector_index import PgVectorIndex
from refarch.index.port import VectorRecord
from refarch.products import embedding_text
from refarch.search.fusion import EQUAL_RRF, FUSION, FusionSettings
from refarch.search.service import SEARCH_MODES, FixedIndex, SearchService
from refarch_local.bench_report import publish
from refarch_local.relevance import CLASSES, EXACT_INTENT, HITS_AT, hit_at, load_query_set, ndcg
from refarch_local.rerank_bench import rerank_comparison, rerank_markdown
from refarch_local.supervisor import local_model

# Queries by meaning and by words: every catalog answers them (the re-index and budget benchmarks search them).
MEANING_QUERIES = (
    "AI",
    "machine learning software for small businesses",
    "comfortable office chair for my back",
    "waterproof tent for family camping",
    "noise cancelling headphones for travel",
    "cast iron pan",
    "toys that teach kids to code",
    "book about neural networks",
    "running shoes",
    "smart sprinkler",
    "espresso machine",
    "fitness tracker that measures sleep",
    "standing desk",
    "warm winter parka",
)
# What search latency is measured on: those, and what people also type (a code without its separators,
# a model code, misspellings: the trigram correction runs when the words match nothing).
LATENCY_QUERIES = (*MEANING_QUERIES, "HE0001977", "XT9", "espreso machine", "wireles headphons")
OPENAI_STANDIN_DELAY_S = 0.15


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest-rank method)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def embedded_catalog(
    dsn: str, rows: int, embedder: Embedder, *, batch: int = 64, changes: Sequence[dict[str, str]] = ()
) -> None:
    """Migrate, seed products 1..rows, apply the query set's `catalog_changes` (new SKUs and names) and index
    them with `embedder` directly (no queue: only search is measured)."""
    migrate(dsn)
    conn = connect(dsn)
    try:
        catalog.seed(conn, rows)
        with conn, conn.cursor() as cur:
            cur.executemany(
                "UPDATE products SET sku = %(new_sku)s, name = %(new_name)s WHERE sku = %(sku)s", list(changes)
            )
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id, sku, name, description, category, price, version FROM products ORDER BY id")
            found = cur.fetchall()
    finally:
        conn.close()
    index = PgVectorIndex(Database(dsn), embedder.dimension)
    index.ensure()
    for start in range(0, len(found), batch):
        chunk = found[start : start + batch]
        vectors = embedder.embed([embedding_text(name, category, text) for _, _, name, text, category, _, _ in chunk])
        index.upsert(
            [
                VectorRecord(
                    pid,
                    vector,
                    {
                        "sku": sku,
                        "name": name,
                        "category": category,
                        "price": float(price),
                        "version": version,
                        "content_hash": "bench",
                    },
                )
                for (pid, sku, name, _, category, price, version), vector in zip(chunk, vectors, strict=True)
            ]
        )
    index.db.close()


def synthetic_catalog(admin_dsn: str, source_dsn: str, size: int, dimension: int) -> str:
    """A database with `size` catalog rows whose vectors are the real ones of `source_dsn` plus noise.

    Embedding 100k texts on a small machine would take ~15 minutes and measure the model again;
    search latency depends on the index size, so the extra vectors are near-copies of real ones.
    """
    admin = connect(admin_dsn, autocommit=True)
    name = f"bench_{size}"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    admin.close()
    dsn = with_database(admin_dsn, name)
    migrate(dsn)
    conn = connect(dsn)
    catalog.seed(conn, size)
    source = connect(source_dsn)
    with source.cursor() as cur:
        cur.execute("SELECT product_id, embedding::text FROM product_vectors ORDER BY product_id")
        real = cur.fetchall()
    source.close()
    PgVectorIndex(Database(dsn), dimension).ensure()
    with conn, conn.cursor() as cur:
        cur.execute("DROP INDEX product_vectors_hnsw")
        cur.execute("CREATE TEMP TABLE real_vectors (n int, embedding vector)")
        cur.executemany(
            "INSERT INTO real_vectors VALUES (%s, %s::vector)", [(n, text) for n, (_, text) in enumerate(real)]
        )
        cur.execute(
            "INSERT INTO product_vectors (product_id, embedding, sku, name, category, price, version, content_hash)"
            " SELECT p.id, r.embedding + (SELECT array_agg((random() - 0.5) * 0.02 + 0 * g + 0 * p.id)::vector"
            "   FROM generate_series(1, %s) AS g), p.sku, p.name, p.category, p.price, p.version, 'synthetic'"
            " FROM products p JOIN real_vectors r ON r.n = (p.id - 1) %% %s",
            (dimension, len(real)),
        )
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute("CREATE INDEX product_vectors_hnsw ON product_vectors USING hnsw (embedding vector_cosine_ops)")
        cur.execute("ANALYZE products")
    conn.close()
    return dsn


def search_latency(service: SearchService, *, queries: int, modes: Sequence[str] = SEARCH_MODES) -> dict[str, Any]:
    """p50/p95 ms of SearchService.search per mode, k=10: with the query embedding, and without it.

    `p50_ms`/`p95_ms`: the query cache is emptied before every timed search, so each one pays for
    its embedding (the texts stay as people type them, so the lexical side matches what it would).
    `cached_p50_ms`/`cached_p95_ms`: the same searches with their vectors cached: ranking and rows
    only, which is what hybrid adds to or saves from semantic, whatever the model costs.
    """
    result: dict[str, Any] = {}
    for q in LATENCY_QUERIES:
        for mode in modes:
            service.search(q, k=10, mode=mode)  # warm the database's caches
    for mode in modes:
        timings: dict[bool, list[float]] = {True: [], False: []}
        for i in range(queries):
            for cached in (False, True):
                if not cached:
                    service.embeddings.clear()
                started = time.perf_counter()
                service.search(LATENCY_QUERIES[i % len(LATENCY_QUERIES)], k=10, mode=mode)
                timings[cached].append((time.perf_counter() - started) * 1000)
        result[mode] = {
            "queries": queries,
            "p50_ms": round(percentile(timings[False], 50), 1),
            "p95_ms": round(percentile(timings[False], 95), 1),
            "cached_p50_ms": round(percentile(timings[True], 50), 1),
            "cached_p95_ms": round(percentile(timings[True], 95), 1),
        }
    return result


# The fusion settings the benchmark compares (the first is what RRF did before weights; FUSION is in use).
FUSION_VARIANTS: dict[str, FusionSettings] = {
    "equal RRF, no confident rule (the old fusion)": EQUAL_RRF,
    "lexical weight 1.5": FusionSettings(lexical=1.5),
    "lexical 1.5, confident lexical <= 5": FusionSettings(lexical=1.5, confident_lexical=5),
    "lexical 1.5, confident lexical <= 20": FusionSettings(lexical=1.5, confident_lexical=20),
    "lexical 2, confident lexical <= 20": FusionSettings(lexical=2.0, confident_lexical=20),
    "lexical 1.5, confident lexical <= 40": FusionSettings(lexical=1.5, confident_lexical=40),
    "in use (FUSION)": FUSION,
}


def _scores(
    service: SearchService, query_set: dict[str, Any], modes: Sequence[str], sku_of: dict[int, str]
) -> dict[str, Any]:
    scores: dict[str, dict[str, dict[str, list[float]]]] = {}
    for item in query_set["queries"]:
        for mode in modes:
            page = service.search(item["query"], k=10, mode=mode)
            ranked = [sku_of[h.product.id] for h in page.hits]
            cell = scores.setdefault(item["class"], {}).setdefault(mode, {"ndcg": [], "hit1": [], "hits": []})
            cell["ndcg"].append(ndcg(ranked, item["judgements"]))
            cell["hit1"].append(1.0 if hit_at(ranked, item["judgements"], cutoff=1) else 0.0)
            cell["hits"].append(1.0 if hit_at(ranked, item["judgements"]) else 0.0)
    return {
        cls: {
            mode: {
                "queries": len(cell["ndcg"]),
                "ndcg_at_10": round(statistics.fmean(cell["ndcg"]), 3),
                "hit_at_1": round(statistics.fmean(cell["hit1"]), 3),
                f"hits_at_{HITS_AT}": round(statistics.fmean(cell["hits"]), 3),
                "hit_at_1_count": int(sum(cell["hit1"])),
            }
            for mode, cell in scores[cls].items()
        }
        for cls in CLASSES
        if cls in scores
    }


def relevance(service: SearchService, query_set: dict[str, Any]) -> dict[str, Any]:
    """nDCG@10, hit@1 and hits@3 per query class and mode over the labelled set."""
    with service.db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, sku FROM products")
        sku_of = dict(cur.fetchall())
    return _scores(service, query_set, SEARCH_MODES, sku_of)


def fusion_variants(service: SearchService, query_set: dict[str, Any]) -> dict[str, Any]:
    """Hybrid's nDCG@10 and hit@1 per query class under each of FUSION_VARIANTS (same query vectors)."""
    with service.db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, sku FROM products")
        sku_of = dict(cur.fetchall())
    result = {}
    for label, settings in FUSION_VARIANTS.items():
        variant = SearchService(service.db, service.targets, fusion=settings)
        variant.embeddings = service.embeddings
        result[label] = {cls: modes["hybrid"] for cls, modes in _scores(variant, query_set, ["hybrid"], sku_of).items()}
    return result


def exact_intent_hit_at_1(result: dict[str, Any], mode: str) -> float:
    """hit@1 over every query of the exact-intent classes together."""
    found = sum(result[cls][mode]["hit_at_1_count"] for cls in EXACT_INTENT if cls in result)
    asked = sum(result[cls][mode]["queries"] for cls in EXACT_INTENT if cls in result)
    return round(found / asked, 3) if asked else 0.0


def relevance_markdown(result: dict[str, Any]) -> str:
    """A row per query class, nDCG@10 and hit@1 per mode, and whether hybrid is at least the better single mode."""
    header = (
        "| Query class | "
        + " | ".join(f"{m} nDCG@10 | {m} hit@1" for m in SEARCH_MODES)
        + " | hybrid ≥ best single mode (both) |"
    )
    lines = [header, "|" + " --- |" * (2 + 2 * len(SEARCH_MODES))]
    for cls, modes in result.items():
        cells = " | ".join(f"{modes[m]['ndcg_at_10']:.3f} | {modes[m]['hit_at_1']:.2f}" for m in SEARCH_MODES)
        met = all(
            modes["hybrid"][metric] >= max(modes["semantic"][metric], modes["lexical"][metric])
            for metric in ("ndcg_at_10", "hit_at_1")
        )
        lines.append(f"| {cls} ({modes['hybrid']['queries']}) | {cells} | {'yes' if met else 'no'} |")
    summary = ", ".join(f"{m} {exact_intent_hit_at_1(result, m):.3f}" for m in SEARCH_MODES)
    return "\n".join(lines) + f"\n\nhit@1 over the exact-intent classes ({', '.join(EXACT_INTENT)}): {summary}\n"


def fusion_variants_markdown(variants: dict[str, Any], singles: dict[str, Any]) -> str:
    """A row per fusion setting: hybrid's exact-intent hit@1, misspelled and paraphrase nDCG@10, and where it
    falls below the better single mode."""
    lines = [
        "| Fusion setting | exact-intent hit@1 | misspelled nDCG@10 | paraphrase nDCG@10"
        " | classes below the better single mode |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, by_class in variants.items():
        merged = {cls: {**singles[cls], "hybrid": cell} for cls, cell in by_class.items()}
        below = [
            cls
            for cls, modes in merged.items()
            if any(
                modes["hybrid"][m] < max(modes["semantic"][m], modes["lexical"][m]) for m in ("ndcg_at_10", "hit_at_1")
            )
        ]
        lines.append(
            f"| {label} | {exact_intent_hit_at_1(merged, 'hybrid'):.3f} | {by_class['misspelled']['ndcg_at_10']:.3f}"
            f" | {by_class['paraphrase']['ndcg_at_10']:.3f} | {', '.join(below) or 'none'} |"
        )
    return "\n".join(lines) + "\n"


def query_cache_latency(dsn: str, *, rows: int, queries: int) -> dict[str, Any]:
    """Search p50/p95 for fresh and for repeated queries with OpenAI embeddings answered after ~150 ms.

    The real `openai` client talks to the OpenAI stand-in, which holds every embedding request
    OPENAI_STANDIN_DELAY_S before answering (a realistic round trip to the provider).
    """
    from refarch.embeddings import OpenAIEmbedder
    from refarch_local.standins import OpenAIStandIn

    with OpenAIStandIn() as stand_in:
        embedder = OpenAIEmbedder(
            api_key="sk-local-bench",
            model="text-embedding-3-small",
            dimensions=256,
            base_url=stand_in.base_url,
            max_retries=0,
        )
        embedded_catalog(dsn, rows, embedder, batch=500)
        service = SearchService(Database(dsn), FixedIndex(embedder, PgVectorIndex(Database(dsn), embedder.dimension)))
        texts = [f"{LATENCY_QUERIES[i % len(LATENCY_QUERIES)]} {i}" for i in range(queries)]
        result: dict[str, Any] = {"delay_ms": int(OPENAI_STANDIN_DELAY_S * 1000), "queries": queries}
        for label in ("fresh", "repeated"):
            calls_before = stand_in.embed_calls
            stand_in.delay_next(OPENAI_STANDIN_DELAY_S, times=queries)
            timings = []
            for text in texts:
                started = time.perf_counter()
                service.search(text, k=10)
                timings.append((time.perf_counter() - started) * 1000)
            stand_in.cancel_delays()
            result[label] = {
                "p50_ms": round(percentile(timings, 50), 1),
                "p95_ms": round(percentile(timings, 95), 1),
                "embedding_requests": stand_in.embed_calls - calls_before,
            }
        service.db.close()
    return result


def prepare_and_measure(
    admin_dsn: str,
    *,
    latency_sizes: Sequence[int],
    latency_queries: int,
    console: Any,
    cache: bool,
    embedder: Any = None,
    comparisons: bool = True,
    cache_rows: int | None = None,
) -> dict[str, Any]:
    """Relevance on its own database of the server at `admin_dsn` (and, unless told not to, under each fusion
    setting and with reranking), then latency per mode at each size and the cache (over a catalog of
    `cache_rows` products, at most the relevance set's size, which is the default)."""
    query_set = load_query_set()
    embedder = embedder or local_model()
    dsn = fresh_database(admin_dsn, "relevance")
    console.print(
        f"[bold]search relevance[/bold]: {query_set['catalog_rows']} products, "
        f"{len(query_set['queries'])} labelled queries x {len(SEARCH_MODES)} modes …"
    )
    embedded_catalog(dsn, query_set["catalog_rows"], embedder, changes=query_set.get("catalog_changes", ()))
    service = SearchService(Database(dsn), FixedIndex(embedder, PgVectorIndex(Database(dsn), embedder.dimension)))
    results: dict[str, Any] = {"relevance": relevance(service, query_set)}
    if comparisons:
        results["fusion_settings"] = fusion_variants(service, query_set)
        results["rerank"] = rerank_comparison(service, query_set)
    if latency_sizes:
        results["search_latency_by_mode"] = {}
        for size in latency_sizes:
            console.print(f"[bold]search latency[/bold] per mode at {size} products …")
            sized = (
                dsn
                if size == query_set["catalog_rows"]
                else synthetic_catalog(admin_dsn, dsn, size, embedder.dimension)
            )
            timed = SearchService(
                Database(sized), FixedIndex(embedder, PgVectorIndex(Database(sized), embedder.dimension))
            )
            results["search_latency_by_mode"][str(size)] = search_latency(timed, queries=latency_queries)
    if cache:
        console.print("[bold]query-embedding cache[/bold], the OpenAI stand-in answering after 150 ms …")
        catalog_rows = query_set["catalog_rows"]
        results["query_cache"] = query_cache_latency(
            fresh_database(admin_dsn, "cache"), rows=min(cache_rows or catalog_rows, catalog_rows), queries=50
        )
    return results


def markdown(results: dict[str, Any]) -> str:
    """The relevance table, and the latency and cache tables when measured."""
    parts = ["### Relevance (nDCG@10 and hit@1 per query class and mode)\n\n", relevance_markdown(results["relevance"])]
    if "fusion_settings" in results:
        parts.append("\n### What each fusion setting does (hybrid)\n\n")
        parts.append(fusion_variants_markdown(results["fusion_settings"], results["relevance"]))
    if "rerank" in results:
        parts.append("\n### Hybrid with and without reranking\n\n")
        parts.append(rerank_markdown(results["rerank"]))
    if "search_latency_by_mode" in results:
        parts.append(
            "\n### Search latency per mode (p50 / p95 ms, k = 10; with the query embedding, and with the"
            " query vector cached)\n\n"
        )
        parts.append(
            "| Products | "
            + " | ".join(f"{m} | {m}, vector cached" for m in SEARCH_MODES)
            + " |\n|"
            + " --- |" * (1 + 2 * len(SEARCH_MODES))
            + "\n"
        )
        for size, modes in results["search_latency_by_mode"].items():
            cells = " | ".join(
                f"{t['p50_ms']} / {t['p95_ms']} | {t['cached_p50_ms']} / {t['cached_p95_ms']}"
                for t in (modes[m] for m in SEARCH_MODES)
            )
            parts.append(f"| {size} | {cells} |\n")
    if "query_cache" in results:
        cache = results["query_cache"]
        parts.append(
            f"\n### Query-embedding cache (OpenAI stand-in answering after {cache['delay_ms']} ms, "
            f"{cache['queries']} queries, hybrid)\n\n| Queries | p50 ms | p95 ms | Embedding requests |\n"
            "| --- | --- | --- | --- |\n"
        )
        for label in ("fresh", "repeated"):
            c = cache[label]
            parts.append(f"| {label} | {c['p50_ms']} | {c['p95_ms']} | {c['embedding_requests']} |\n")
    return "".join(parts)


def run_search_bench(
    *,
    latency: bool,
    latency_sizes: Sequence[int] = (10_000, 100_000),
    latency_queries: int = 200,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
) -> dict[str, Any]:
    """`refarch bench relevance` / `refarch bench search`: on an embedded Postgres in a temporary directory."""
    from rich.console import Console

    from refarch_local.database import LocalDatabase

    console = Console(stderr=True)
    home = Path(tempfile.mkdtemp(prefix="refarch-search-bench-"))
    server = LocalDatabase(home)
    try:
        results = prepare_and_measure(
            server.start(),
            latency_sizes=latency_sizes if latency else (),
            latency_queries=latency_queries,
            console=console,
            cache=latency,
        )
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return publish(results, markdown, json_path=json_path, markdown_path=markdown_path)


def fresh_database(admin_dsn: str, name: str) -> str:
    """An empty database `name` on the server (dropped first if it exists)."""
    admin = connect(admin_dsn, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    admin.close()
    return with_database(admin_dsn, name)
