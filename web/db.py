"""The shared runtime (built once per process) and a database connection per request, as in the Flask tutorial."""

from __future__ import annotations

from flask import Flask, current_app, g

from refarch.db import Connection
from refarch.runtime import Runtime


def get_runtime() -> Runtime:
    """The process-wide Runtime: database, embedder, vector index and queue, each built on first use."""
    runtime: Runtime = current_app.config["REFARCH_RUNTIME"]
    return runtime


def get_db() -> Connection:
    """This request's connection, opened on first use and closed when the request ends.

    Use it as `with get_db() as conn:` so each block is one transaction (commit or roll back).
    """
    if "db" not in g:
        g.db = get_runtime().db.connect()
    connection: Connection = g.db
    return connection


def close_db(exc: BaseException | None = None) -> None:
    """Close the request's connection, if it opened one."""
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    """Register the per-request cleanup."""
    app.teardown_appcontext(close_db)
