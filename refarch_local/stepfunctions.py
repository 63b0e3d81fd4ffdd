"""The state machines run locally: bootstrap, reconcile and re-index, from their synthesized definitions.

The definitions are the ones `cdk deploy` creates (the CDK app synthesized once into a cache
under the local home: `refarch_local.rehearsal.template`), executed by moto's ASL interpreter
(`refarch_local.rehearsal.states`), so Map concurrency, Retry, Catch and every JSONPath are
the deployed ones. Their Lambda tasks call the same handlers, found by the Handler string of
each function in the template, in this process with this process's settings (`make rehearse`
runs each function in a worker process with its template environment instead).

`time_scale` shortens the interpreter's waits (the re-index poll, retry intervals) for tests;
1.0 keeps the template's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from refarch.lanes.topology import BOOTSTRAP_BATCH_HANDLER
from refarch.settings import Settings
from refarch_local.handlers import invoke
from refarch_local.rehearsal.states import (
    Invocation,
    StateMachines,
    function_name,
    local_functions_and_state_machines,
)
from refarch_local.rehearsal.template import LOCAL_ACCOUNT, Assembly, Resolver, synthesized_assembly

REGION = "us-east-1"
# What `refarch reindex` runs the Reindex state machine at locally: its waits (the 60 s poll of the
# building generation, retry intervals) take 1/30 of the deployed ones, so a small catalog switches in seconds.
LOCAL_REINDEX_TIME_SCALE = 1 / 30


def local_state_machines(
    *,
    time_scale: float = 1.0,
    on_result: Callable[[str, Any], None] | None = None,
    assembly: Assembly | None = None,
) -> StateMachines:
    """The synthesized state machines (of `assembly`, default the dev stage's), their Lambda tasks calling
    the handlers in this process.

    `on_result(handler, result)` sees every successful invocation (progress displays).
    """
    assembly = assembly or synthesized_assembly(Settings().home).assembly
    resolver = Resolver(assembly, local_functions_and_state_machines(assembly, REGION, LOCAL_ACCOUNT))
    functions = {function_name(f.key): f for f in assembly.functions()}

    def call(name: str, event: Any) -> Invocation:
        function = functions[name]
        outcome = Invocation.of(lambda: invoke(function.handler, event, timeout_seconds=function.timeout_seconds))
        if on_result is not None and outcome.error_type is None:
            on_result(function.handler, outcome.result)
        return outcome

    return StateMachines(assembly, resolver, call, time_scale=time_scale)


def run_bootstrap(
    *,
    range_size: int | None = None,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
    fresh: bool = False,
    generation: int | None = None,
    time_scale: float = 1.0,
) -> dict[str, Any]:
    """Run one bootstrap execution to the end; return Finalize's output (ExecutionFailed if it failed).

    It fills index generation `generation` (default: the active one).
    """

    def batch_done(handler: str, result: Any) -> None:
        if on_batch is not None and handler == BOOTSTRAP_BATCH_HANDLER:
            on_batch(result)

    execution_input: dict[str, Any] = {"fresh": fresh, "generation": generation}
    if range_size:
        execution_input["range_size"] = range_size
    output: dict[str, Any] = local_state_machines(time_scale=time_scale, on_result=batch_done).run(
        "Bootstrap", execution_input
    )
    return output


def run_reconcile(*, repair: bool, time_scale: float = 1.0) -> dict[str, Any]:
    """Run one reconcile execution: every shard compared (and repaired), then the summed report."""
    output: dict[str, Any] = local_state_machines(time_scale=time_scale).run("Reconcile", {"repair": repair})
    return output


# The Reindex state machine's state after its Fill: from there it only polls the building generation and switches.
REINDEX_FILLED_STATE = "Wait"


def run_reindex(
    *,
    time_scale: float = 1.0,
    timeout_seconds: float | None = None,
    on_result: Callable[[str, Any], None] | None = None,
    stop_after_fill: bool = False,
) -> dict[str, Any]:
    """Run one re-index execution to the end (Start -> Fill -> poll -> Switch); return its last output.

    That is Start's output ({generation, needed}) when nothing was needed, else Switch's ({previous, active}).
    `stop_after_fill`: the execution is stopped as it enters its first Wait, once Start has created (or
    found) the building generation and Fill has sent its rows to the bulk lane; Emu goes on filling it,
    and a later execution resumes it. Then the output is Start's ({generation, needed: true}).
    `on_result(handler, result)` sees every step's result (the CLI shows the Progress steps').
    """
    machines = local_state_machines(time_scale=time_scale, on_result=on_result)
    if stop_after_fill:
        output, _ = machines.run_until("Reindex", {}, REINDEX_FILLED_STATE, timeout_seconds=timeout_seconds)
    else:
        output = machines.run("Reindex", {}, timeout_seconds=timeout_seconds)
    last: dict[str, Any] = output.get("switched", output)
    return last
