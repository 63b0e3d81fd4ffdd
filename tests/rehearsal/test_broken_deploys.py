"""The rehearsal itself fails on a broken deploy, naming what broke: a grant the deploy's own start needs,
a JSONPath in a state machine's definition (a variable left out: tests/rehearsal/test_wiring.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from refarch_local.rehearsal.run import Rehearsal, RehearsalFailed, RehearsalOptions
from refarch_local.rehearsal.template import Assembly


def broken_copy(assembly: Assembly) -> Assembly:
    return Assembly(outdir=assembly.outdir, templates=copy.deepcopy(assembly.templates))


def rehearse(assembly: Assembly, tmp_path: Path, *steps: str) -> str:
    """Run these steps of a small rehearsal; the message of the RehearsalFailed it must raise."""
    options = RehearsalOptions(home=tmp_path, rows=20, time_scale=0.01, timeout_seconds=240, steps=steps)
    with pytest.raises(RehearsalFailed) as failed:
        Rehearsal(assembly, options).run()
    return str(failed.value)


def test_a_deploy_whose_migration_provider_may_not_invoke_the_migrate_function_fails_naming_it(
    assembly: Assembly, tmp_path: Path
) -> None:
    # Given the templates with lambda:InvokeFunction taken from the schema provider's role (the call
    # CloudFormation's custom resource makes on every deploy to run the migrations)
    broken = broken_copy(assembly)
    removed = 0
    for _, policy in broken.resources("AWS::IAM::Policy"):
        document: dict[str, Any] = policy["Properties"]["PolicyDocument"]
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if "SchemaProviderframeworkonEvent" in roles:
            kept = [s for s in document["Statement"] if "lambda:InvokeFunction" not in json.dumps(s["Action"])]
            removed += len(document["Statement"]) - len(kept)
            document["Statement"] = kept
    assert removed
    # When the rehearsal migrates, Then it fails naming the custom resource, the role, the action and the function
    message = rehearse(broken, tmp_path, "migrate")
    assert "Custom::RefarchSchema" in message and "SchemaProviderframeworkonEventServiceRole" in message
    assert "lambda:InvokeFunction" in message and "MigrateFunction" in message


def test_a_broken_jsonpath_in_the_synthesized_bootstrap_fails_the_rehearsal_naming_it(
    assembly: Assembly, tmp_path: Path
) -> None:
    # Given the bootstrap state machine's definition, as synthesized, with Finalize reading `$.run_idx`
    # where Plan writes `$.run_id`
    broken = broken_copy(assembly)
    machine = broken.resource(broken.state_machine("Bootstrap").key)
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    changed = [
        p.replace('"run_id.$":"$.run_id"', '"run_id.$":"$.run_idx"', 1) if isinstance(p, str) else p for p in parts
    ]
    assert changed != parts
    machine["Properties"]["DefinitionString"]["Fn::Join"][1] = changed
    # When the rehearsal migrates and bootstraps, Then it fails in the bootstrap, naming the state and the path
    message = rehearse(broken, tmp_path, "migrate", "bootstrap")
    assert message.startswith("bootstrap:") and "'Finalize'" in message and "$.run_idx" in message, message
