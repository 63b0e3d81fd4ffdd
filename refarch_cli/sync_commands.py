"""The sync pipeline's processes, each on its own: Pelican (relay, health check, bootstrap) and the Emu worker."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import click

from refarch.settings import Settings
from refarch_cli.runtime_context import DSN_HELP, local_runtime, settings_with_queue, stop_on_signals


@click.group()
def pelican() -> None:
    """Change capture: the outbox listener and the bootstrap."""


@pelican.command("listen")
@click.option("--dsn", help=DSN_HELP)
@click.option("--poll-seconds", default=2.0, show_default=True, help="Drain at least this often.")
def pelican_listen(dsn: str | None, poll_seconds: float) -> None:
    """Relay the outbox to SQS (live lane; a large backlog to the bulk lane); SIGTERM stops cleanly."""
    from refarch.db import resolve_dsn
    from refarch.lanes.queues import SyncQueue, make_sqs_client
    from refarch.pelican.listener import OutboxRelay

    settings = settings_with_queue()
    sqs = make_sqs_client(settings)
    relay = OutboxRelay(
        resolve_dsn(settings, dsn),
        SyncQueue.for_lane(sqs, settings, "live"),
        poll_seconds=poll_seconds,
        heartbeat_file=_heartbeat_file(settings),
        bulk_queue=SyncQueue.for_lane(sqs, settings, "bulk"),
    )
    stop_on_signals(relay.stop)
    relay.run()


def _heartbeat_file(settings: Settings) -> Path:
    return settings.home / "pelican.heartbeat"


@pelican.command("health")
@click.option("--max-age", default=60.0, show_default=True, help="Seconds without a loop before unhealthy.")
def pelican_health(max_age: float) -> None:
    """Exit 0 if the listener looped recently (the container health check)."""
    from refarch.pelican.listener import heartbeat_age

    age = heartbeat_age(_heartbeat_file(Settings()))
    click.echo("no loop yet" if age == float("inf") else f"last loop {age:.1f}s ago")
    sys.exit(0 if age <= max_age else 1)


@pelican.command("bootstrap")
@click.option("--range-size", type=click.IntRange(min=1), help="Products per Map item.")
@click.option("--fresh", is_flag=True, help="Abandon a run in progress instead of resuming it.")
def pelican_bootstrap(range_size: int | None, fresh: bool) -> None:
    """Run the bootstrap state machine (Plan -> Map(Batch) -> Finalize) locally, from its synthesized definition."""
    if local_runtime() is None:
        raise click.UsageError("`refarch pelican bootstrap` runs the local state machine (package refarch_local)")
    from refarch_local.rehearsal.states import ExecutionFailed
    from refarch_local.stepfunctions import run_bootstrap

    try:
        click.echo(json.dumps(run_bootstrap(range_size=range_size, fresh=fresh)))
    except ExecutionFailed as err:
        raise click.ClickException(str(err)) from err


@click.group()
def emu() -> None:
    """The embed-and-index worker."""


@emu.command("worker")
@click.option(
    "--lane",
    type=click.Choice(["live", "bulk"]),
    help="The lane's queue and event-source rules. Default: REFARCH_EMU_LANE, else live.",
)
@click.option("--concurrency", type=click.IntRange(min=1), help="Default: the lane's reserved concurrency.")
@click.option(
    "--ready-file",
    default="emu.ready",
    show_default=True,
    help="Created under REFARCH_HOME once the worker's configuration holds (for a supervisor).",
)
def emu_worker(lane: str | None, concurrency: int | None, ready_file: str) -> None:
    """Poll one lane's local queue and invoke the Emu Lambda handler (the local event source mapping)."""
    from refarch.lanes.queues import make_sqs_client
    from refarch.lanes.topology import DEFAULT_TOPOLOGY, EMU_HANDLER
    from refarch.settings import ConfigurationError
    from refarch_local.event_source import EventSourcePoller

    if lane:
        # The handler reads its lane from the environment, as each Lambda function's configuration sets it.
        os.environ["REFARCH_EMU_LANE"] = lane
    try:
        # Build Emu's runtime and find the queue now: a configuration that can never work fails here, once, clearly.
        _emu = importlib.import_module(EMU_HANDLER.rpartition(".")[0]).runtime.emu
        settings = settings_with_queue()
        queue_url = settings.queue_url(settings.emu_lane)
    except ConfigurationError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    # Load the model before the first change arrives, not while it waits (a local model takes seconds).
    _emu.warm_up()
    # Readiness for the local supervisor: the runtime is built, warm, and the configuration holds.
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / ready_file).touch()
    poller = EventSourcePoller(
        make_sqs_client(settings),
        queue_url,
        lane=DEFAULT_TOPOLOGY.lane(settings.emu_lane),
        concurrency=concurrency,
        region=settings.aws_region,
    )
    stop_on_signals(poller.stop)
    poller.run()
