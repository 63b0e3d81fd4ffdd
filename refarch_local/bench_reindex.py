"""Bench step: re-index every row to a second model while searching continuously (docs/reindex.md).

The second model is the OpenAI stand-in (64-d vectors, computed at once), so the time measured
is the pipeline's: bootstrap sends, the bulk lane, Emu's skip of generation 1, upserts into a new
pgvector table, the completeness check and the switch. A search thread runs throughout, as a
web task would, with its own cache of the active generation.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from refarch.db import Database, connect, fetch_one
from refarch.embeddings import Embedder
from refarch.generations import EmbedderSpec, reindex
from refarch.generations.targets import ACTIVE_CACHE_SECONDS, GenerationTargets
from refarch.search.service import SearchService
from refarch.settings import Settings

SECOND_MODEL = EmbedderSpec("openai", "text-embedding-3-small", 64)


def reindex_while_searching(
    settings: Settings,
    embedder: Embedder,
    *,
    queries: tuple[str, ...],
    bootstrap: Callable[[int], Any],
    queue_idle: Callable[[], bool],
) -> dict[str, Any]:
    """Start a re-index, fill it through the bulk lane, switch; count searches, errors and empty pages meanwhile."""
    assert settings.database_url
    db = Database(settings.database_url)
    targets = GenerationTargets(settings, db, configured_embedder=lambda: embedder)
    web_db = Database(settings.database_url)
    search = SearchService(web_db, GenerationTargets(settings, web_db, configured_embedder=lambda: embedder))
    counts: Counter[str] = Counter()
    errors: list[str] = []
    stop = threading.Event()

    def search_continuously() -> None:
        n = 0
        while not stop.is_set():
            try:
                page = search.search(queries[n % len(queries)], k=10)
                counts["empty" if not page.hits else "answered"] += 1
            except Exception as err:  # counted: the measure is the error rate
                counts["errors"] += 1
                errors.append(f"{type(err).__name__}: {err}")
            n += 1

    searcher = threading.Thread(target=search_continuously, name="bench-search", daemon=True)
    searcher.start()
    try:
        started = time.monotonic()
        building = reindex.start(targets, SECOND_MODEL)
        bootstrap(building.id)
        sent = time.monotonic() - started
        previous, new = reindex.wait_and_switch(
            targets,
            resend=lambda: bootstrap(building.id),
            queue_idle=queue_idle,
            poll_seconds=0.2,
            timeout_seconds=3600,
        )
        seconds = time.monotonic() - started
        # Searches go on until every cache of the active generation has turned over.
        time.sleep(ACTIVE_CACHE_SECONDS + 1)
    finally:
        stop.set()
        searcher.join()
    conn = connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM products")
            rows = int(fetch_one(cur)[0])
            cur.execute("SELECT coalesce(sum(texts), 0), count(*) FROM embed_calls WHERE model = %s", (new.model_id,))
            texts, calls = fetch_one(cur)
    finally:
        conn.close()
    total = sum(counts.values())
    # Leave the stack as it was: the first generation active again, the second dropped.
    reindex.rollback(targets)
    reindex.collect_garbage(targets, timedelta(0))
    return {
        "rows": rows,
        "from_model": previous.model_id,
        "to_model": new.model_id,
        "seconds_to_switch": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1),
        "bootstrap_send_seconds": round(sent, 2),
        "embedded_texts": int(texts),
        "embed_calls": int(calls),
        "searches": total,
        "search_errors": counts["errors"],
        "empty_pages": counts["empty"],
        "error_rate": round(counts["errors"] / total, 6) if total else None,
        "first_errors": errors[:3],
    }


def render_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The bench table's rows for this step."""
    return [
        (
            f"Re-index {result['rows']} rows to a second model (bulk lane, until the switch)",
            f"{result['seconds_to_switch']} s ({result['rows_per_s']} rows/s; {result['embedded_texts']} texts "
            f"in {result['embed_calls']} requests; {result['from_model']} → {result['to_model']})",
            "each row embedded once",
        ),
        (
            "Search during the re-index: errors / empty pages",
            f"{result['search_errors']} / {result['empty_pages']} of {result['searches']} searches",
            "0 / 0",
        ),
    ]
