"""The bench's edit probe: edit products at a steady pace and time each commit until search returns it.

Used by `refarch bench` (refarch_local/bench.py) when the system is idle and while a bootstrap runs.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from refarch import catalog
from refarch.db import Database, connect, fetch_one
from refarch.products import embedding_text

# An edit the search path has not returned at its new version this long after its commit counts as
# not found (reported next to the percentiles, which cover the edits that were found).
CHANGE_TIMEOUT_S = 30


MOTIFS = ("a lighthouse", "a fox", "a hot-air balloon", "an octopus", "a cactus", "a violin", "a comet", "a tortoise")
COLOURS = ("saffron yellow", "teal", "burgundy", "lavender", "forest green", "coral", "slate grey", "ivory")
PLACES = ("Lisbon", "Kyoto", "Reykjavik", "Marrakesh", "Patagonia", "Tasmania", "Montreal", "Istanbul")


def distinctive_description(n: int) -> str:
    """Another catalog item's description plus a limited-edition motif few others share.

    Catalog descriptions of one kind of product are near-identical in meaning, so a search for one
    cannot single out the edited row; the motif (512 combinations) gives the new text its own meaning.
    """
    motif, colour, place = MOTIFS[n % 8], COLOURS[(n // 8) % 8], PLACES[(n // 64) % 8]
    return (
        f"{catalog.make_product(n).description} This limited edition comes in {colour} with {motif} "
        f"printed on it, made in honour of {place}."
    )


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile of values (nearest-rank method)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def timed_edits(
    dsn: str,
    embedder: Any,
    *,
    rows: int,
    pace: float,
    first: int,
    edits: int | None = None,
    until: threading.Event | None = None,
    origin: float | None = None,
) -> dict[str, Any]:
    """Edit products every `pace` seconds (`edits` of them, or until `until` is set); time each to searchable.

    Before each commit (untimed) the edit's full embedding text (name, category, new
    description) is embedded once: the query that matches exactly the new text. A watcher then
    asks the vector index with that vector, as SearchService does (top 10, no filter), until
    the product is among the hits with the committed version. Edits not found within
    CHANGE_TIMEOUT_S are counted as not found, not dropped.

    `timeline` lists every edit as [seconds from `origin` (a time.monotonic() value; by default
    the first edit) to its commit, milliseconds to searchable or None when not found]: what the
    bench plots over the run.
    """
    from refarch.index.pgvector_index import PgVectorIndex
    from refarch.index.port import SearchFilter

    index = PgVectorIndex(Database(dsn), embedder.dimension)
    # product id -> (query vector for its new text, committed version, commit time)
    pending: dict[int, tuple[list[float], int, float]] = {}
    latencies: list[float] = []
    # product id -> commit time, latency ms (None while pending or when never found), in commit order
    timeline: dict[int, list[tuple[float, float | None]]] = {}
    lock = threading.Lock()
    done = threading.Event()

    def watch() -> None:
        while not (done.is_set() and not pending):
            with lock:
                waiting = list(pending.items())
            for pid, (vector, version, committed_at) in waiting:
                hits = index.query(vector, top_k=10, filter=SearchFilter())
                now = time.monotonic()
                if any(h.id == pid and h.metadata["version"] >= version for h in hits):
                    with lock:
                        pending.pop(pid)
                        latencies.append((now - committed_at) * 1000)
                        timeline[pid][-1] = (committed_at, latencies[-1])
                elif now - committed_at > CHANGE_TIMEOUT_S:
                    with lock:
                        pending.pop(pid)
            time.sleep(0.005)
        index.db.close()  # this thread's connection

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    conn = connect(dsn)
    made = 0
    started = time.monotonic()
    origin = started if origin is None else origin
    i = 0
    while (edits is None or i < edits) and not (until is not None and until.is_set()):
        # A steady pace: each edit at its slot, whatever the query embedding before it took.
        time.sleep(max(0.0, started + i * pace - time.monotonic()))
        pid = 1 + ((first + i) * 7919) % rows
        i += 1
        with lock:
            if pid in pending:  # its previous edit is still being measured: one at a time per product
                continue
        description = distinctive_description(first + i)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT name, category FROM products WHERE id = %s", (pid,))
            name, category = fetch_one(cur)
        vector = embedder.embed([embedding_text(name, category, description)])[0]
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE products SET description = %s WHERE id = %s RETURNING version", (description, pid))
            version = fetch_one(cur)[0]
        committed_at = time.monotonic()
        with lock:
            pending[pid] = (vector, version, committed_at)
            timeline.setdefault(pid, []).append((committed_at, None))
        made += 1
    conn.close()
    done.set()
    watcher.join()
    measured = len(latencies)
    return {
        "edits": made,
        "measured": measured,
        "not_found": made - measured,
        "not_found_after_s": CHANGE_TIMEOUT_S,
        "pace_per_s": round(1 / pace, 1),
        "p50": round(percentile(latencies, 50), 1) if latencies else None,
        "p95": round(percentile(latencies, 95), 1) if latencies else None,
        "p99": round(percentile(latencies, 99), 1) if latencies else None,
        "max": round(max(latencies), 1) if latencies else None,
        "timeline": [
            [round(committed_at - origin, 3), None if ms is None else round(ms, 1)]
            for committed_at, ms in sorted(entry for entries in timeline.values() for entry in entries)
        ],
    }
