"""`refarch bench long-text`: long documents through chunking and Emu, next to the raw model.

On an embedded Postgres with the articles source and pgvector, with the local all-MiniLM-L6-v2
model (a window of 256 word pieces):

- the corpus: long troubleshooting guides (refarch_local.articles.guide), each many chunks;
- raw model: the same chunk texts embedded straight through the model (the ceiling: no database,
  no index), and the time the splitter takes to cut them;
- Emu: the corpus through the bulk lane's code path (`Emu.process`): chunks per second, embedding
  requests, chunks per request;
- one paragraph of a 40-chunk document edited: how many chunks Emu embeds again (the rest are
  reused from the index).

Benchmarks print and write their numbers; they assert nothing (tests check behaviour).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from refarch.db import connect, migrate
from refarch.emu.worker import BatchOutcome
from refarch.lanes.messages import SyncMessage, bulk_messages
from refarch.runtime import Runtime
from refarch.settings import Settings
from refarch.source import load as load_source
from refarch.source.chunking import chunker_for
from refarch_local import articles
from refarch_local.bench_report import publish
from refarch_local.database import LocalDatabase
from refarch_local.search_bench import fresh_database
from refarch_local.supervisor import local_model

PARAGRAPHS = 60  # ~15 chunks of 256 word pieces each
EDITED_PARAGRAPHS = 200  # ~40 chunks


def run_long_text_bench(*, quick: bool, json_path: Path | None, markdown_path: Path | None) -> dict[str, Any]:
    documents = 10 if quick else 60
    with tempfile.TemporaryDirectory(prefix="refarch-bench-long-") as home:
        server = LocalDatabase(Path(home) / "pg")
        try:
            results = _measure(server.start(), Path(home), documents)
        finally:
            server.stop()
    return publish(results, _markdown, json_path=json_path, markdown_path=markdown_path)


def _measure(admin_dsn: str, home: Path, documents: int) -> dict[str, Any]:
    dsn = fresh_database(admin_dsn, "bench_long_text")
    conn = connect(dsn)
    with conn:
        articles.create_table(conn)
        with conn.cursor() as cur:
            for n in range(documents):
                body = "\n\n".join(articles.guide(n, PARAGRAPHS))
                cur.execute(
                    "INSERT INTO articles (article_id, title, author, body) VALUES (%s, %s, 'Bench', %s)",
                    (str(articles.article_id(10_000 + n)), f"Guide {n}", body),
                )
    conn.close()
    source = load_source("articles")
    migrate(dsn, source=source)
    embedder = local_model()
    settings = Settings(
        database_url=dsn,
        home=home,
        source="articles",
        embedder="local",
        vector_backend="pgvector",
        live_queue_url=None,
        bulk_queue_url=None,
        sqs_endpoint_url=None,
    )
    runtime = Runtime(settings, application_name="refarch-bench")
    runtime.embedder = embedder
    chunker = chunker_for(source.chunking, embedder)

    with runtime.db.transaction() as conn2, conn2.cursor() as cur:
        cur.execute("SELECT id, version, embedding_text FROM source_rows ORDER BY id")
        rows = cur.fetchall()
    started = time.perf_counter()
    texts = [chunk.text for _, _, text in rows for chunk in chunker.split(text)]
    split_seconds = time.perf_counter() - started
    embedder.embed(texts[:8])  # warm the model
    started = time.perf_counter()
    embedder.embed(texts)
    raw_seconds = time.perf_counter() - started

    work = [(pid, version, "sync") for pid, version, _ in rows]
    bodies = {f"m{n}": m.model_dump_json() for n, m in enumerate(bulk_messages(work, source="bootstrap"))}
    runtime.emu.warm_up()
    started = time.perf_counter()
    outcome = runtime.emu.process(bodies)
    emu_seconds = time.perf_counter() - started

    edited = _edit_one_paragraph(runtime, dsn)
    return {
        "long_text": {
            "documents": documents,
            "chunks": len(texts),
            "chunks_per_document": round(len(texts) / documents, 1),
            "split_ms_per_document": round(split_seconds * 1000 / documents, 2),
            "raw_model_chunks_per_second": round(len(texts) / raw_seconds, 1),
            "emu_chunks_per_second": round(outcome.chunks_embedded / emu_seconds, 1),
            "emu_embedding_requests": outcome.embed_calls,
            "emu_chunks_per_request": round(outcome.chunks_embedded / max(1, outcome.embed_calls), 1),
            "emu_failures": len(outcome.failures),
            **edited,
        }
    }


def _edit_one_paragraph(runtime: Runtime, dsn: str) -> dict[str, Any]:
    """A 40-chunk document indexed, then one paragraph in its middle edited: the chunks embedded each time."""
    key = str(articles.article_id(99_999))
    parts = articles.guide(7, EDITED_PARAGRAPHS)
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO articles (article_id, title, author, body) VALUES (%s, 'Forty chunks', 'Bench', %s)",
            (key, "\n\n".join(parts)),
        )
    first = _sync(runtime, key)
    parts[EDITED_PARAGRAPHS // 2] = parts[EDITED_PARAGRAPHS // 2].replace("go on", "carry on")
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE articles SET body = %s WHERE article_id = %s", ("\n\n".join(parts), key))
    edit = _sync(runtime, key)
    conn.close()
    return {
        "edited_document_chunks": first.chunks_embedded,
        "edit_chunks_embedded": edit.chunks_embedded,
        "edit_chunks_reused": edit.chunks_reused,
    }


def _sync(runtime: Runtime, key: str) -> BatchOutcome:
    with runtime.db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, version FROM source_rows WHERE key = %s", (key,))
        pid, version = cur.fetchone() or (0, 0)
    message = SyncMessage(product_id=pid, version=version, op="update", source="change")
    return runtime.emu.process({"m": message.model_dump_json()})


def _markdown(results: dict[str, Any]) -> str:
    r = results["long_text"]
    lines = [
        "| Measure | Result |",
        "| --- | --- |",
        f"| Corpus | {r['documents']} long documents, {r['chunks']} chunks ({r['chunks_per_document']} per document) |",
        f"| Splitting (semantic-text-splitter, model's tokenizer) | {r['split_ms_per_document']} ms per document |",
        f"| Raw model (chunk texts straight through the model) | {r['raw_model_chunks_per_second']} chunks/s |",
        f"| Emu (split, reuse check, embed, upsert, ledger) | {r['emu_chunks_per_second']} chunks/s |",
        f"| Embedding requests | {r['emu_embedding_requests']} ({r['emu_chunks_per_request']} chunks each) |",
        f"| One paragraph of a {r['edited_document_chunks']}-chunk document edited | "
        f"{r['edit_chunks_embedded']} chunks embedded, {r['edit_chunks_reused']} reused |",
    ]
    return "\n".join(lines) + "\n"
