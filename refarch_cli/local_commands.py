"""The local-only tools: the whole stack (`demo`), benchmarks (`bench`), fault injection (`chaos`), a local SQS.

Each imports the one-machine runtime (`refarch_local`) only when it runs: the container image
ships this module without it, and `refarch` refuses these commands there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from refarch.settings import Settings
from refarch_cli.runtime_context import stop_on_signals


@click.command("demo")
@click.option("--rows", default=10_000, show_default=True, type=click.IntRange(min=0), help="Catalog size.")
@click.option("--port", default=8000, show_default=True, help="Web page port.")
@click.option(
    "--sqs-port",
    type=click.IntRange(min=1, max=65535),
    help="Local SQS server port (default: 9324 when free, else any free port).",
)
@click.option("--exit-when-synced", is_flag=True, help="Exit once every row is indexed; print a JSON summary.")
@click.option(
    "--timeout",
    type=float,
    help="With --exit-when-synced: give up this many seconds after the command started (exit 1).",
)
@click.option(
    "--source",
    envvar="REFARCH_SOURCE",
    help="The table to sync: a source definition file, or a shipped one's name (products, articles).",
)
def demo(
    rows: int, port: int, sqs_port: int | None, exit_when_synced: bool, timeout: float | None, source: str | None
) -> None:
    """Run the whole system locally: Postgres, SQS, listener, Emu workers, web; bootstrap the source's rows."""
    from refarch_local.demo import run_demo

    use_source(source)

    sys.exit(run_demo(rows=rows, web_port=port, sqs_port=sqs_port, exit_when_synced=exit_when_synced, timeout=timeout))


def use_source(source: str | None) -> None:
    """Every component this command starts (and this process's settings) syncs the same table."""
    if source:
        os.environ["REFARCH_SOURCE"] = str(Path(source).resolve()) if source.endswith(".toml") else source


JSON_OPTION = click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write all results here."
)
MARKDOWN_OPTION = click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results table (markdown) here.",
)


@click.group("bench", invoke_without_command=True)
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


@bench.command("plot")
@click.option(
    "--from",
    "results_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("bench/results.json"),
    show_default=True,
    help="A results file written by `refarch bench --json`.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the plots (default: beside the results file).",
)
@click.option(
    "--only",
    multiple=True,
    help="Draw only this plot: edit-latency-during-bootstrap, throughput or search-latency (repeatable; "
    "default: every plot the results have numbers for).",
)
def bench_plot(results_path: Path, out_dir: Path | None, only: tuple[str, ...]) -> None:
    """Draw the benchmark plots (SVG) from saved results, without running anything."""
    from rich.console import Console

    from refarch_local.bench import write_plots_and_report
    from refarch_local.bench_plots import PLOT_NAMES

    unknown = sorted(set(only) - set(PLOT_NAMES))
    if unknown:
        raise click.BadParameter(f"no plot named {', '.join(unknown)}; choose from {', '.join(PLOT_NAMES)}")

    results = json.loads(results_path.read_text())
    write_plots_and_report(results, out_dir or results_path.parent, Console(stderr=True), only=only or None)


@bench.command("relevance")
@JSON_OPTION
@MARKDOWN_OPTION
def bench_relevance(json_path: Path | None, markdown_path: Path | None) -> None:
    """nDCG@10 and hit@1 per query class and search mode on the labelled query set (bench/)."""
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


@bench.command("budget")
@click.option("--quick", is_flag=True, help="Shorter runs: 8 s per slow provider, 2,000 queries for memory.")
@JSON_OPTION
@MARKDOWN_OPTION
def bench_budget(quick: bool, json_path: Path | None, markdown_path: Path | None) -> None:
    """Search with a slow embedding service or vector index (p99, answers, /healthz meanwhile) and the web
    processes' peak memory after 10,000 distinct queries, against gunicorn as the container runs it."""
    from refarch_local.bench_budget import run_budget_bench

    run_budget_bench(quick=quick, json_path=json_path, markdown_path=markdown_path)


@bench.command("long-text")
@click.option("--quick", is_flag=True, help="10 documents instead of 60.")
@JSON_OPTION
@MARKDOWN_OPTION
def bench_long_text(quick: bool, json_path: Path | None, markdown_path: Path | None) -> None:
    """Long documents through chunking and Emu (chunks per second, embedding requests) next to the raw model,
    and the chunks embedded again when one paragraph of a 40-chunk document is edited."""
    from refarch_local.bench_long_text import run_long_text_bench

    run_long_text_bench(quick=quick, json_path=json_path, markdown_path=markdown_path)


@click.command("chaos")
@click.option("--quick", is_flag=True, help="Fewer rows and edits (the variant `make test` runs).")
@click.option("--scenario", "scenarios", multiple=True, help="Run only these (repeatable); default: all.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write results here.")
@click.option(
    "--embedder",
    type=click.Choice(["openai", "bedrock"]),
    default="openai",
    show_default=True,
    help="Which provider's stand-in Emu embeds with (through its real SDK).",
)
@click.option("--source", envvar="REFARCH_SOURCE", help="The table the stack syncs: products (default) or articles.")
def chaos(quick: bool, scenarios: tuple[str, ...], json_path: Path | None, embedder: str, source: str | None) -> None:
    """Inject faults into the local stack; each scenario ends with a full convergence check."""
    from refarch_local.chaos import run_chaos
    from refarch_local.chaos_scenarios import SCENARIOS

    use_source(source)

    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise click.UsageError(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    results = run_chaos(quick=quick, only=scenarios, json_path=json_path, embedder=embedder)  # type: ignore[arg-type]
    sys.exit(0 if results and all(r.ok for r in results) else 1)


@click.command("sqs-server")
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

    settings = Settings()
    server = start_server(port)
    urls = create_queues(
        settings,
        f"http://127.0.0.1:{port}",
        visibility_timeout=visibility_timeout,
        bulk_visibility_timeout=bulk_visibility_timeout,
    )
    click.echo(json.dumps(urls))
    stop = threading.Event()
    stop_on_signals(stop)
    stop.wait()
    server.stop()


@click.command("rehearse")
@click.option(
    "--rows", default=1000, show_default=True, type=click.IntRange(min=1), help="Rows seeded and bootstrapped."
)
@click.option(
    "--time-scale",
    default=1 / 60,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="The state machines' clock: Wait and Retry intervals times this (1: as synthesized).",
)
@click.option("--timeout", default=900.0, show_default=True, help="Give up after this many seconds (exit 1).")
@click.option("--stage", default="dev", show_default=True, help="The stage whose templates are rehearsed.")
def rehearse(rows: int, time_scale: float, timeout: float, stage: str) -> None:
    """Run what `cdk deploy` creates, locally, from the synthesized templates; the last line is a JSON summary."""
    from refarch_local.rehearsal.run import rehearse_from_cdk_out

    summary = rehearse_from_cdk_out(
        Settings().home, rows=rows, time_scale=time_scale, timeout_seconds=timeout, stage=stage
    )
    click.echo(json.dumps(summary))
    sys.exit(0 if summary["ok"] else 1)
