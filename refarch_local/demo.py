"""`refarch demo`: the whole system on one machine, as supervised processes.

The supervisor owns the embedded Postgres (pgserver) and starts each other component as its
own process with the same command a person would run by hand (`refarch sqs-server`,
`refarch pelican listen`, `refarch emu worker`, `refarch web`); they find each other through
REFARCH_HOME/runtime.json. A component that dies is restarted. Ctrl-C stops everything in
reverse order.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg2
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from refarch import catalog
from refarch.db import connect, fetch_one, migrate
from refarch.observability import log_to_file
from refarch.settings import ConfigurationError, Settings, read_local_runtime, write_local_runtime
from refarch.status import lane_queues, queue_states, sync_counts
from refarch.topology import DEFAULT_TOPOLOGY, LaneName, Topology
from refarch_local import LOCAL_ENV, SUPERVISOR_PID_ENV
from refarch_local.database import LocalDatabase


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
        return s.getsockname()[1]


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
    cores = cores or os.cpu_count() or 1
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
    process: subprocess.Popen | None = None
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
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Supervisor:
    """Starts the local stack, keeps it running, stops it cleanly."""

    def __init__(
        self,
        settings: Settings,
        *,
        web_port: int,
        sqs_port: int | None = None,
        sqs_visibility_timeout: int | None = None,
        console: Console | None = None,
    ) -> None:
        self.settings = settings
        self.sqs_visibility_timeout = sqs_visibility_timeout
        self.home = settings.home.resolve()
        self.web_port = web_port
        self.sqs_port = sqs_port or (9324 if port_is_free(9324) else free_port())
        self.console = console or Console(stderr=True)
        self.database = LocalDatabase(self.home)
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
        """Start the embedded Postgres (unless DATABASE_URL names another), migrate, publish its address."""
        self.dsn = self.settings.database_url or self.database.start()
        migrate(self.dsn)
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
        (self.home / "processes.json").write_text(json.dumps(pids))

    def stop(self) -> None:
        """Stop components in reverse order, then release the database."""
        self.stop_event.set()
        for component in reversed(self.components):
            component.stop()
        self.database.stop()

    def seed(self, rows: int) -> int | None:
        """Load the demo catalog into an empty table; an existing catalog (and its edits) is kept."""
        conn = connect(self.dsn)
        try:
            return catalog.seed_if_empty(conn, rows)
        finally:
            conn.close()

    def bootstrap(self, on_batch: Any = None, generation: int | None = None) -> dict[str, Any]:
        """Run Plan -> Map(Batch) -> Finalize with the same handlers and concurrency as AWS
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
        from refarch.queue import make_sqs_client

        return make_sqs_client(Settings(home=self.home))

    @cached_property
    def _cloudwatch(self) -> Any:
        """One CloudWatch client (the local SQS server publishes the queues' age metric)."""
        from refarch.queue import make_cloudwatch_client

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


def status_line(status: dict[str, Any]) -> str:
    """One human line: products, indexed, pending, failed, queue, DLQ, oldest pending."""
    return (
        f"products {status['products']} · indexed {status['indexed']} · pending {status['pending']} · "
        f"failed {status['failed']} · live queue {status.get('live_queue_depth')} "
        f"({_age(status.get('live_queue_age_seconds'))}) · bulk queue {status.get('bulk_queue_depth')} "
        f"({_age(status.get('bulk_queue_age_seconds'))}) · dlq {status.get('dlq_depth')} · "
        f"oldest pending {status['oldest_pending_seconds']:.1f}s"
    )


def _age(seconds: float | None) -> str:
    return "age ?" if seconds is None else f"oldest {seconds:.0f}s"


def run_demo(*, rows: int, web_port: int, exit_when_synced: bool, timeout: float | None = None) -> int:
    """Run the local stack; return the process exit code."""
    settings = Settings()
    console = Console(stderr=True)
    if not port_is_free(web_port):
        console.print(f"[red]port {web_port} is in use: pass --port N[/red]")
        return 2
    supervisor = Supervisor(settings, web_port=web_port, console=console)
    # The terminal shows progress and sentences; this process's JSON log lines go to a log file.
    log_to_file(supervisor.home / "logs" / "demo.log")
    started_wall, started = time.time(), time.monotonic()
    # --timeout counts from the command's start and bounds every wait after start-up (the bootstrap
    # follow included): a script that passes it must get its summary line whatever gets stuck.
    deadline = started + timeout if exit_when_synced and timeout else None
    stop = threading.Event()
    # Ctrl-C and SIGTERM both unwind through `finally` (SIGINT explicitly: a shell may start us ignoring it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        console.print(f"[bold]refarch demo[/bold] · home {supervisor.home}")
        supervisor.start_database()
        supervisor.start_components(("emu", "web"))
        console.print(
            f"web page: [link]http://127.0.0.1:{web_port}[/link] (starting) · logs in {supervisor.home / 'logs'}"
        )
        inserted = supervisor.seed(rows)
        if inserted is None:
            console.print("catalog: kept the existing products and their edits (`refarch db seed --rows N` adds more)")
        else:
            console.print(f"catalog: seeded {inserted} products")
        _bootstrap_with_progress(supervisor, console, deadline)
        if supervisor.fatal.is_set():
            return CONFIGURATION_ERROR_EXIT
        if exit_when_synced:
            code = _wait_synced(supervisor, deadline)
            timed_out = code == 1 and deadline_passed(deadline)
            print(json.dumps(_summary(supervisor, started, started_wall, timed_out=timed_out)), flush=True)
            return code
        with Live(console=console, refresh_per_second=2) as live:
            while not stop.wait(0.5):
                if supervisor.fatal.is_set():
                    return CONFIGURATION_ERROR_EXIT
                live.update(status_line(supervisor.status()))
        return 0
    except ConfigurationError as err:
        console.print(f"[red]{err}[/red]")
        return CONFIGURATION_ERROR_EXIT
    except KeyboardInterrupt:
        return 0
    finally:
        console.print("stopping…")
        supervisor.stop()


def _summary(supervisor: Supervisor, started: float, started_wall: float, *, timed_out: bool) -> dict[str, Any]:
    """The --exit-when-synced JSON line; when the stack cannot be asked, the counts are null with the reason."""
    seconds = round(time.monotonic() - started, 2)
    summary: dict[str, Any] = {
        "rows": None,
        "seconds": seconds,
        "rows_per_s": None,
        "embed_calls": None,
        "failures": None,
        "indexed": None,
        "timed_out": timed_out,
    }
    try:
        status = supervisor.status()
        summary.update(
            rows=status["products"],
            rows_per_s=round(status["products"] / seconds, 2) if seconds else None,
            embed_calls=supervisor.embed_calls_since(started_wall),
            failures=status["failed"] + (status.get("dlq_depth") or 0),
            indexed=status["indexed"],
        )
    except Exception as err:  # e.g. the database is down: still one line, saying why the counts are missing
        summary["error"] = f"status unavailable: {type(err).__name__}: {err}"
    return summary


def deadline_passed(deadline: float | None) -> bool:
    """True once a time.monotonic() deadline has passed (never when there is none)."""
    return deadline is not None and time.monotonic() >= deadline


def follow_indexing(
    supervisor: Supervisor,
    on_status: Callable[[dict[str, Any]], None],
    enqueue_finished: threading.Event,
    stop: threading.Event,
    deadline: float | None = None,
) -> bool:
    """Poll the status for a progress display until nothing is pending after the enqueue.

    Returns True when everything enqueued is indexed (or failed for good); False when stopped,
    when a component cannot start, or when the deadline passed first.
    """
    while not stop.wait(0.5):
        if supervisor.fatal.is_set() or deadline_passed(deadline):
            return False
        try:
            status = supervisor.status()
        except psycopg2.Error:  # the database restarting: ask again (the deadline still applies)
            continue
        on_status(status)
        if status["pending"] == 0 and enqueue_finished.is_set():
            return True
    return False


def _bootstrap_with_progress(supervisor: Supervisor, console: Console, deadline: float | None = None) -> None:
    total = supervisor.status()["products"]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f}/s"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        enqueued = progress.add_task("enqueued", total=total, rate=0.0)
        indexed = progress.add_task("indexed ", total=total, rate=0.0)
        started = time.monotonic()
        enqueue_finished, stop = threading.Event(), threading.Event()

        def show(status: dict[str, Any]) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(indexed, completed=status["indexed"], rate=status["indexed"] / elapsed)

        watcher = threading.Thread(
            target=follow_indexing, args=(supervisor, show, enqueue_finished, stop, deadline), daemon=True
        )
        watcher.start()
        sent = {"n": 0}

        def on_batch(result: dict[str, Any]) -> None:
            sent["n"] += result["enqueued"] + result["skipped"]
            progress.update(enqueued, completed=sent["n"], rate=sent["n"] / max(time.monotonic() - started, 1e-6))

        try:
            result = supervisor.bootstrap(on_batch=on_batch)
            progress.update(enqueued, completed=total)
            enqueue_finished.set()
            if not any(c.name == "listener" for c in supervisor.components):
                # Started after the first bootstrap: the seed's outbox rows are covered by it by now.
                supervisor.start_components(("listener",))
            console.print(
                f"bootstrap run {result['run_id']}: {result['enqueued']} enqueued, {result['skipped']} already indexed"
            )
            watcher.join()
        finally:
            stop.set()  # Ctrl-C or an error: the watcher must not outlive the progress display


def _wait_synced(supervisor: Supervisor, deadline: float | None) -> int:
    """Wait until nothing is left to do or the deadline passes.

    0 when every row is indexed; 1 when time ran out, or when the queue and outbox are empty but
    some products are marked failed (their messages have left the queue for the DLQ).
    """
    while not deadline_passed(deadline):
        if supervisor.fatal.is_set():
            return CONFIGURATION_ERROR_EXIT
        try:
            status = supervisor.status()
        except psycopg2.Error:  # the database restarting: ask again until the deadline
            time.sleep(0.5)
            continue
        idle = status["outbox_backlog"] == 0 and (status.get("queue_depth") or 0) == 0
        if status["pending"] == 0 and idle:
            return 0 if status["failed"] == 0 else 1
        time.sleep(0.5)
    return 1
