"""`refarch demo`: the whole system on one machine, as supervised processes.

The supervisor owns the embedded Postgres (pgserver) and starts each other component as its
own process with the same command a person would run by hand (`refarch sqs-server`,
`refarch pelican listen`, `refarch emu worker`, `refarch web`); they find each other through
REFARCH_HOME/runtime.json. A component that dies is restarted. Ctrl-C stops everything in
reverse order.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from refarch.observability import log_to_file
from refarch.settings import ConfigurationError, Settings
from refarch.source import SourceError
from refarch_local.supervisor import CONFIGURATION_ERROR_EXIT, Supervisor, port_is_free


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


def run_demo(
    *, rows: int, web_port: int, exit_when_synced: bool, timeout: float | None = None, sqs_port: int | None = None
) -> int:
    """Run the local stack; return the process exit code (`sqs_port` None: 9324 when free)."""
    settings = Settings()
    console = Console(stderr=True)
    if not port_is_free(web_port):
        console.print(f"[red]port {web_port} is in use: pass --port N[/red]")
        return 2
    try:
        supervisor = Supervisor(settings, web_port=web_port, sqs_port=sqs_port, console=console)
    except SourceError as err:
        print_refusal(console, err)
        return CONFIGURATION_ERROR_EXIT
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
        source = supervisor.source
        if source.is_builtin_products:
            kept = "catalog: kept the existing products and their edits (`refarch db seed --rows N` adds more)"
            console.print(kept if inserted is None else f"catalog: seeded {inserted} products")
        else:
            console.print(f"source: {source.qualified_table} (from {source.path})")
            console.print(
                f"{source.name}: kept the existing rows"
                if inserted is None
                else f"{source.name}: seeded {inserted} rows"
            )
        _bootstrap_with_progress(supervisor, console, deadline)
        if supervisor.fatal.is_set():
            return CONFIGURATION_ERROR_EXIT
        if exit_when_synced:
            code = _wait_synced(supervisor, deadline)
            timed_out = code == 1 and deadline_passed(deadline)
            print(json.dumps(_summary(supervisor, started, started_wall, timed_out=timed_out)), flush=True)
            return code
        return show_status_until_stopped(supervisor, console, stop)
    except ConfigurationError as err:
        console.print(f"[red]{err}[/red]")
        return CONFIGURATION_ERROR_EXIT
    except SourceError as err:
        print_refusal(console, err)
        return CONFIGURATION_ERROR_EXIT
    except KeyboardInterrupt:
        return 0
    finally:
        console.print("stopping…")
        supervisor.stop()


def print_refusal(console: Console, err: SourceError) -> None:
    """Every problem of a refused definition on a line of its own, as written (no markup, no wrapping)."""
    console.print(f"[red]source definition refused: {escape(err.where)}[/red]", soft_wrap=True)
    for problem in err.problems:
        console.print(f"  - {escape(problem)}", soft_wrap=True)


def show_status_until_stopped(supervisor: Supervisor, console: Console, stop: threading.Event) -> int:
    """Keep one status line up to date until `stop` (or Ctrl-C); return the exit code.

    On a terminal the line is redrawn twice a second. In a log file or a pipe Rich draws a live line
    once, when it ends, so the status (a Postgres query and five requests to the queue server) is
    asked for then, not twice a second for a line nobody sees.
    """
    redrawn = console.is_terminal
    shown = False
    try:
        with Live(console=console, refresh_per_second=2) as live:
            try:
                while not stop.wait(0.5):
                    if supervisor.fatal.is_set():
                        return CONFIGURATION_ERROR_EXIT
                    if redrawn:
                        live.update(status_line(supervisor.status()))
                        shown = True
            finally:
                if not redrawn and not supervisor.fatal.is_set():
                    try:
                        live.update(status_line(supervisor.status()))
                        shown = True
                    except Exception:  # the database or the queue away as it stops: no last line, not a traceback
                        pass
        return 0
    finally:
        # Rich ends the live line only on a terminal; in a log file or a pipe the last status line
        # would run into the next message ("stopping…").
        if shown and not console.is_terminal:
            console.line()


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
