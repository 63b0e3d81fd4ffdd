"""The `refarch` command line (also `python -m refarch_cli`). Interfaces documented in docs/cli.md."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from refarch.settings import Settings

DSN_HELP = "Postgres URL (default: DATABASE_URL, else the embedded database under REFARCH_HOME)."


def _settings() -> Settings:
    return Settings()


def _settings_with_queue(wait_seconds: float = 60.0) -> Settings:
    """Settings that name a queue. Under a supervisor, a local SQS server that is (re)starting gets
    `wait_seconds` to publish its queue URLs; otherwise a missing queue is an error at once."""
    from refarch.settings import ConfigurationError

    local = _local_runtime()
    supervised = local is not None and os.environ.get(local.SUPERVISOR_PID_ENV)
    deadline = time.monotonic() + (wait_seconds if supervised else 0.0)
    while True:
        settings = _settings()  # fresh: runtime.json is read again
        try:
            settings.resolved_queue_url()
            return settings
        except ConfigurationError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _stop_on_signals(stop: Any) -> None:
    """SIGTERM/SIGINT set the stop event: the in-flight work finishes, then the process exits 0."""

    def handle(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


# Subcommands that run the one-machine runtime: they need `refarch_local`, which the container lacks.
LOCAL_ONLY = ("demo", "bench", "chaos", "sqs-server", "emu", "reconcile")


def _local_runtime() -> ModuleType | None:
    """The one-machine runtime when it is installed (the container image ships without it)."""
    try:
        import refarch_local
    except ImportError:
        return None
    return refarch_local


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Semantic search over a live Postgres table: local runtime and operations."""
    local = _local_runtime()
    if local is None:
        if ctx.invoked_subcommand in LOCAL_ONLY:
            raise click.UsageError(
                f"`refarch {ctx.invoked_subcommand}` runs the local runtime (package refarch_local), "
                "which this installation does not include"
            )
        return
    # Containers in AWS run `pelican listen` and `web` with Powertools defaults (JSON logs, EMF metrics);
    # everything else is a local tool and gets quiet local defaults, set before anything imports the
    # logger (it reads its level, POWERTOOLS_LOG_LEVEL, when it is created).
    if ctx.invoked_subcommand not in ("pelican", "web"):
        local.apply_local_env()
    from refarch.db import set_fallback_database
    from refarch.observability import log_to_stderr

    local.exit_with_supervisor()
    # With nothing configured, the local runtime's embedded Postgres is the database.
    set_fallback_database(local.start_embedded_database)
    if ctx.invoked_subcommand not in ("pelican", "web"):
        # Local tools print their results (tables, JSON) on stdout; log lines must not mix in.
        log_to_stderr()


# --- db ---------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Schema and seed data."""


@db.command("migrate")
@click.option("--dsn", help=DSN_HELP)
def db_migrate(dsn: str | None) -> None:
    """Apply pending migrations (idempotent; safe to run concurrently)."""
    from refarch.db import migrate, resolve_dsn

    applied = migrate(resolve_dsn(_settings(), dsn))
    click.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


@db.command("seed")
@click.option("--rows", default=10_000, show_default=True, type=click.IntRange(min=0))
@click.option("--dsn", help=DSN_HELP)
def db_seed(rows: int, dsn: str | None) -> None:
    """Load the deterministic demo catalog (products 1..N by SKU; re-running adds only missing ones)."""
    from refarch import catalog
    from refarch.db import connect, migrate, resolve_dsn

    url = resolve_dsn(_settings(), dsn)
    migrate(url)
    conn = connect(url)
    try:
        inserted = catalog.seed(conn, rows)
    finally:
        conn.close()
    click.echo(f"seeded {inserted} new product(s) ({rows} requested)")


# --- pelican ----------------------------------------------------------------------------------


@main.group()
def pelican() -> None:
    """Change capture: the outbox listener and the bootstrap."""


@pelican.command("listen")
@click.option("--dsn", help=DSN_HELP)
@click.option("--poll-seconds", default=2.0, show_default=True, help="Drain at least this often.")
def pelican_listen(dsn: str | None, poll_seconds: float) -> None:
    """Relay the outbox to SQS (live lane; a large backlog to the bulk lane); SIGTERM stops cleanly."""
    from refarch.db import resolve_dsn
    from refarch.pelican.listener import OutboxRelay
    from refarch.queue import SyncQueue, make_sqs_client

    settings = _settings_with_queue()
    sqs = make_sqs_client(settings)
    relay = OutboxRelay(
        resolve_dsn(settings, dsn),
        SyncQueue(sqs, settings.resolved_queue_url()),
        poll_seconds=poll_seconds,
        heartbeat_file=_heartbeat_file(settings),
        bulk_queue=SyncQueue(sqs, settings.resolved_bulk_queue_url()),
    )
    _stop_on_signals(relay.stop)
    relay.run()


def _heartbeat_file(settings: Settings) -> Path:
    return settings.home / "pelican.heartbeat"


@pelican.command("health")
@click.option("--max-age", default=60.0, show_default=True, help="Seconds without a loop before unhealthy.")
def pelican_health(max_age: float) -> None:
    """Exit 0 if the listener looped recently (the container health check)."""
    from refarch.pelican.listener import heartbeat_age

    age = heartbeat_age(_heartbeat_file(_settings()))
    click.echo("no loop yet" if age == float("inf") else f"last loop {age:.1f}s ago")
    sys.exit(0 if age <= max_age else 1)


@pelican.command("bootstrap")
@click.option("--range-size", type=click.IntRange(min=1), help="Products per Map item.")
@click.option("--fresh", is_flag=True, help="Abandon a run in progress instead of resuming it.")
def pelican_bootstrap(range_size: int | None, fresh: bool) -> None:
    """Run the bootstrap (Plan -> Map(Batch) -> Finalize) locally with the Map's max concurrency."""
    if _local_runtime() is None:
        raise click.UsageError("`refarch pelican bootstrap` runs the local state machine (package refarch_local)")
    from refarch_local.stepfunctions import run_bootstrap

    click.echo(json.dumps(run_bootstrap(range_size=range_size, fresh=fresh)))


# --- emu --------------------------------------------------------------------------------------


@main.group()
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
    from refarch.queue import make_sqs_client
    from refarch.settings import ConfigurationError
    from refarch.topology import DEFAULT_TOPOLOGY, EMU_HANDLER
    from refarch_local.event_source import EventSourcePoller

    if lane:
        # The handler reads its lane from the environment, as each Lambda function's configuration sets it.
        os.environ["REFARCH_EMU_LANE"] = lane
    try:
        # Build Emu's runtime and find the queue now: a configuration that can never work fails here, once, clearly.
        _emu = importlib.import_module(EMU_HANDLER.rpartition(".")[0]).runtime.emu
        settings = _settings_with_queue()
        queue_url = settings.resolved_lane_queue_url()
    except ConfigurationError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    # Readiness for the local supervisor: the runtime is built and the configuration holds.
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / ready_file).touch()
    poller = EventSourcePoller(
        make_sqs_client(settings),
        queue_url,
        lane=DEFAULT_TOPOLOGY.lane(settings.emu_lane),
        concurrency=concurrency,
        region=settings.aws_region,
    )
    _stop_on_signals(poller.stop)
    poller.run()


# --- local runtime ----------------------------------------------------------------------------


@main.command("demo")
@click.option("--rows", default=10_000, show_default=True, type=click.IntRange(min=0), help="Catalog size.")
@click.option("--port", default=8000, show_default=True, help="Web page port.")
@click.option("--exit-when-synced", is_flag=True, help="Exit once every row is indexed; print a JSON summary.")
@click.option(
    "--timeout",
    type=float,
    help="With --exit-when-synced: give up this many seconds after the command started (exit 1).",
)
def demo(rows: int, port: int, exit_when_synced: bool, timeout: float | None) -> None:
    """Run the whole system locally: Postgres, SQS, listener, Emu workers, web; bootstrap the catalog."""
    from refarch_local.demo import run_demo

    sys.exit(run_demo(rows=rows, web_port=port, exit_when_synced=exit_when_synced, timeout=timeout))


JSON_OPTION = click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write all results here."
)
MARKDOWN_OPTION = click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results table (markdown) here.",
)


@main.group("bench", invoke_without_command=True)
@click.option("--quick", is_flag=True, help="Small sizes (a CI smoke run, ~2 minutes).")
@JSON_OPTION
@MARKDOWN_OPTION
@click.option("--reindex-only", is_flag=True, help="Only the bootstrap and the re-index to a second model.")
@click.pass_context
def bench(
    ctx: click.Context, quick: bool, json_path: Path | None, markdown_path: Path | None, reindex_only: bool
) -> None:
    """Benchmarks on a fresh local stack: throughput, change latency, search latency and relevance,
    re-bootstrap, re-index, memory."""
    if ctx.invoked_subcommand is not None:
        return
    from refarch_local.bench import run_bench

    run_bench(quick=quick, json_path=json_path, markdown_path=markdown_path, reindex_only=reindex_only)


@bench.command("relevance")
@JSON_OPTION
@MARKDOWN_OPTION
def bench_relevance(json_path: Path | None, markdown_path: Path | None) -> None:
    """nDCG@10 and hits@3 per query class and search mode on the labelled query set (bench/)."""
    from refarch_local.search_bench import run_search_bench

    run_search_bench(latency=False, json_path=json_path, markdown_path=markdown_path)


@bench.command("search")
@click.option("--sizes", default="10000,100000", show_default=True, help="Catalog sizes for the latency runs.")
@click.option("--queries", default=200, show_default=True, type=click.IntRange(min=1), help="Timed queries per mode.")
@JSON_OPTION
@MARKDOWN_OPTION
def bench_search(sizes: str, queries: int, json_path: Path | None, markdown_path: Path | None) -> None:
    """Relevance, search latency per mode at each size, and the query-embedding cache (OpenAI stand-in)."""
    from refarch_local.search_bench import run_search_bench

    try:
        latency_sizes = tuple(int(size) for size in sizes.split(","))
    except ValueError as err:
        raise click.UsageError(f"--sizes takes whole numbers separated by commas, not {sizes!r}") from err
    run_search_bench(
        latency=True,
        latency_sizes=latency_sizes,
        latency_queries=queries,
        json_path=json_path,
        markdown_path=markdown_path,
    )


@main.command("chaos")
@click.option("--quick", is_flag=True, help="Fewer rows and edits (the variant `make test` runs).")
@click.option("--scenario", "scenarios", multiple=True, help="Run only these (repeatable); default: all.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results here.")
def chaos(quick: bool, scenarios: tuple[str, ...], json_path: Path | None) -> None:
    """Inject faults into the local stack; each scenario ends with a full convergence check."""
    from refarch_local.chaos import SCENARIOS, run_chaos

    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise click.UsageError(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    results = run_chaos(quick=quick, only=scenarios, json_path=json_path)
    sys.exit(0 if results and all(r.ok for r in results) else 1)


# --- local services ---------------------------------------------------------------------------


@main.command("sqs-server")
@click.option("--port", default=9324, show_default=True)
@click.option(
    "--visibility-timeout", default=10, show_default=True, help="Seconds before a failed live-lane message returns."
)
@click.option(
    "--bulk-visibility-timeout",
    default=180,
    show_default=True,
    help="Seconds before a failed (or still running) bulk-lane message returns.",
)
def sqs_server(port: int, visibility_timeout: int, bulk_visibility_timeout: int) -> None:
    """Run a local SQS API (moto) on 127.0.0.1 with both lanes' queues and DLQs; Ctrl-C stops it."""
    import threading

    from refarch_local.sqs import create_queues, start_server

    settings = _settings()
    server = start_server(port)
    urls = create_queues(
        settings,
        f"http://127.0.0.1:{port}",
        visibility_timeout=visibility_timeout,
        bulk_visibility_timeout=bulk_visibility_timeout,
    )
    click.echo(json.dumps(urls))
    stop = threading.Event()
    _stop_on_signals(stop)
    stop.wait()
    server.stop()


@main.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
def web_command(host: str, port: int) -> None:
    """Serve the web page and JSON API (in AWS, gunicorn serves the same app factory)."""
    from web import create_app

    create_app().run(host=host, port=port, threaded=True, use_reloader=False)


@main.command("reconcile")
@click.option("--repair", "do_repair", is_flag=True, help="Enqueue forced syncs for every drifting product.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reconcile_command(do_repair: bool, as_json: bool) -> None:
    """Compare database, ledger and vector index, shard by shard; report missing, extra and stale vectors."""
    from refarch_local.stepfunctions import run_reconcile

    result = run_reconcile(repair=do_repair)
    click.echo(json.dumps(result) if as_json else "  ".join(f"{k}={v}" for k, v in result.items()))
    sys.exit(0 if result["clean"] or do_repair else 1)


# --- reindex ----------------------------------------------------------------------------------


@main.command("reindex")
@click.option("--embedder", "embedder_kind", type=click.Choice(["local", "openai"]), help="The new embedder.")
@click.option("--openai-model", help="With --embedder openai (default: REFARCH_OPENAI_MODEL).")
@click.option("--openai-dimensions", type=click.IntRange(min=1), help="With --embedder openai.")
@click.option("--local-model", help="With --embedder local (default: REFARCH_LOCAL_MODEL).")
@click.option(
    "--pinecone-index",
    help="With Pinecone: the index for the new generation (created if missing; default: the configured index, "
    "or <configured index>-g<N> for another dimension).",
)
@click.option(
    "--create-only",
    is_flag=True,
    help="Only record the building generation and create its index; print its id (on AWS, then start the "
    'bootstrap state machine with {"generation": id}).',
)
@click.option("--no-wait", is_flag=True, help="Start (or resume) the build and return; switch later with --switch.")
@click.option("--no-switch", is_flag=True, help="Wait until the build is complete, but do not switch.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (exit 1; the build goes on).")
@click.option("--switch", "do_switch", is_flag=True, help="Make the building generation active (if complete).")
@click.option("--rollback", "do_rollback", is_flag=True, help="Make the previous generation active again.")
@click.option("--abort", "do_abort", is_flag=True, help="Abandon the building generation (gc drops it).")
@click.option("--gc", "do_gc", is_flag=True, help="Drop retired generations older than --grace-hours.")
@click.option("--grace-hours", default=24.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--list", "do_list", is_flag=True, help="Print the generations and the build's progress (JSON).")
def reindex_command(
    embedder_kind: str | None,
    openai_model: str | None,
    openai_dimensions: int | None,
    local_model: str | None,
    pinecone_index: str | None,
    create_only: bool,
    no_wait: bool,
    no_switch: bool,
    timeout: float | None,
    do_switch: bool,
    do_rollback: bool,
    do_abort: bool,
    do_gc: bool,
    grace_hours: float,
    do_list: bool,
) -> None:
    """Change the embedding model or the vector index with zero downtime (docs/reindex.md).

    Without an action flag: start a building generation for the configured (or given) embedder,
    fill it through the bulk lane while search reads the active one, and switch when it holds
    every row. A build in progress is resumed instead.
    """
    from datetime import timedelta

    from refarch import reindex
    from refarch.generations import EmbedderSpec, GenerationError
    from refarch.runtime import Runtime

    actions = [f for f, on in (("--switch", do_switch), ("--rollback", do_rollback), ("--abort", do_abort),
                               ("--gc", do_gc), ("--list", do_list)) if on]  # fmt: skip
    if len(actions) > 1:
        raise click.UsageError(f"choose one of {', '.join(actions)}")
    chosen = {
        "embedder": embedder_kind,
        "openai_model": openai_model,
        "openai_dimensions": openai_dimensions,
        "local_model": local_model,
    }
    settings = _settings().model_copy(update={k: v for k, v in chosen.items() if v is not None})
    targets = Runtime(settings, application_name="refarch-reindex").targets
    try:
        if do_list:
            click.echo(json.dumps(reindex.status(targets), default=str))
        elif do_switch:
            previous, new = reindex.switch(targets)
            click.echo(f"generation {new.id} ({new.model_id}) is active; {previous.id} retired (rollback possible)")
        elif do_rollback:
            previous, restored = reindex.rollback(targets)
            click.echo(f"generation {restored.id} ({restored.model_id}) is active again; {previous.id} retired")
        elif do_abort:
            abandoned = reindex.abort(targets)
            click.echo(f"generation {abandoned.id} abandoned; `refarch reindex --gc` drops it")
        elif do_gc:
            dropped = reindex.collect_garbage(targets, timedelta(hours=grace_hours))
            click.echo(f"dropped generation(s): {', '.join(map(str, dropped)) or 'none past the grace period'}")
        elif create_only:
            created = reindex.start(targets, EmbedderSpec.from_settings(settings), pinecone_index=pinecone_index)
            click.echo(json.dumps({"generation": created.id, "model_id": created.model_id, "target": created.target}))
        else:
            _reindex_build(targets, EmbedderSpec.from_settings(settings), pinecone_index=pinecone_index,
                           no_wait=no_wait, no_switch=no_switch, timeout=timeout)  # fmt: skip
    except GenerationError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except TimeoutError as err:
        click.echo(f"gave up waiting: {err}; the build goes on (`refarch status`)", err=True)
        sys.exit(1)


def _reindex_build(
    targets: Any, spec: Any, *, pinecone_index: str | None, no_wait: bool, no_switch: bool, timeout: float | None
) -> None:
    """Start or resume the building generation, fill it through the bulk lane, then (unless told not to) switch."""
    from refarch import generations, reindex
    from refarch.queue import make_cloudwatch_client, make_sqs_client
    from refarch.status import lane_queues, queue_states

    if _local_runtime() is None:
        raise click.UsageError(
            "building a generation runs the local bootstrap (package refarch_local), which this installation does "
            "not include: use --create-only and start the bootstrap state machine with its id (docs/reindex.md)"
        )
    from refarch_local.stepfunctions import run_bootstrap

    with targets.db.transaction() as conn:
        building = generations.building(conn)
    if building is None:
        building = reindex.start(targets, spec, pinecone_index=pinecone_index)
        click.echo(f"generation {building.id} ({building.model_id}) is building; search reads the active one")
    elif building.embedder != spec:
        raise generations.GenerationError(
            f"generation {building.id} ({building.model_id}) is already building: finish it (--switch) or --abort it"
        )
    else:
        click.echo(f"resuming generation {building.id} ({building.model_id})")

    def resend() -> None:
        result = run_bootstrap(generation=building.id)
        click.echo(f"  bootstrap run {result['run_id']}: {result['enqueued']} rows sent to the bulk lane", err=True)

    resend()
    if no_wait:
        return
    settings = targets.settings
    sqs, cloudwatch = make_sqs_client(settings), make_cloudwatch_client(settings)
    shown = {"at": 0.0}

    def queue_idle() -> bool:
        return (queue_states(sqs, cloudwatch, lane_queues(settings)).get("queue_depth") or 0) == 0

    def show(state: dict[str, Any]) -> None:
        if state["complete"] or time.monotonic() - shown["at"] >= 5:
            shown["at"] = time.monotonic()
            eta = "?" if state["eta_seconds"] is None else f"{state['eta_seconds']:.0f} s"
            click.echo(f"  {state['indexed']}/{state['rows']} rows, {state['rate_per_second']}/s, eta {eta}", err=True)

    if no_switch:
        reindex.wait_until_complete(targets, resend=resend, queue_idle=queue_idle, timeout_seconds=timeout,
                                    on_progress=show)  # fmt: skip
        click.echo(f"generation {building.id} is complete; switch with `refarch reindex --switch`")
        return
    previous, new = reindex.wait_and_switch(
        targets, resend=resend, queue_idle=queue_idle, timeout_seconds=timeout, on_progress=show
    )
    click.echo(f"generation {new.id} ({new.model_id}) is active; {previous.id} retired (rollback possible)")


# --- search & status --------------------------------------------------------------------------


@main.command("search")
@click.argument("query")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--category")
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "semantic", "lexical"]),
    default="hybrid",
    show_default=True,
    help="Meaning and words fused, meaning only (vector index), or words only (full-text).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def search(query: str, k: int, category: str | None, mode: str, as_json: bool) -> None:
    """Search from the terminal (the same service the web page uses)."""
    from refarch.runtime import Runtime
    from refarch.search import SearchInputError

    try:
        page = Runtime(application_name="refarch-search").search.search(query, k=k, category=category, mode=mode)
    except SearchInputError as err:
        raise click.UsageError(str(err)) from err
    if as_json:
        click.echo(json.dumps(page.as_dict(), default=str))
        return
    if page.fallback_reason:
        click.echo(f"note: {page.fallback_reason}", err=True)
    for hit in page.hits:
        score = f"{hit.score:.4f}" if hit.score is not None else "   -  "
        ranks = " ".join(f"{name}#{rank}" for name, rank in hit.ranks.items())
        click.echo(f"{score}  #{hit.product.id:<7} {hit.product.name} [{hit.product.category}]  {ranks}".rstrip())


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def status(as_json: bool) -> None:
    """Products, indexed, pending, failed; each lane's queue depth, oldest message age and DLQ depth;
    the active index generation and a re-index's progress (rows, rate, ETA)."""
    from refarch.db import connect, resolve_dsn
    from refarch.queue import make_cloudwatch_client, make_sqs_client
    from refarch.status import generation_counts, lane_queues, queue_states, sync_counts

    settings = _settings()
    conn = connect(resolve_dsn(settings))
    try:
        result: dict[str, Any] = sync_counts(conn)
        result.update(generation_counts(conn))
    finally:
        conn.close()
    queues = lane_queues(settings)
    if queues:
        result.update(queue_states(make_sqs_client(settings), make_cloudwatch_client(settings), queues))
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo("  ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
