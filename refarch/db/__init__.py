"""Postgres access: connections, migrations, and finding the database to use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from refarch.observability import logger
from refarch.settings import ConfigurationError, Settings
from refarch.source import Source, capture
from refarch.source import load as load_source

# Two-key advisory lock space for schema work; Emu's per-product locks use the one-key space.
MIGRATION_LOCK = (0x7265, 1)

Connection = psycopg2.extensions.connection

_Row = TypeVar("_Row")
_RowCo = TypeVar("_RowCo", covariant=True)


class _RowCursor(Protocol[_RowCo]):
    """Any psycopg2 cursor: tuple rows, or dict rows from a RealDictCursor."""

    def fetchone(self) -> _RowCo | None: ...


def fetch_one(cur: _RowCursor[_Row]) -> _Row:
    """The next row of a query that always returns one (an aggregate, EXISTS, RETURNING); a missing row is a bug."""
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row where one must exist")
    return row


SERVER_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"


def connect(dsn: str, *, autocommit: bool = False, application_name: str = "refarch") -> Connection:
    """Open a new connection that fails fast and notices a dead peer, on both ends."""
    conn = psycopg2.connect(
        dsn,
        connect_timeout=10,
        application_name=application_name,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
        # The server's side too: a Lambda killed mid-transaction vanishes without closing its socket;
        # with these, Postgres drops it (and its locks) within ~25 s instead of the OS's 2 hours.
        options=" ".join(filter(None, [psycopg2.extensions.parse_dsn(dsn).get("options"), SERVER_KEEPALIVES])),
    )
    conn.autocommit = autocommit
    return conn


class Database:
    """A DSN plus one cached connection per thread (Lambda reuses it across invocations)."""

    def __init__(
        self,
        dsn: str,
        *,
        application_name: str = "refarch",
        on_connect: Callable[[Connection], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.application_name = application_name
        self.on_connect = on_connect  # e.g. registering a type adapter on every new connection
        self._local = threading.local()

    def connect(self, *, autocommit: bool = False) -> Connection:
        """A new connection the caller owns and closes."""
        conn = connect(self.dsn, autocommit=autocommit, application_name=self.application_name)
        if self.on_connect is not None:
            self.on_connect(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """This thread's connection inside a transaction: commit on success, roll back on error.

        A connection that failed is closed and replaced on the next call, so a database
        restart costs one failed attempt, not a dead process.
        """
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = self.connect()
        try:
            with conn:
                yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            conn.close()
            raise

    def keeps_connection(self) -> bool:
        """Whether this thread holds an open kept connection (the next transaction() reuses it)."""
        conn = getattr(self._local, "conn", None)
        return conn is not None and not conn.closed

    def close(self) -> None:
        """Close this thread's cached connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def with_database(dsn: str, name: str) -> str:
    """The same server's URL for another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in the order they apply."""
    folder = resources.files("refarch.db") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, (folder / name).read_text()) for name in names]


def migrations_through(up_to: str | None = None) -> list[tuple[str, str]]:
    """The migrations in order, up to and including `up_to` (a file name or its number, "0010"); None: all."""
    files = migration_files()
    if up_to is None:
        return files
    numbers = [name.partition("_")[0] for name, _ in files]
    wanted = up_to.partition("_")[0]
    if wanted not in numbers or (up_to != wanted and up_to not in (name for name, _ in files)):
        raise ValueError(f"no migration {up_to!r}; the migrations are {', '.join(name for name, _ in files)}")
    return files[: numbers.index(wanted) + 1]


def migrate(
    dsn: str, *, up_to: str | None = None, source: Source | None = None, source_changes: dict[str, Any] | None = None
) -> list[str]:
    """Apply the migrations not yet applied (up to and including `up_to`, when given), then the source
    definition (`source`, else REFARCH_SOURCE's, else products: refarch.source.capture); return the
    migrations' names. `source_changes`, when given, receives what the source step found changed
    (refarch.source.capture.apply: a new text needs a re-index; new metadata is being backfilled).

    Idempotent and safe to run concurrently. An invalid definition is refused (SourceError) before any
    migration runs. `up_to` lets upgrade tests build the schema of any past release (no source step).
    """
    if up_to is None and source is None:
        source = load_source(Settings().source)
    applied: list[str] = []
    conn = connect(dsn, autocommit=True, application_name="refarch-migrate")
    try:
        with conn.cursor() as cur:
            # Session-level lock: concurrent callers (two deploys, a custom resource retry) queue up.
            cur.execute("SELECT pg_advisory_lock(%s, %s)", MIGRATION_LOCK)
            if source is not None and not source.is_builtin_products:
                # A table brought by its owner exists before any migration: refuse a definition it
                # cannot serve before anything changes (products is made by the migrations themselves).
                capture.check(conn, source)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT name FROM schema_migrations")
            done = {row[0] for row in cur.fetchall()}
        for name, sql in migrations_through(up_to):
            if name in done:
                continue
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                try:
                    cur.execute(sql)
                    cur.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                    cur.execute("COMMIT")
                except Exception:
                    cur.execute("ROLLBACK")
                    raise
            logger.info("migration applied", extra={"migration": name})
            applied.append(name)
        if up_to is None and source is not None:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                try:
                    changes = capture.apply(conn, source)
                    cur.execute("COMMIT")
                except Exception:
                    cur.execute("ROLLBACK")
                    raise
            if source_changes is not None:
                source_changes.update(changes)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", MIGRATION_LOCK)
    finally:
        conn.close()
    return applied


# The last resort when no database is configured, handed in by whoever starts the process (the
# `refarch` command registers the embedded Postgres of the local runtime). Lambdas and containers
# on AWS register none: a missing database is a configuration error there.
_fallback_database: Callable[[Settings], str] | None = None


def set_fallback_database(start: Callable[[Settings], str] | None) -> None:
    """Register what resolve_dsn uses when nothing else names a database (None: nothing)."""
    global _fallback_database
    _fallback_database = start


def resolve_dsn(settings: Settings, dsn: str | None = None) -> str:
    """The database to use: --dsn, else DATABASE_URL, else the AWS secret, else the one the local runtime
    published, else the registered fallback (locally: the embedded database)."""
    if dsn:
        return dsn
    if settings.database_url:
        return settings.database_url
    if settings.database_secret_arn:
        from refarch.secrets import database_url_from_secret

        return database_url_from_secret(settings.database_secret_arn, settings.aws_region)
    published = settings.local_runtime.get("database_url")
    if published and _reachable(published):
        return published
    if _fallback_database is None:
        raise ConfigurationError(
            "No database configured: set DATABASE_URL or REFARCH_DATABASE_SECRET_ARN "
            "(the `refarch` command starts an embedded one locally)"
        )
    return _fallback_database(settings)


def _reachable(dsn: str) -> bool:
    try:
        connect(dsn).close()
    except psycopg2.OperationalError:
        return False
    return True
