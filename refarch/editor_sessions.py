"""Signed-in editor sessions held server-side (table `editor_sessions`, migration 0015).

A session cookie is signed, not stored: without a server-side record, a copy of a signed-in cookie
keeps working after its owner signs out. The cookie carries a random id; the row says it is still
signed in; signing out deletes the row. One primary-key lookup per request that needs to know.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from refarch.db import Connection


def start(conn: Connection, *, lifetime: timedelta) -> str:
    """A new signed-in session's id (and forget the expired ones: sign-ins are rare, so this stays small)."""
    session_id = secrets.token_urlsafe(32)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM editor_sessions WHERE expires_at < now()")
        cur.execute(
            "INSERT INTO editor_sessions (id, expires_at) VALUES (%s, now() + %s)",
            (session_id, lifetime),
        )
    return session_id


def is_live(conn: Connection, session_id: str) -> bool:
    """True while the session is signed in (not signed out, not expired)."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM editor_sessions WHERE id = %s AND expires_at > now()", (session_id,))
        return cur.fetchone() is not None


def end(conn: Connection, session_id: str) -> None:
    """Sign the session out everywhere its cookie was copied to."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM editor_sessions WHERE id = %s", (session_id,))
