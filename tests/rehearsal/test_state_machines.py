"""The synthesized definitions in the interpreter: a definition broken on purpose fails naming what broke; a
re-index execution stopped after its Fill (`refarch reindex --no-wait`) runs nothing after it."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

import lambdas.bootstrap
from refarch import catalog
from refarch.lanes import topology
from refarch.runtime import Runtime
from refarch_local.rehearsal.states import (
    ExecutionFailed,
    Invocation,
    StateMachines,
    function_name,
    local_functions_and_state_machines,
)
from refarch_local.rehearsal.template import LOCAL_ACCOUNT, Assembly, Resolver
from refarch_local.stepfunctions import REINDEX_FILLED_STATE, local_state_machines


def with_bootstrap_definition_edited(assembly: Assembly, edit) -> Assembly:
    """The assembly with the bootstrap state machine's DefinitionString resolved, edited and put back."""
    edited = Assembly(outdir=assembly.outdir, templates=copy.deepcopy(assembly.templates))
    spec = edited.state_machine("Bootstrap")
    resolver = Resolver(edited, local_functions_and_state_machines(edited, "us-east-1", LOCAL_ACCOUNT))
    definition = json.loads(resolver.resolve_text(spec.key.stack, spec.definition))
    edit(definition)
    edited.resource(spec.key)["Properties"]["DefinitionString"] = json.dumps(definition)
    return edited


def test_a_broken_jsonpath_fails_the_execution_naming_the_state_and_the_path(
    assembly: Assembly, conn, local_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 50 products, and the bootstrap definition with Finalize reading $.run_idx instead of $.run_id
    catalog.seed(conn, 50)
    monkeypatch.setattr(lambdas.bootstrap, "runtime", Runtime(local_settings, application_name="bootstrap"))

    def break_finalize(definition: dict) -> None:
        definition["States"]["Finalize"]["Parameters"]["run_id.$"] = "$.run_idx"

    broken = with_bootstrap_definition_edited(assembly, break_finalize)
    # When the bootstrap runs through the interpreter
    with pytest.raises(ExecutionFailed) as failed:
        local_state_machines(assembly=broken, time_scale=0.01).run("Bootstrap", {}, timeout_seconds=120)
    # Then the execution fails in Finalize, and the message names the path that found nothing
    # (its Catch then records the failure on the run and fails the execution in its Fail state)
    assert failed.value.first_failure is not None
    assert failed.value.first_failure.startswith("in state 'Finalize'") and "$.run_idx" in failed.value.first_failure
    assert "'Finalize'" in str(failed.value) and "$.run_idx" in str(failed.value)


def test_the_unbroken_definition_runs_to_finalize(assembly: Assembly, conn, local_settings, monkeypatch) -> None:
    # Given the same 50 products and the definition as synthesized, When the bootstrap runs, Then it completes
    catalog.seed(conn, 50)
    monkeypatch.setattr(lambdas.bootstrap, "runtime", Runtime(local_settings, application_name="bootstrap"))
    output = local_state_machines(assembly=assembly, time_scale=0.01).run("Bootstrap", {}, timeout_seconds=120)
    assert (output["status"], output["enqueued"]) == ("complete", 50)


def stubbed_reindex(assembly: Assembly, *, needed: bool) -> tuple[StateMachines, list[str]]:
    """The synthesized state machines, their functions stubbed: the reindex function's Start finds generation 2
    to build (or, not `needed`, generation 1 already serving), Progress says it is complete. Also the steps run,
    in order."""
    resolver = Resolver(assembly, local_functions_and_state_machines(assembly, "us-east-1", LOCAL_ACCOUNT))
    handlers = {function_name(f.key): f.handler for f in assembly.functions()}
    steps = {
        "start": {"generation": 2, "needed": True} if needed else {"generation": 1, "needed": False},
        "progress": {"complete": True, "lanes_idle": True},
        "switch": {"previous": 1, "active": 2},
    }
    invoked: list[str] = []

    def call(name: str, event: Any) -> Invocation:
        handler = handlers[name]
        if handler == topology.REINDEX_HANDLER:
            invoked.append(event["action"])
            return Invocation(result=steps[event["action"]])
        invoked.append(handler)
        if handler == topology.BOOTSTRAP_PLAN_HANDLER:
            return Invocation(result={"run_id": 1, "ranges": [{"start": 1, "end": 2}]})
        return Invocation(result={"run_id": 1, "status": "complete", "enqueued": 1})

    return StateMachines(assembly, resolver, call, time_scale=1 / 300), invoked


def test_a_reindex_execution_stopped_after_its_fill_never_polls_or_switches(assembly: Assembly) -> None:
    # Given the synthesized Reindex definition, whose Start finds generation 2 to build
    machines, invoked = stubbed_reindex(assembly, needed=True)
    # When it runs until it enters its Wait (as `refarch reindex --no-wait` runs it)
    entered, stopped = machines.run_until("Reindex", {}, REINDEX_FILLED_STATE, timeout_seconds=60)
    # Then Start and the Fill (the bootstrap's Plan, Batch, Finalize) ran, and it was stopped there
    assert stopped and entered == {"generation": 2, "needed": True}
    filled = [
        "start",
        topology.BOOTSTRAP_PLAN_HANDLER,
        topology.BOOTSTRAP_BATCH_HANDLER,
        topology.BOOTSTRAP_FINALIZE_HANDLER,
    ]
    assert invoked == filled
    # And nothing after it ever runs: no Progress, no Switch, well past its (scaled) Wait
    time.sleep(1)
    assert invoked == filled
    # And an execution whose Start finds nothing to build ends by itself, with Start's output
    machines, invoked = stubbed_reindex(assembly, needed=False)
    assert machines.run_until("Reindex", {}, REINDEX_FILLED_STATE, timeout_seconds=60) == (
        {"generation": 1, "needed": False},
        False,
    )
    assert invoked == ["start"]


def test_a_reindex_execution_run_to_its_end_polls_and_switches(assembly: Assembly) -> None:
    # Given the same stubbed functions, When the execution runs to its end (as `refarch reindex` runs it)
    machines, invoked = stubbed_reindex(assembly, needed=True)
    output = machines.run("Reindex", {}, timeout_seconds=60)
    # Then after the Fill it polled the building generation, found it complete, and switched
    assert output["switched"] == {"previous": 1, "active": 2}
    assert invoked[-2:] == ["progress", "switch"]
