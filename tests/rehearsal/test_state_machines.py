"""The synthesized definitions in the interpreter: a definition broken on purpose fails naming what broke."""

from __future__ import annotations

import copy
import json

import pytest

import lambdas.bootstrap
from refarch import catalog
from refarch.runtime import Runtime
from refarch_local.rehearsal.states import ExecutionFailed, local_functions_and_state_machines
from refarch_local.rehearsal.template import LOCAL_ACCOUNT, Assembly, Resolver
from refarch_local.stepfunctions import local_state_machines


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
