"""The embedded Postgres 16 + pgvector (the `pgserver` package), data under REFARCH_HOME."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from pathlib import Path

import psycopg2

# pgserver creates its command wrappers (pg_ctl, initdb, ...) at import time, so they are not visible to mypy.
from pgserver._commands import pg_ctl  # type: ignore[attr-defined]
from pgserver.postgres_server import PostgresServer, get_server
from pgserver.utils import DiskList

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
        """Release this process's handle (stops the server if it was the last one).

        pgserver counts the processes using a server in pgdata/.handle_pids.json and stops it when
        the last one lets go. What it misses is made up for here: a user killed with SIGKILL never
        lets go (its pid stays, and the server outlived every later run); after restart() pgserver
        still watches the postmaster that was replaced (it found that one gone, and left the new one
        running); and it keeps its handle for the next start() in this process even when it did not
        stop the server, so that start() would neither count this process again nor start a server
        stopped meanwhile.
        """
        if self._server is None:
            return
        user = self._server.system_user
        handles = DiskList(self.pgdata / ".handle_pids.json")
        live = [pid for pid in handles.get() if pid == os.getpid() or _alive(pid)]
        handles.put(live)
        self._server.cleanup()
        self._server = None
        PostgresServer._instances.pop(self.pgdata, None)
        if not [pid for pid in live if pid != os.getpid()] and self.postmaster_pid() is not None:
            with contextlib.suppress(subprocess.CalledProcessError):  # stopped meanwhile: nothing to do
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)


def _alive(pid: int) -> bool:
    """Whether a process with this id is running (a zombie, killed but not yet reaped, never lets go either)."""
    if Path("/proc/self/stat").exists():  # Linux
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)  # signal 0 delivers nothing: it only checks
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
