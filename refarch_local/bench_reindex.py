"""Bench step: re-index every row to a second model while searching continuously (docs/reindex.md).

The re-index is the Reindex state machine's synthesized definition, run in this process as
`refarch reindex` runs it (`refarch_local.stepfunctions.run_reindex`), its steps configured with
the second model as a deploy would configure the reindex function. The second model is the OpenAI
stand-in (64-d vectors, computed at once), so the time measured is the pipeline's: bootstrap
sends, the bulk lane, Emu's skip of generation 1, upserts into a new pgvector table, the
completeness checks and the switch. A search thread runs throughout, as a web task would, with
its own cache of the active generation.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from refarch import generations
from refarch.db import Database, connect, fetch_one
from refarch.embeddings import Embedder
from refarch.generations import EmbedderSpec, reindex
from refarch.generations.targets import ACTIVE_CACHE_SECONDS, GenerationTargets
from refarch.lanes.topology import BOOTSTRAP_FINALIZE_HANDLER
from refarch.runtime import Runtime
from refarch.search.service import SearchService
from refarch.settings import Settings
from refarch_local.stepfunctions import run_reindex

SECOND_MODEL = EmbedderSpec("openai", "text-embedding-3-small", 64)
# The reindex function's settings that configure the second model, as a deploy with it would set them.
SECOND_MODEL_ENVIRONMENT = {
    "REFARCH_EMBEDDER": SECOND_MODEL.kind,
    "REFARCH_OPENAI_MODEL": SECOND_MODEL.model,
    "REFARCH_OPENAI_DIMENSIONS": str(SECOND_MODEL.dimensions),
}
# The state machine's waits at 1/300: its 60 s poll of the building generation every 0.2 s, so the
# time to the switch is the pipeline's, not the poll's.
TIME_SCALE = 1 / 300
TIMEOUT_SECONDS = 3600.0


def reindex_while_searching(settings: Settings, embedder: Embedder, *, queries: tuple[str, ...]) -> dict[str, Any]:
    """Run the Reindex state machine to the second model (Start, Fill through the bulk lane, polls, Switch);
    count searches, errors and empty pages meanwhile."""
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
    environment = {
        **SECOND_MODEL_ENVIRONMENT,
        "DATABASE_URL": settings.database_url,
        "REFARCH_HOME": str(settings.home),
    }
    filled: list[float] = []

    def fill_done(handler: str, result: Any) -> None:
        if handler == BOOTSTRAP_FINALIZE_HANDLER and not filled:
            filled.append(time.monotonic() - started)

    try:
        with _environment(environment):
            import lambdas.reindex

            # A cold start of the reindex function with the second model's settings (its steps run here).
            lambdas.reindex.runtime = Runtime(application_name="reindex")
            started = time.monotonic()
            outcome = run_reindex(time_scale=TIME_SCALE, timeout_seconds=TIMEOUT_SECONDS, on_result=fill_done)
            seconds = time.monotonic() - started
        if "active" not in outcome:
            raise RuntimeError(f"the re-index found nothing to do: {outcome}")
        # Searches go on until every cache of the active generation has turned over.
        time.sleep(ACTIVE_CACHE_SECONDS + 1)
    finally:
        stop.set()
        searcher.join()
    with db.transaction() as tx:
        model_ids = {g.id: g.model_id for g in generations.list_generations(tx)}
    previous_model, new_model = model_ids[outcome["previous"]], model_ids[outcome["active"]]
    conn = connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM products")
            rows = int(fetch_one(cur)[0])
            cur.execute("SELECT coalesce(sum(texts), 0), count(*) FROM embed_calls WHERE model = %s", (new_model,))
            texts, calls = fetch_one(cur)
    finally:
        conn.close()
    total = sum(counts.values())
    # Leave the stack as it was: the first generation active again, the second dropped.
    reindex.rollback(targets)
    reindex.collect_garbage(targets, timedelta(0))
    return {
        "rows": rows,
        "from_model": previous_model,
        "to_model": new_model,
        "seconds_to_switch": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1),
        "bootstrap_send_seconds": round(filled[0], 2) if filled else None,
        "embedded_texts": int(texts),
        "embed_calls": int(calls),
        "searches": total,
        "search_errors": counts["errors"],
        "empty_pages": counts["empty"],
        "error_rate": round(counts["errors"] / total, 6) if total else None,
        "first_errors": errors[:3],
    }


@contextmanager
def _environment(variables: Mapping[str, str]) -> Iterator[None]:
    """This process's environment with these variables set, restored after."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
