"""Queries on `sync_state` (the ledger of what each index generation holds) and `embed_calls`.

The ledger is kept per index generation (refarch.generations): the same product is indexed
once per model, so each generation has its own row per product.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2.extras

from refarch.db import Connection

MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class LedgerEntry:
    """What the index holds for one product, per the ledger."""

    product_id: int
    indexed_version: int
    content_hash: str | None
    status: str
    attempts: int


def get_many(conn: Connection, ids: list[int], *, generation: int | None = None) -> dict[int, LedgerEntry]:
    """Ledger entries for these ids in one generation (default: the active one, which search reads)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT product_id, indexed_version, content_hash, status, attempts FROM sync_state"
            " WHERE product_id = ANY(%s) AND generation = coalesce(%s, active_generation())",
            (list(ids), generation),
        )
        return {r[0]: LedgerEntry(*r) for r in cur.fetchall()}


def states(conn: Connection, ids: list[int]) -> dict[int, tuple[str, int, str | None]]:
    """(status, indexed version, last error) of these products in the active generation (dead-letter reasons)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT product_id, status, indexed_version, last_error FROM sync_state"
            " WHERE product_id = ANY(%s) AND generation = active_generation()",
            (list(ids),),
        )
        return {r[0]: (r[1], r[2], r[3]) for r in cur.fetchall()}


def record_indexed(conn: Connection, entries: list[tuple[int, int, str | None, str]], *, generation: int) -> None:
    """Record (product_id, version, content_hash, status) as indexed/deleted in one generation.

    The version guard makes the ledger monotonic: a late or duplicate message can never move
    it backwards.
    """
    if not entries:
        return
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO sync_state AS s (generation, product_id, indexed_version, content_hash, status, last_error,"
            " attempts, indexed_at, updated_at)"
            " SELECT v.generation, v.product_id, v.version, v.content_hash, v.status, NULL, 0, now(), now()"
            " FROM (VALUES %s) AS v (generation, product_id, version, content_hash, status)"
            " ON CONFLICT (generation, product_id) DO UPDATE SET indexed_version = EXCLUDED.indexed_version,"
            " content_hash = EXCLUDED.content_hash, status = EXCLUDED.status, last_error = NULL, attempts = 0,"
            " indexed_at = now(), updated_at = now()"
            # A row re-inserted under a deleted id: its versions continue past the ledger's (0012), and
            # rows re-inserted before that migration started again at version 1.
            " WHERE s.indexed_version <= EXCLUDED.indexed_version"
            " OR (s.status = 'deleted' AND EXCLUDED.status = 'indexed')",
            [(generation, *entry) for entry in entries],
            template="(%s::bigint, %s::bigint, %s::bigint, %s::text, %s::text)",
        )


def record_failed(conn: Connection, failures: dict[int, str], *, generation: int) -> None:
    """Mark products failed in one generation with the reason; count the attempt. The indexed version is kept."""
    if not failures:
        return
    rows = [(generation, pid, reason[:MAX_ERROR_CHARS]) for pid, reason in failures.items()]
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO sync_state AS s (generation, product_id, status, last_error, attempts, updated_at)"
            " SELECT v.generation, v.product_id, 'failed', v.reason, 1, now()"
            " FROM (VALUES %s) AS v (generation, product_id, reason)"
            " ON CONFLICT (generation, product_id) DO UPDATE SET status = 'failed', last_error = EXCLUDED.last_error,"
            " attempts = s.attempts + 1, updated_at = now()",
            rows,
            template="(%s::bigint, %s::bigint, %s::text)",
        )


def record_embed_call(conn: Connection, model: str, texts: int) -> None:
    """Append one provider call to the cost audit."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO embed_calls (model, texts) VALUES (%s, %s)", (model, texts))


def lock_products(conn: Connection, ids: list[int]) -> None:
    """Serialise work on these products until the transaction ends (sorted: no deadlocks).

    FIFO groups already keep one product on one worker; this makes it true even for deliveries
    outside the queue's guarantees (redrives, repairs, tests with concurrent workers).
    """
    with conn.cursor() as cur:
        for pid in sorted(set(ids)):
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (pid,))
