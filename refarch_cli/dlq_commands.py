"""`refarch dlq`: the dead letters of both lanes, with the reason each failed; redrive or discard them."""

from __future__ import annotations

import json
from typing import Any, cast

import click

from refarch.lanes.topology import LaneName

LANE_OPTION = click.option(
    "--lane", type=click.Choice(["live", "bulk"]), help="One lane's dead-letter queue (default: both)."
)


def _dead_letters() -> Any:
    """Both lanes' dead letters as the settings configure them (the local SQS server's, or AWS's)."""
    from refarch.lanes.dead_letters import DeadLetters
    from refarch.runtime import Runtime

    runtime = Runtime(application_name="refarch-dlq")
    return DeadLetters.for_settings(runtime.sqs, runtime.db, runtime.settings)


def _acting(action: Any) -> Any:
    """Run a dead-letter action; an operation that cannot be done as asked is a usage error, not a traceback."""
    from refarch.lanes.dead_letters import DeadLetterError

    try:
        return action()
    except DeadLetterError as err:
        raise click.ClickException(str(err)) from err


@click.group()
def dlq() -> None:
    """Dead-lettered sync messages: list them (with the reason), redrive them, or discard them."""


@dlq.command("list")
@LANE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def dlq_list(lane: str | None, as_json: bool) -> None:
    """Each dead letter's id, lane, products, receive count, age and reason; the messages stay in the DLQ."""
    listings = _acting(lambda: _dead_letters().listings(cast(LaneName | None, lane)))
    if as_json:
        click.echo(
            json.dumps(
                [{"lane": x.lane, "depth": x.depth, "messages": [m.as_dict() for m in x.letters]} for x in listings]
            )
        )
        return
    for listing in listings:
        shown = f" (showing {len(listing.letters)})" if len(listing.letters) < listing.depth else ""
        click.echo(f"{listing.lane} lane: {listing.depth} dead letter(s){shown}")
        for m in listing.letters:
            products = ",".join(map(str, m.products)) if m.products else "-"
            click.echo(f"  {m.id}  products={products}  receives={m.receive_count}  age={m.age_seconds:.0f}s")
            click.echo(f"    reason: {m.reason}")


@dlq.command("redrive")
@LANE_OPTION
def dlq_redrive(lane: str | None) -> None:
    """Send the dead letters back to their lane's queue for Emu to try again (fix the cause first)."""
    for result in _acting(lambda: _dead_letters().redrive(cast(LaneName | None, lane))):
        if result.method == "move-task":
            click.echo(f"{result.lane} lane: SQS moves {result.messages} message(s) back (task {result.task_handle})")
        else:
            click.echo(f"{result.lane} lane: {result.messages} message(s) sent back to the queue")


@dlq.command("discard")
@click.argument("ids", nargs=-1, required=True)
@LANE_OPTION
def dlq_discard(ids: tuple[str, ...], lane: str | None) -> None:
    """Delete these dead letters (ids from `refarch dlq list`); their products stay marked failed with the reason."""
    result = _acting(lambda: _dead_letters().discard(ids, cast(LaneName | None, lane)))
    for m in result.discarded:
        click.echo(f"discarded {m.id} ({m.lane} lane): {m.reason}")
    if result.marked_failed:
        click.echo(f"marked failed: products {', '.join(map(str, result.marked_failed))}")
    if result.not_found:
        raise click.ClickException(f"not in any dead-letter queue: {', '.join(result.not_found)}")
