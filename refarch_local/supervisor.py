"""The local stack's supervisor: the embedded Postgres in-process, every other component as its own
process (`refarch sqs-server`, `refarch pelican listen`, `refarch emu worker`, `refarch web`),
restarted when it dies, stopped in reverse order. `refarch demo`, bench and chaos run on it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from refarch.db import connect, fetch_one, migrate
from refarch.lanes.topology import DEFAULT_TOPOLOGY, LaneName, Topology
from refarch.settings import ConfigurationError, Settings, read_local_runtime, write_local_runtime
from refarch.source import load as load_source
from refarch.status import lane_queues, queue_states, sync_counts
from refarch_local import LOCAL_ENV, SUPERVISOR_PID_ENV, seeds
from refarch_local.database import LocalDatabase

if TYPE_CHECKING:
    from refarch.embeddings import LocalEmbedder


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """Any free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# A component exits with this code when its configuration can never work (e.g. a dimension
# mismatch between the embedder and the index): restarting it would not help.
CONFIGURATION_ERROR_EXIT = 2


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


COMMANDS = {
    "listener": lambda supervisor: ["pelican", "listen"],
    "web": lambda supervisor: ["web", "--port", str(supervisor.web_port)],
}


# The cores the local stack's model processes share: all of this machine's, unless REFARCH_LOCAL_CORES
# says fewer. The test suite runs a stack per parallel worker and gives each its share: torch's threads
# wait for each other by spinning, so more model threads than cores burn CPU (measured: 3 processes
# embedding at once on 2 cores spent 1.6x the CPU with 2 threads each as with 1).
LOCAL_CORES_ENV = "REFARCH_LOCAL_CORES"


def local_cores() -> int:
    """The cores the local stack may use (REFARCH_LOCAL_CORES, else this machine's)."""
    given = os.environ.get(LOCAL_CORES_ENV)
    return max(1, int(given)) if given else (os.cpu_count() or 1)


def local_model() -> LocalEmbedder:
    """The local model loaded in this process, its threads the stack's cores (`local_cores`)."""
    from refarch.embeddings import LocalEmbedder

    return LocalEmbedder(threads=local_cores())


@dataclass(frozen=True)
class EmuWorker:
    """One local Emu worker process: its lane, the invocations it runs at once, its model threads."""

    name: str
    lane: LaneName
    concurrency: int
    threads: int


def emu_layout(topology: Topology = DEFAULT_TOPOLOGY, cores: int | None = None) -> list[EmuWorker]:
    """The local Emu workers: each lane its own process(es), as each lane is its own Lambda function.

    The live lane is one process with one model thread (edits are single texts). The bulk lane gets
    the cores: one process per two cores (each process holds its own model, as Lambda's execution
    environments do), its concurrency split between them. Together they run exactly as many
    invocations per lane as the lane's concurrency allows on AWS.
    """
    cores = cores or local_cores()
    workers = [EmuWorker("emu", "live", topology.live.concurrency, 1)]
    total = topology.bulk.concurrency
    processes = max(1, min(total, cores // 2))
    threads = max(1, cores // processes)
    for k in range(processes):
        name = "emu-bulk" if k == 0 else f"emu-bulk-{k + 1}"
        workers.append(EmuWorker(name, "bulk", total // processes + (1 if k < total % processes else 0), threads))
    return workers


@dataclass
class Component:
    """One supervised process: its command, log file and restart count."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's environment
    ready_file: str | None = None  # created under REFARCH_HOME once the process is ready
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self, env: dict[str, str]) -> None:
        """Start (or restart) the process, appending to its log."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            # Own session: Ctrl-C reaches the supervisor only, which then stops components in order.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "refarch_cli", *self.args],
                env={**env, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, wait, then SIGKILL if needed."""
        self.terminate()
        self.wait_stopped(timeout)

    def terminate(self) -> None:
        """SIGTERM (the process stops cleanly on it), without waiting."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 15) -> None:
        """Wait for the process to exit, then SIGKILL it if it has not."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _stop_order(components: list[Component]) -> list[list[Component]]:
    """The components in reverse start order, each Emu worker in one group with the workers next to it."""
    groups: list[list[Component]] = []
    for component in reversed(components):
        emu = component.name == "emu" or component.name.startswith("emu-")
        if emu and groups and all(c.name == "emu" or c.name.startswith("emu-") for c in groups[-1]):
            groups[-1].append(component)
        else:
            groups.append([component])
    return groups


class Supervisor:
    """Starts the local stack, keeps it running, stops it cleanly."""

    def __init__(
        self,
        settings: Settings,
        *,
        web_port: int,
        sqs_port: int | None = None,
        sqs_visibility_timeout: int | None = None,
        sqs_bulk_visibility_timeout: int | None = None,
        console: Console | None = None,
    ) -> None:
        self.settings = settings
        # None: the SQS server's defaults (refarch_local/sqs.py); harnesses pass shorter ones.
        self.sqs_visibility_timeout = sqs_visibility_timeout
        self.sqs_bulk_visibility_timeout = sqs_bulk_visibility_timeout
        self.home = settings.home.resolve()
        self.web_port = web_port
        self.sqs_port = sqs_port or (9324 if port_is_free(9324) else free_port())
        self.console = console or Console(stderr=True)
        self.database = LocalDatabase(self.home)
        # The table this stack syncs (REFARCH_SOURCE, --source): checked now, before anything starts.
        self.source = load_source(settings.source)
        self.dsn = ""
        self.components: list[Component] = []
        self.stop_event = threading.Event()
        self.fatal = threading.Event()
        self._resend_wanted = threading.Event()
        self._resend_running = threading.Lock()

    def env(self) -> dict[str, str]:
        """Environment for every component: same home, same database, quiet local observability."""
        # The page is served over plain http on 127.0.0.1, so the session cookie cannot be Secure-only.
        return {
            **LOCAL_ENV,
            "REFARCH_SESSION_COOKIE_SECURE": "false",
            **os.environ,
            "REFARCH_HOME": str(self.home),
            "DATABASE_URL": self.dsn,
            SUPERVISOR_PID_ENV: str(os.getpid()),
        }

    def start_database(self) -> None:
        """Start the embedded Postgres (unless DATABASE_URL names another), migrate, publish its address.

        Each source syncs in a database of its own (a database syncs one table): products in the
        embedded server's default database, another source in `refarch_<name>` beside it. A shipped
        example's table is made first; the definition is checked before anything changes (SourceError).
        """
        if self.settings.database_url:
            self.dsn = self.settings.database_url
        else:
            self.dsn = self.database.start()
            if not self.source.is_builtin_products:
                self.dsn = self.database.ensure_database(f"refarch_{self.source.name}")
        conn = connect(self.dsn)
        try:
            seeds.prepare_table(conn, self.source)
        finally:
            conn.close()
        migrate(self.dsn, source=self.source)
        write_local_runtime(self.settings, database_url=self.dsn)

    def start_components(self, names: tuple[str, ...] = ("emu", "web")) -> None:
        """Start the SQS server (first: others need its queue URLs), then the named components."""
        if not self.components:
            # Stale queue URLs from a previous run must not be used before the new server publishes them.
            write_local_runtime(
                self.settings, queue_url="", dlq_url="", bulk_queue_url="", bulk_dlq_url="", sqs_endpoint_url=""
            )
            args = ["sqs-server", "--port", str(self.sqs_port)]
            if self.sqs_visibility_timeout:
                args += ["--visibility-timeout", str(self.sqs_visibility_timeout)]
            if self.sqs_bulk_visibility_timeout:
                args += ["--bulk-visibility-timeout", str(self.sqs_bulk_visibility_timeout)]
            sqs = Component("sqs", args, self.home / "logs" / "sqs.log")
            sqs.start(self.env())
            self.components.append(sqs)
            self._wait_for_queue()
            threading.Thread(target=self._watch, name="supervisor", daemon=True).start()
        started = [component for name in names for component in self._components_for(name)]
        for component in started:
            if component.ready_file:
                (self.home / component.ready_file).unlink(missing_ok=True)
            component.start(self.env())
            self.components.append(component)
        self._publish_pids()
        for component in started:
            if component.ready_file:
                self._wait_until_ready(component, self.home / component.ready_file)

    def _components_for(self, name: str) -> list[Component]:
        """The process(es) of one part of the stack: Emu is one worker per lane or more ("emu", "emu-bulk", ...)."""
        if name != "emu":
            return [Component(name, COMMANDS[name](self), self.home / "logs" / f"{name}.log")]
        return [
            Component(
                worker.name,
                [
                    "emu",
                    "worker",
                    "--lane",
                    worker.lane,
                    "--concurrency",
                    str(worker.concurrency),
                    "--ready-file",
                    f"{worker.name}.ready",
                ],
                self.home / "logs" / f"{worker.name}.log",
                env={"REFARCH_LOCAL_MODEL_THREADS": str(worker.threads)},
                ready_file=f"{worker.name}.ready",
            )
            for worker in emu_layout()
        ]

    def _wait_until_ready(self, component: Component, marker: Path, timeout: float = 180) -> None:
        """Wait for a component's readiness marker; a configuration error is raised, not retried."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not marker.exists():
            if not component.alive():
                assert component.process is not None
                if component.process.returncode == CONFIGURATION_ERROR_EXIT:
                    self.fatal.set()
                    raise ConfigurationError(f"{component.name} cannot start:\n{_tail(component.log)}")
                return  # crashed for another reason: the watcher restarts it
            time.sleep(0.1)

    def _wait_for_queue(self, timeout: float = 30) -> None:
        if not self._queue_published(timeout):
            raise RuntimeError(f"local SQS server did not start; see {self.home / 'logs' / 'sqs.log'}")

    def _queue_published(self, timeout: float) -> bool:
        """Wait until the SQS server has published its queue URLs (False when it did not in time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._runtime().get("queue_url"):
                return True
            time.sleep(0.1)
        return False

    def _runtime(self) -> dict[str, Any]:
        return read_local_runtime(self.home)

    def _watch(self) -> None:
        """Restart a component that died (with a growing pause); an SQS restart re-runs the bootstrap."""
        while not self.stop_event.wait(1.0):
            for component in self.components:
                if component.alive() or self.stop_event.is_set():
                    continue
                code = component.process.returncode if component.process else None
                if code == CONFIGURATION_ERROR_EXIT:
                    self.console.print(
                        f"[red]{component.name} cannot start: configuration error (see "
                        f"{component.log}):[/red]\n" + _tail(component.log)
                    )
                    self.fatal.set()
                    return
                self.console.print(
                    f"[yellow]{component.name} exited ({code}); restarting (log: {component.log})[/yellow]"
                )
                if time.monotonic() - component.started_at > 60:
                    component.restarts = 0  # it ran fine for a while: not a crash loop
                if component.name == "sqs":
                    # Its queue URLs die with it; nobody may use them until the new server publishes its own.
                    write_local_runtime(self.settings, queue_url="", dlq_url="", bulk_queue_url="", bulk_dlq_url="")
                if self.stop_event.wait(min(2**component.restarts, 30)):
                    return
                component.restarts += 1
                component.start(self.env())
                self._publish_pids()
                # The local queue lives in memory: whatever it held is re-sent by a bootstrap. A server
                # killed again while starting is simply restarted again by the next round of this loop.
                if component.name == "sqs" and self._queue_published(timeout=30):
                    self.resend_lost_messages()

    def resend_lost_messages(self) -> None:
        """Re-send what a restarted queue server lost: a bootstrap, retried until one completes.

        A bootstrap converges the index to the table, deletes included, so it re-sends exactly what
        is not yet true in the index. One runs at a time; a restart during it asks for one more.
        """
        self._resend_wanted.set()
        if self._resend_running.acquire(blocking=False):
            threading.Thread(target=self._resend_until_done, name="resend", daemon=True).start()

    def _resend_until_done(self) -> None:
        delay = 1.0
        try:
            while self._resend_wanted.is_set() and not self.stop_event.is_set():
                self._resend_wanted.clear()
                try:
                    self.bootstrap()
                except Exception as err:  # the database or the queue away again: try again, never give up
                    self._resend_wanted.set()
                    self.console.print(
                        f"[yellow]re-sending after the queue restart failed ({type(err).__name__}: {err}); "
                        f"retrying in {delay:.0f}s[/yellow]"
                    )
                    if self.stop_event.wait(delay):
                        return
                    delay = min(delay * 2, 30)
        finally:
            self._resend_running.release()
        if self._resend_wanted.is_set():  # asked for while this one was finishing
            self.resend_lost_messages()

    def kill(self, name: str) -> int:
        """SIGKILL a component (fault injection); the supervisor restarts it. Returns the killed pid."""
        component = next(c for c in self.components if c.name == name)
        assert component.process is not None
        component.process.kill()
        return component.process.pid

    def _publish_pids(self) -> None:
        """Write each component's pid to REFARCH_HOME/processes.json (for operators and fault tests)."""
        pids = {c.name: c.process.pid for c in self.components if c.process is not None}
        # Written whole, then renamed into place: a reader never sees a half-written file.
        partial = self.home / f"processes.json.{threading.get_ident()}"
        partial.write_text(json.dumps(pids))
        partial.replace(self.home / "processes.json")

    def stop(self) -> None:
        """Stop components in reverse order, then release the database."""
        self.stop_event.set()
        for group in _stop_order(self.components):
            # The Emu workers of every lane stop together (each finishes its invocations in flight, a
            # second or more); the other components one after another, the reverse of their start.
            for component in group:
                component.terminate()
            for component in group:
                component.wait_stopped()
        self.database.stop()

    def seed(self, rows: int) -> int | None:
        """Seed the source's empty table (the demo catalog, or the articles); existing rows and edits are kept."""
        conn = connect(self.dsn)
        try:
            return seeds.seed_if_empty(conn, self.source, rows)
        finally:
            conn.close()

    def bootstrap(self, on_batch: Any = None, generation: int | None = None) -> dict[str, Any]:
        """Run the bootstrap state machine's synthesized definition with the same handlers
        (filling index generation `generation`, default the active one)."""
        from refarch_local.stepfunctions import run_bootstrap

        os.environ.update(DATABASE_URL=self.dsn, REFARCH_HOME=str(self.home))
        # Always a fresh run: the local queue is in memory, so a previous run's sends are gone.
        return run_bootstrap(on_batch=on_batch, fresh=True, generation=generation)

    def status(self) -> dict[str, Any]:
        """Sync counts plus queue depths."""
        conn = connect(self.dsn)
        try:
            result = sync_counts(conn)
        finally:
            conn.close()
        result.update(queue_states(self._sqs, self._cloudwatch, lane_queues(Settings(home=self.home))))
        return result

    @cached_property
    def _sqs(self) -> Any:
        """One SQS client for every status poll (the local server keeps its port across restarts)."""
        from refarch.lanes.queues import make_sqs_client

        return make_sqs_client(Settings(home=self.home))

    @cached_property
    def _cloudwatch(self) -> Any:
        """One CloudWatch client (the local SQS server publishes the queues' age metric)."""
        from refarch.lanes.queues import make_cloudwatch_client

        return make_cloudwatch_client(Settings(home=self.home))

    def embed_calls_since(self, started: float) -> int:
        """Provider calls recorded by Emu since a wall-clock time."""
        conn = connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM embed_calls WHERE called_at >= to_timestamp(%s)", (started,))
                return int(fetch_one(cur)[0])
        finally:
            conn.close()
