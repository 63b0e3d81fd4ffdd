"""`refarch reindex`: change the embedding model or the vector index with zero downtime (docs/reindex.md)."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
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

    Without an action flag: run the Reindex state machine exactly as `cdk deploy` creates it (its
    synthesized definition, its steps calling the same handlers): start a building generation for the
    configured (or given) embedder, fill it through the bulk lane while search reads the active one,
    and switch when it holds every row. A build in progress is resumed instead. --no-wait, --no-switch
    and --pinecone-index take the same steps one at a time, by hand.
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
        elif no_wait or no_switch or pinecone_index:
            _reindex_build(targets, EmbedderSpec.from_settings(settings), pinecone_index=pinecone_index,
                           no_wait=no_wait, no_switch=no_switch, timeout=timeout)  # fmt: skip
        else:
            environment = {f"REFARCH_{name.upper()}": str(value) for name, value in chosen.items() if value is not None}
            _reindex_by_state_machine(environment, timeout=timeout)
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


def _reindex_by_state_machine(environment: dict[str, str], *, timeout: float | None) -> None:
    """Run the synthesized Reindex state machine here to its end: Start, Fill (the bootstrap state machine),
    Progress polls, Switch; its waits scaled by LOCAL_REINDEX_TIME_SCALE."""
    _require_local_runtime()
    from refarch.lanes.topology import REINDEX_HANDLER
    from refarch_local.rehearsal.states import ExecutionFailed
    from refarch_local.stepfunctions import LOCAL_REINDEX_TIME_SCALE, run_reindex

    # The steps run the reindex and bootstrap handlers in this process; like a deployed function, each
    # reads its settings from the environment when loaded, so the embedder asked for goes there first.
    os.environ.update(environment)
    shown = {"at": 0.0}

    def show(handler: str, result: Any) -> None:
        if handler == REINDEX_HANDLER and isinstance(result, dict) and "indexed" in result:
            _show_progress(result, shown)

    try:
        outcome = run_reindex(time_scale=LOCAL_REINDEX_TIME_SCALE, timeout_seconds=timeout, on_result=show)
    except ExecutionFailed as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    if "active" in outcome:
        click.echo(f"generation {outcome['active']} is active; {outcome['previous']} retired (rollback possible)")
    else:
        click.echo(f"generation {outcome['generation']} already uses this embedder and index: nothing to re-index")


def _show_progress(state: dict[str, Any], shown: dict[str, float]) -> None:
    """A building generation's progress line, at most every 5 s (and when it is complete)."""
    if state["complete"] or time.monotonic() - shown["at"] >= 5:
        shown["at"] = time.monotonic()
        eta = "?" if state["eta_seconds"] is None else f"{state['eta_seconds']:.0f} s"
        click.echo(f"  {state['indexed']}/{state['rows']} rows, {state['rate_per_second']}/s, eta {eta}", err=True)


def _reindex_build(
    targets: Any, spec: Any, *, pinecone_index: str | None, no_wait: bool, no_switch: bool, timeout: float | None
) -> None:
    """By hand: start or resume the building generation, fill it through the bulk lane (one bootstrap run);
    unless --no-wait, wait until it holds every row (another run when the lanes fall idle with rows missing),
    then, unless --no-switch, switch."""
    from refarch import generations
    from refarch.generations import reindex
    from refarch.lanes.queues import make_cloudwatch_client, make_sqs_client
    from refarch.status import lane_queues, queue_states

    _require_local_runtime()
    from refarch_local.stepfunctions import run_bootstrap

    with targets.db.transaction() as conn:
        building = generations.building(conn)
    if building is None:
        building = reindex.start(targets, spec, pinecone_index=pinecone_index)
        click.echo(f"generation {building.id} ({building.model_id}) is building; search reads the active one")
    elif not (building.embedder == spec and _placement(targets.settings, pinecone_index).holds(building)):
        where = building.target.describe() if building.target else "no index yet"
        raise generations.GenerationError(
            f"generation {building.id} ({building.model_id}, {where}) is already building: finish it "
            "(--switch) or --abort it"
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
        _show_progress(state, shown)

    if no_switch:
        reindex.wait_until_complete(targets, resend=resend, queue_idle=queue_idle, timeout_seconds=timeout,
                                    on_progress=show)  # fmt: skip
        click.echo(f"generation {building.id} is complete; switch with `refarch reindex --switch`")
        return
    previous, new = reindex.wait_and_switch(
        targets, resend=resend, queue_idle=queue_idle, timeout_seconds=timeout, on_progress=show
    )
    click.echo(f"generation {new.id} ({new.model_id}) is active; {previous.id} retired (rollback possible)")


def _placement(settings: Settings, pinecone_index: str | None) -> Any:
    """Where the settings (or --pinecone-index) place the generation asked for."""
    from refarch.generations.placement import Placement

    configured = Placement.from_settings(settings)
    return replace(configured, pinecone_index=pinecone_index) if pinecone_index else configured
