"""Queries on `sync_outbox`: claim unsent rows, mark them sent, prune, report backlog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from refarch.db import Connection, fetch_one


@dataclass(frozen=True)
class OutboxRow:
    """One captured change."""

    id: int
    product_id: int
    op: str
    version: int
    created_at: datetime


def claim(conn: Connection, limit: int) -> list[OutboxRow]:
    """Lock up to `limit` unsent rows for this transaction; rows another relay holds are skipped."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, product_id, op, version, created_at FROM sync_outbox WHERE enqueued_at IS NULL"
            " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        )
        return [OutboxRow(*r) for r in cur.fetchall()]


def mark_enqueued(conn: Connection, ids: list[int]) -> None:
    """Record that SQS accepted these rows."""
    with conn.cursor() as cur:
        cur.execute("UPDATE sync_outbox SET enqueued_at = now() WHERE id = ANY(%s)", (ids,))


def prune(conn: Connection, older_than_hours: float) -> int:
    """Delete rows enqueued longer ago than this; return how many."""
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM sync_outbox WHERE enqueued_at < now() - make_interval(secs => %s)",
            (older_than_hours * 3600,),
        )
        return cur.rowcount


def backlog(conn: Connection) -> tuple[int, float]:
    """(unsent rows, age in seconds of the oldest unsent row)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
            " FROM sync_outbox WHERE enqueued_at IS NULL"
        )
        count, age = fetch_one(cur)
        return int(count), float(age)


def pending_at_least(conn: Connection, limit: int) -> int:
    """Unsent rows, counted up to `limit` (enough to decide the lane without scanning a huge backlog)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM (SELECT 1 FROM sync_outbox WHERE enqueued_at IS NULL LIMIT %s) AS pending",
            (limit,),
        )
        return int(fetch_one(cur)[0])
