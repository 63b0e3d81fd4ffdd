"""Bootstrap: load every existing row onto the bulk lane as plan -> fan-out of batches -> finalize.

In AWS these are three Lambdas in a Step Functions Map; locally the same synthesized state
machine runs them (refarch_local/stepfunctions.py). Re-runnable and resumable: an unfinished run is
resumed (its done ranges are not redone), and rows already indexed at their current version
are not sent again. It converges deletes too: a product the ledger still holds but the table no
longer has gets its delete sent again, so after a bootstrap and a drained queue the index equals
the database, whatever messages were lost before.
"""

from __future__ import annotations

from typing import Any

from refarch.db import Database, fetch_one
from refarch.generations import LIVE_STATUSES, GenerationError
from refarch.lanes.messages import bulk_messages
from refarch.lanes.queues import SyncQueue
from refarch.observability import logger


class RangeBusyError(RuntimeError):
    """A range is pending but locked by another worker: retry later (the Map's retry policy does)."""


def plan_bootstrap(
    db: Database, *, range_size: int, fresh: bool = False, generation: int | None = None
) -> dict[str, Any]:
    """Create (or resume) a run for an index generation and return its unfinished ranges as Map items.

    `generation` is the index generation to fill (refarch.generations): by default the active
    one; a re-index passes the building one. The run sends what that generation's ledger lacks;
    Emu applies every message to every live generation, and its ledger skips what each holds.

    `fresh` abandons a run in progress instead of resuming it: for when the queue it filled was
    lost (the local in-memory SQS server restarted), so its done ranges must be redone.

    Each item is ~80 bytes of JSON: 1M rows at 1,000 per range is ~80 KB, inside Step
    Functions' 256 KB payload limit (docs/pelican.md: beyond that, a Distributed Map).
    """
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("LOCK TABLE bootstrap_runs IN SHARE ROW EXCLUSIVE MODE")
        cur.execute(
            "SELECT id, status FROM index_generations WHERE id = coalesce(%s, active_generation())", (generation,)
        )
        found = cur.fetchone()
        if found is None or found[1] not in LIVE_STATUSES:
            raise GenerationError(
                f"index generation {generation} does not exist or was dropped: a bootstrap fills a live one"
                " (`refarch reindex --list`)"
            )
        generation = int(found[0])
        if fresh:
            cur.execute(
                "UPDATE bootstrap_runs SET status = 'failed', finished_at = now(),"
                " error = 'abandoned: a fresh run was requested' WHERE status = 'running' AND generation = %s",
                (generation,),
            )
        cur.execute("SELECT id FROM bootstrap_runs WHERE status = 'running' AND generation = %s", (generation,))
        row = cur.fetchone()
        if row:
            run_id = row[0]
            logger.info("resuming bootstrap run", extra={"run_id": run_id, "generation": generation})
        else:
            # The id space covers products and every product the ledger still holds (deletes to converge).
            cur.execute(
                "SELECT (SELECT count(*) FROM source_rows), coalesce(min(id), 1), coalesce(max(id), 0) FROM ("
                " SELECT id FROM source_rows UNION ALL"
                " SELECT product_id FROM sync_state WHERE generation = %s AND status <> 'deleted') AS ids",
                (generation,),
            )
            total, low, high = fetch_one(cur)
            cur.execute(
                "INSERT INTO bootstrap_runs (range_size, total_rows, generation) VALUES (%s, %s, %s) RETURNING id",
                (range_size, total, generation),
            )
            run_id = fetch_one(cur)[0]
            cur.execute(
                "INSERT INTO bootstrap_ranges (run_id, range_no, first_id, last_id)"
                " SELECT %s, n, %s + n * %s, %s + (n + 1) * %s - 1"
                " FROM generate_series(0, GREATEST((%s - %s) / %s, -1)) AS n",
                (run_id, low, range_size, low, range_size, high, low, range_size),
            )
            logger.info("bootstrap planned", extra={"run_id": run_id, "rows": total, "generation": generation})
        cur.execute(
            "SELECT range_no, first_id, last_id FROM bootstrap_ranges WHERE run_id = %s AND status = 'pending'"
            " ORDER BY range_no",
            (run_id,),
        )
        ranges = [{"run_id": run_id, "range_no": n, "first_id": a, "last_id": b} for n, a, b in cur.fetchall()]
    return {"run_id": run_id, "generation": generation, "ranges": ranges}


def run_batch(db: Database, queue: SyncQueue, *, run_id: int, range_no: int) -> dict[str, Any]:
    """Enqueue one range's rows that are not indexed at their current version, and its lost deletes,
    on the bulk lane.

    The work list is (product_id, version, op) items, sent 100 per bulk message (a 1,000-row range
    is 10 messages, one SendMessageBatch call); Emu re-reads each row, so it decides itself
    whether an item is an upsert or a delete.

    The range row is claimed FOR UPDATE SKIP LOCKED, so two workers never take the same rows;
    it is marked done in the same transaction, after SQS accepted every row. A crash leaves it
    pending for the next run. A pending range another worker holds raises RangeBusyError, which
    the Map retries: an item succeeds only once its range is done.
    """
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT r.first_id, r.last_id, r.status, b.generation FROM bootstrap_ranges r"
            " JOIN bootstrap_runs b ON b.id = r.run_id WHERE r.run_id = %s AND r.range_no = %s"
            " FOR UPDATE OF r SKIP LOCKED",
            (run_id, range_no),
        )
        claimed = cur.fetchone()
        if claimed is None:
            cur.execute("SELECT status FROM bootstrap_ranges WHERE run_id = %s AND range_no = %s", (run_id, range_no))
            if (cur.fetchone() or ("done",))[0] == "pending":
                # Another worker holds it, or a dead one whose connection Postgres has not dropped yet:
                # fail this item so the Map retries it later, rather than finish with the range unsent.
                raise RangeBusyError(f"range {range_no} of bootstrap run {run_id} is held by another worker")
        if claimed is None or claimed[2] == "done":
            return {"run_id": run_id, "range_no": range_no, "enqueued": 0, "skipped": 0, "messages": 0, "taken": False}
        first_id, last_id, _, generation = claimed
        # Compared with the ledger of the generation this run fills.
        cur.execute(
            "SELECT p.id, p.version, (s.status = 'indexed' AND s.indexed_version >= p.version) AS current"
            " FROM source_rows p LEFT JOIN sync_state s ON s.product_id = p.id AND s.generation = %s"
            " WHERE p.id BETWEEN %s AND %s ORDER BY p.id",
            (generation, first_id, last_id),
        )
        rows = cur.fetchall()
        todo: list[tuple[int, int, str]] = [(pid, version, "sync") for pid, version, current in rows if not current]
        # Products the ledger says the index still holds (or failed to delete) but the table no
        # longer has: their delete may have been lost (a purged queue, an expired or dropped
        # message), so send it again. Emu re-reads the row, so a re-inserted id is synced instead.
        cur.execute(
            "SELECT s.product_id, s.indexed_version + 1 FROM sync_state s"
            " WHERE s.generation = %s AND s.product_id BETWEEN %s AND %s AND s.status <> 'deleted'"
            " AND NOT EXISTS (SELECT 1 FROM source_rows p WHERE p.id = s.product_id) ORDER BY s.product_id",
            (generation, first_id, last_id),
        )
        todo += [(pid, max(version, 1), "delete") for pid, version in cur.fetchall()]
        messages = bulk_messages(todo, source="bootstrap")
        queue.send(messages)
        skipped = len(rows) - sum(1 for _, _, op in todo if op == "sync")
        _mark_outbox_covered(cur, [(pid, version) for pid, version, _ in todo])
        cur.execute(
            "UPDATE bootstrap_ranges SET status = 'done', enqueued = %s, skipped = %s, updated_at = now()"
            " WHERE run_id = %s AND range_no = %s",
            (len(todo), skipped, run_id, range_no),
        )
    return {
        "run_id": run_id,
        "range_no": range_no,
        "enqueued": len(todo),
        "skipped": skipped,
        "messages": len(messages),
        "taken": True,
    }


def _mark_outbox_covered(cur: Any, sent: list[tuple[int, int]]) -> None:
    """Mark unsent outbox rows as enqueued when a message just sent covers them.

    A message for product P at version v covers every change of P up to v (Emu re-reads the row),
    so the relay need not send them again. Rows the relay is sending right now are skipped.
    """
    if not sent:
        return
    cur.execute(
        "UPDATE sync_outbox SET enqueued_at = now() WHERE id IN ("
        " SELECT o.id FROM sync_outbox o"
        " JOIN unnest(%s::bigint[], %s::bigint[]) AS s (product_id, version)"
        " ON o.product_id = s.product_id AND o.version <= s.version"
        " WHERE o.enqueued_at IS NULL FOR UPDATE OF o SKIP LOCKED)",
        ([pid for pid, _ in sent], [version for _, version in sent]),
    )


def finalize_bootstrap(db: Database, *, run_id: int) -> dict[str, Any]:
    """Mark the run complete with its counts (or leave it running if ranges remain)."""
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE status = 'pending'), coalesce(sum(enqueued), 0), coalesce(sum(skipped), 0)"
            " FROM bootstrap_ranges WHERE run_id = %s",
            (run_id,),
        )
        pending, enqueued, skipped = fetch_one(cur)
        status = "running" if pending else "complete"
        cur.execute(
            "UPDATE bootstrap_runs SET status = %s, enqueued = %s, skipped = %s,"
            " finished_at = CASE WHEN %s = 'complete' THEN now() END WHERE id = %s",
            (status, enqueued, skipped, status, run_id),
        )
    result = {
        "run_id": run_id,
        "status": status,
        "pending_ranges": int(pending),
        "enqueued": int(enqueued),
        "skipped": int(skipped),
    }
    logger.info("bootstrap finalized", extra=result)
    return result


def fail_bootstrap(db: Database, *, run_id: int, error: str) -> None:
    """Record why a run failed (the Step Functions catch); a later run starts afresh."""
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE bootstrap_runs SET status = 'failed', error = %s, finished_at = now() WHERE id = %s",
            (error[:2000], run_id),
        )
