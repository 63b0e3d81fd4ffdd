"""The `refarch` command line (also `python -m refarch_cli`). Interfaces documented in docs/cli.md.

The top-level group, the schema and the operations on a running system (search, status,
reconcile, web) are here; the other command groups live in modules of their own and are added below.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from refarch.settings import Settings
from refarch.source import SourceError
from refarch_cli.dlq_commands import dlq
from refarch_cli.local_commands import bench, chaos, demo, rehearse, sqs_server
from refarch_cli.reindex_command import reindex_command
from refarch_cli.runtime_context import DSN_HELP, local_runtime
from refarch_cli.sync_commands import emu, pelican

# Subcommands that run the one-machine runtime: they need `refarch_local`, which the container lacks.
LOCAL_ONLY = ("demo", "bench", "chaos", "sqs-server", "emu", "reconcile", "rehearse")


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Semantic search over a live Postgres table: local runtime and operations."""
    local = local_runtime()
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
    local_tool = ctx.invoked_subcommand not in ("pelican", "web")
    if local_tool:
        local.apply_local_env()
    from refarch.db import set_fallback_database
    from refarch.observability import log_to_stderr, metrics_to_file

    if local_tool or os.environ.get(local.SUPERVISOR_PID_ENV):
        # Metric records (EMF) are for CloudWatch; on this machine they go to a log file, never to
        # the terminal or into a command's output (also for the listener and web under `refarch demo`).
        metrics_to_file(Settings().home / "logs" / "metrics.log")

    local.exit_with_supervisor()
    # With nothing configured, the local runtime's embedded Postgres is the database.
    set_fallback_database(local.start_embedded_database)
    if local_tool:
        # Local tools print their results (tables, JSON) on stdout; log lines must not mix in.
        log_to_stderr()


# The command groups that live in modules of their own (click lists every command by name in --help).
for command in (pelican, emu, demo, bench, chaos, sqs_server, rehearse, reindex_command, dlq):
    main.add_command(command)


# --- db ---------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Schema and seed data."""


@db.command("migrate")
@click.option("--dsn", help=DSN_HELP)
def db_migrate(dsn: str | None) -> None:
    """Apply pending migrations, then the source definition (REFARCH_SOURCE; idempotent, safe concurrently)."""
    from refarch.db import migrate, resolve_dsn

    changes: dict[str, Any] = {}
    try:
        applied = migrate(resolve_dsn(Settings(), dsn), source_changes=changes)
    except SourceError as err:
        refuse_source(err)
    click.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    click.echo(f"source: {changes['source']}")
    if changes["text_changed"]:
        click.echo("the embedded text changed: run `refarch reindex` (a deploy starts it) to build its generation")
    if changes["metadata_changed"]:
        click.echo("the metadata columns changed: every row's metadata is being backfilled (no embedding)")


def refuse_source(err: SourceError) -> NoReturn:
    """Print every problem of a refused source definition and exit 2 (a configuration error)."""
    click.echo(f"source definition refused: {err.where}", err=True)
    for problem in err.problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(2)


# --- source -------------------------------------------------------------------------------------


@main.group()
def source() -> None:
    """The table this system syncs (a source definition: docs/own-table.md)."""


@source.command("check")
@click.argument("definition", required=False)
@click.option("--dsn", help=DSN_HELP + " Checks the definition against its table there too.")
def source_check(definition: str | None, dsn: str | None) -> None:
    """Check a definition (a file, or a shipped one's name; default REFARCH_SOURCE) and say what it syncs."""
    from refarch.db import connect
    from refarch.source import capture, load

    try:
        found = load(definition or Settings().source)
        if dsn:
            conn = connect(dsn)
            try:
                capture.check(conn, found)
            finally:
                conn.close()
    except SourceError as err:
        refuse_source(err)
    click.echo(f"{found.qualified_table} (key {found.key}, {found.key_type}) from {found.path}")
    click.echo(f"  embedded: {found.embed!r}")
    click.echo(f"  chunking: {found.chunking.describe()}")
    for column in found.columns:
        click.echo(f"  {column.summary()}")
    if dsn:
        click.echo("  the table has every column, of a fitting type")


@db.command("seed")
@click.option("--rows", default=10_000, show_default=True, type=click.IntRange(min=0))
@click.option("--dsn", help=DSN_HELP)
def db_seed(rows: int, dsn: str | None) -> None:
    """Load the deterministic demo catalog (products 1..N by SKU; re-running adds only missing ones)."""
    from refarch import catalog
    from refarch.db import connect, migrate, resolve_dsn

    url = resolve_dsn(Settings(), dsn)
    migrate(url)
    conn = connect(url)
    try:
        inserted = catalog.seed(conn, rows)
    finally:
        conn.close()
    click.echo(f"seeded {inserted} new product(s) ({rows} requested)")


# --- operations -------------------------------------------------------------------------------


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
    from refarch.search.service import SearchInputError

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
        row, source = hit.product, hit.source
        # Products as always ("name [category]"); another source by its title column and key.
        where = f"[{row.category}]" if source.is_builtin_products else f"({source.key} {row.key})"
        click.echo(f"{score}  #{row.id:<7} {row.heading(source)} {where}  {ranks}".rstrip())


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def status(as_json: bool) -> None:
    """Products, indexed, pending, failed; each lane's queue depth, oldest message age and DLQ depth;
    the active index generation and a re-index's progress (rows, rate, ETA)."""
    from refarch.db import connect, resolve_dsn
    from refarch.lanes.queues import make_cloudwatch_client, make_sqs_client
    from refarch.status import generation_counts, lane_queues, queue_states, sync_counts

    settings = Settings()
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
