"""`refarch reindex`: change the embedding model or the vector index with zero downtime (docs/reindex.md)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from refarch.settings import Settings
from refarch_cli.runtime_context import local_runtime


@click.command("reindex")
@click.option(
    "--embedder", "embedder_kind", type=click.Choice(["local", "openai", "bedrock"]), help="The new embedder."
)
@click.option("--openai-model", help="With --embedder openai (default: REFARCH_OPENAI_MODEL).")
@click.option("--openai-dimensions", type=click.IntRange(min=1), help="With --embedder openai.")
@click.option("--local-model", help="With --embedder local (default: REFARCH_LOCAL_MODEL).")
@click.option("--bedrock-model", help="With --embedder bedrock (default: REFARCH_BEDROCK_MODEL).")
@click.option(
    "--bedrock-dimensions", type=click.IntRange(min=1), help="With --embedder bedrock (Titan: 256, 512, 1024)."
)
@click.option(
    "--pinecone-index",
    help="With Pinecone: the index for the new generation (created if missing; default: the configured index). "
    "The state machine's steps get it as their configured index (PINECONE_INDEX_NAME), so a model of another "
    "dimension than it holds goes to <index>-g<N> beside it (--create-only: into it as named).",
)
@click.option(
    "--create-only",
    is_flag=True,
    help="Only record the building generation and create its index; print its id (on AWS, then start the "
    'bootstrap state machine with {"generation": id}).',
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Run the state machine's Start and Fill only, and return while the bulk lane fills the generation; "
    "`refarch reindex` again resumes it and switches (or --switch once it is complete).",
)
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (exit 1; the build goes on).")
@click.option("--switch", "do_switch", is_flag=True, help="Make the building generation active (if complete).")
@click.option("--rollback", "do_rollback", is_flag=True, help="Make the previous generation active again.")
@click.option("--abort", "do_abort", is_flag=True, help="Abandon the building generation (gc drops it).")
@click.option(
    "--gc", "do_gc", is_flag=True, help="Drop abandoned generations, and retired ones older than --grace-hours."
)
@click.option("--grace-hours", default=24.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--list", "do_list", is_flag=True, help="Print the generations and the build's progress (JSON).")
def reindex_command(
    embedder_kind: str | None,
    openai_model: str | None,
    openai_dimensions: int | None,
    local_model: str | None,
    bedrock_model: str | None,
    bedrock_dimensions: int | None,
    pinecone_index: str | None,
    create_only: bool,
    no_wait: bool,
    timeout: float | None,
    do_switch: bool,
    do_rollback: bool,
    do_abort: bool,
    do_gc: bool,
    grace_hours: float,
    do_list: bool,
) -> None:
    """Change the embedding model or the vector index with zero downtime (docs/reindex.md).

    Without an action flag: run the Reindex state machine exactly as `cdk deploy` creates it (its
    synthesized definition, its steps calling the same handlers): start a building generation for the
    configured (or given) embedder, fill it through the bulk lane while search reads the active one,
    and switch when it holds every row. A build in progress is resumed instead. --pinecone-index gives the
    steps that index as their configured one; --no-wait stops the execution after its Fill.
    """
    from datetime import timedelta

    from refarch.generations import EmbedderSpec, GenerationError, reindex
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
        "bedrock_model": bedrock_model,
        "bedrock_dimensions": bedrock_dimensions,
    }
    settings = Settings().model_copy(update={k: v for k, v in chosen.items() if v is not None})
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
            click.echo(
                json.dumps(
                    {"generation": created.id, "model_id": created.model_id, "target": created.describe()["target"]}
                )
            )
        else:
            environment: dict[str, str | None] = {
                f"REFARCH_{name.upper()}": str(value) for name, value in chosen.items() if value is not None
            }
            if pinecone_index:
                environment.update(_pinecone_index_environment(settings, pinecone_index))
            _reindex_by_state_machine(targets, environment, timeout=timeout, wait=not no_wait)
    except GenerationError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except TimeoutError as err:
        click.echo(f"gave up waiting: {err}; the build goes on (`refarch status`)", err=True)
        sys.exit(1)


def _require_local_runtime() -> None:
    if local_runtime() is None:
        raise click.UsageError(
            "building a generation runs the local state machines (package refarch_local), which this installation "
            "does not include: use --create-only and start the bootstrap state machine with its id (docs/reindex.md)"
        )


def _pinecone_index_environment(settings: Settings, pinecone_index: str) -> dict[str, str | None]:
    """The reindex steps' Pinecone settings when --pinecone-index names the index: that index configured, by
    name (PINECONE_HOST, the configured index's address, unset: the start step looks the new one up)."""
    if settings.vector_backend_kind != "pinecone":
        raise click.UsageError("--pinecone-index needs the Pinecone backend (REFARCH_VECTOR_BACKEND=pinecone)")
    if pinecone_index == settings.pinecone_index_name:
        return {}
    return {"PINECONE_INDEX_NAME": pinecone_index, "PINECONE_HOST": None}


def _reindex_by_state_machine(
    targets: Any, environment: dict[str, str | None], *, timeout: float | None, wait: bool
) -> None:
    """Run the synthesized Reindex state machine here: Start, Fill (the bootstrap state machine), then, when
    `wait`, Progress polls and Switch (its waits scaled by LOCAL_REINDEX_TIME_SCALE); else it is stopped
    as it enters its first Wait, and the bulk lane goes on filling the building generation."""
    _require_local_runtime()
    from refarch.lanes.topology import BOOTSTRAP_FINALIZE_HANDLER, REINDEX_HANDLER
    from refarch_local.rehearsal.states import ExecutionFailed
    from refarch_local.stepfunctions import LOCAL_REINDEX_TIME_SCALE, run_reindex

    # Generation 1 recorded (if no runtime has yet) with the settings the stack runs with, not the options'.
    _record_active_generation(targets)
    # The steps run the reindex and bootstrap handlers in this process; like a deployed function, each
    # reads its settings from the environment when loaded, so the embedder and index asked for go there first.
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shown = {"at": 0.0}

    def show(handler: str, result: Any) -> None:
        if not isinstance(result, dict):
            return
        if handler == BOOTSTRAP_FINALIZE_HANDLER and "enqueued" in result:
            click.echo(f"  bootstrap run {result['run_id']}: {result['enqueued']} rows sent to the bulk lane", err=True)
        elif handler == REINDEX_HANDLER and "indexed" in result:
            _show_progress(result, shown)

    try:
        outcome = run_reindex(
            time_scale=LOCAL_REINDEX_TIME_SCALE, timeout_seconds=timeout, on_result=show, stop_after_fill=not wait
        )
    except ExecutionFailed as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    if "active" in outcome:
        click.echo(f"generation {outcome['active']} is active; {outcome['previous']} retired (rollback possible)")
    elif outcome["needed"]:
        click.echo(
            f"generation {outcome['generation']} is building: its rows are on the bulk lane; `refarch reindex --list` "
            "shows its progress, `refarch reindex` resumes it and switches"
        )
    else:
        click.echo(f"generation {outcome['generation']} already uses this embedder and index: nothing to re-index")


def _record_active_generation(targets: Any) -> None:
    """Record generation 1 with the configured embedder and index if no runtime has recorded it yet."""
    from refarch import generations
    from refarch.runtime import Runtime

    with targets.db.transaction() as conn:
        recorded = generations.active(conn).recorded
    if not recorded:
        Runtime(Settings(), application_name="refarch-reindex").targets.active()


def _show_progress(state: dict[str, Any], shown: dict[str, float]) -> None:
    """A building generation's progress line, at most every 5 s (and when it is complete)."""
    if state["complete"] or time.monotonic() - shown["at"] >= 5:
        shown["at"] = time.monotonic()
        eta = "?" if state["eta_seconds"] is None else f"{state['eta_seconds']:.0f} s"
        click.echo(f"  {state['indexed']}/{state['rows']} rows, {state['rate_per_second']}/s, eta {eta}", err=True)
