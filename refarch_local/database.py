"""The embedded Postgres 16 + pgvector (the `pgserver` package), data under REFARCH_HOME."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psycopg2

# pgserver creates its command wrappers (pg_ctl, initdb, ...) at import time, so they are not visible to mypy.
from pgserver._commands import pg_ctl  # type: ignore[attr-defined]
from pgserver.postgres_server import PostgresServer, get_server

from refarch.db import with_database

# pgserver logs every step at INFO through the root logger; keep the console for our own output.
logging.getLogger("pgserver").setLevel(logging.WARNING)


class LocalDatabase:
    """Starts (or joins) the embedded server; it stops when the last process using it exits."""

    def __init__(self, home: Path) -> None:
        self.pgdata = Path(home).resolve() / "pgdata"
        self._server: PostgresServer | None = None
        self.dsn = ""

    def start(self) -> str:
        """Start the server if needed and return its DSN (a Unix socket, no TCP port)."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        self._server = get_server(self.pgdata)
        self.dsn = self._server.get_uri()
        return self.dsn

    def ensure_database(self, name: str) -> str:
        """The DSN of database `name` on this server, created if missing (start() first)."""
        admin = psycopg2.connect(self.dsn)
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            admin.close()
        return with_database(self.dsn, name)

    def postmaster_pid(self) -> int | None:
        """The server's process id, or None when it is not running."""
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except FileNotFoundError:
            return None

    def restart(self) -> None:
        """Restart the server in place (fault injection: every connection is cut)."""
        assert self._server is not None, "start() first"
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.pgdata, user=self._server.system_user)

    def stop(self) -> None:
        """Release this process's handle (stops the server if it was the last one)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
