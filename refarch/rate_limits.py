"""Rate-limit counters in Postgres (table `rate_limit_counters`, migration 0007): fixed windows per key.

Shared by every process that reaches the database, which is what makes a limit per client address
hold across gunicorn workers and Fargate tasks. Queries are parameterised; time is the database's.
"""

from __future__ import annotations

import random

from refarch.db import Connection, fetch_one

# Expired rows are reused by their key; now and then the ones nobody reuses are removed.
PURGE_SHARE = 0.001


def increment(conn: Connection, key: str, *, window_seconds: int, amount: int = 1) -> int:
    """Count `amount` hits for `key` in its current window (a new window once the last expired); the total."""
    with conn.cursor() as cur:
        if random.random() < PURGE_SHARE:
            cur.execute("DELETE FROM rate_limit_counters WHERE expires_at < now() - interval '1 hour'")
        cur.execute(
            "INSERT INTO rate_limit_counters AS c (key, hits, expires_at)"
            " VALUES (%s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (key) DO UPDATE SET"
            "  hits = CASE WHEN c.expires_at <= now() THEN EXCLUDED.hits ELSE c.hits + EXCLUDED.hits END,"
            "  expires_at = CASE WHEN c.expires_at <= now() THEN EXCLUDED.expires_at ELSE c.expires_at END"
            " RETURNING hits",
            (key, amount, window_seconds),
        )
        return int(fetch_one(cur)[0])


def hits(conn: Connection, key: str) -> int:
    """Hits counted for `key` in its current window (0 when none or expired)."""
    with conn.cursor() as cur:
        cur.execute("SELECT hits FROM rate_limit_counters WHERE key = %s AND expires_at > now()", (key,))
        row = cur.fetchone()
    return int(row[0]) if row else 0


def window_end(conn: Connection, key: str) -> float | None:
    """When `key`'s current window ends (seconds since the epoch), or None when it has none."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT extract(epoch FROM expires_at) FROM rate_limit_counters WHERE key = %s AND expires_at > now()",
            (key,),
        )
        row = cur.fetchone()
    return float(row[0]) if row else None


def clear(conn: Connection, key: str | None = None) -> int:
    """Forget one key's counter (or every counter when `key` is None); how many were removed."""
    with conn.cursor() as cur:
        if key is None:
            cur.execute("DELETE FROM rate_limit_counters")
        else:
            cur.execute("DELETE FROM rate_limit_counters WHERE key = %s", (key,))
        return cur.rowcount
