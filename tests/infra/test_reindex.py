"""The re-index stack as synthesized: the Reindex state machine's loop, its start on deploy, the daily gc."""

from __future__ import annotations

import json
from dataclasses import replace

import aws_cdk as cdk
import pytest
from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn

from cdk_app.config import DEV, SearchConfig
from cdk_app.constructs.state_machines import ReindexStateMachine
from refarch.lanes import topology
from refarch.source.definition import load
from tests.infra.conftest import Synthesized, synthesize
from tests.infra.templates import (
    container,
    environment,
    function_by_handler,
    function_logical_id,
    only,
    render_join,
    resources,
    state_machine_definition,
    state_machine_id,
)
from tests.infra.test_services import render_create

NOT_RETRIED = ["GenerationError", "IncompleteGenerationError"]


def test_reindex_state_machine_starts_fills_polls_and_switches(dev: Synthesized) -> None:
    # Given the Reindex definition
    template = dev.template_json(dev.stacks.reindex)
    definition = state_machine_definition(template, "Reindex")
    states = definition["States"]
    reindex = f"<{function_logical_id(template, topology.REINDEX_HANDLER)}>"
    # Then it starts with the start step, and succeeds at once when no re-index is needed
    assert definition["StartAt"] == "Start"
    assert states["Start"]["Resource"] == reindex and states["Start"]["Parameters"] == {"action": "start"}
    needed = states[states["Start"]["Next"]]
    assert needed["Type"] == "Choice"
    assert needed["Choices"] == [{"Variable": "$.needed", "BooleanEquals": True, "Next": "Fill"}]
    assert states[needed["Default"]]["Type"] == "Succeed"
    # And Fill runs the bootstrap state machine to its end (.sync) for the building generation, then waits
    fill = states["Fill"]
    assert fill["Resource"].endswith(":states:::states:startExecution.sync:2")
    assert fill["Parameters"]["Input"]["generation.$"] == "$.generation"
    assert fill["Next"] == "Wait"
    # And the loop: Wait (the stage's poll) -> Progress -> Complete? (switch / fill again / wait)
    assert states["Wait"] == {
        "Type": "Wait",
        "Comment": "Emu fills the generation",
        "Seconds": dev.config.reindex_poll_seconds,
        "Next": "Progress",
    }
    progress = states["Progress"]
    assert progress["Resource"] == reindex and progress["ResultPath"] == "$.progress"
    assert progress["Parameters"] == {"action": "progress", "generation.$": "$.generation"}
    complete = states[progress["Next"]]
    assert complete["Choices"] == [
        {"Variable": "$.progress.complete", "BooleanEquals": True, "Next": "Switch"},
        {"Variable": "$.progress.lanes_idle", "BooleanEquals": True, "Next": "Fill"},
    ]
    assert complete["Default"] == "Wait"
    # And the switch succeeds, or, refused because a change arrived since the poll, goes back to Wait
    switch = states["Switch"]
    assert switch["Resource"] == reindex
    assert switch["Parameters"] == {"action": "switch", "generation.$": "$.generation"}
    assert switch["Catch"] == [
        {"ErrorEquals": ["IncompleteGenerationError"], "ResultPath": "$.refused", "Next": "Wait"}
    ]
    assert states[switch["Next"]]["Type"] == "Succeed"
    # And the loop is bounded by the stage's timeout
    assert definition["TimeoutSeconds"] == dev.config.reindex_timeout_hours * 3600


def test_reindex_steps_fail_at_once_on_a_refusal_and_retry_other_errors(dev: Synthesized) -> None:
    # Given the Lambda steps of the Reindex definition
    states = state_machine_definition(dev.template_json(dev.stacks.reindex), "Reindex")["States"]
    for name in ("Start", "Progress", "Switch"):
        rules = [rule["ErrorEquals"] for rule in states[name]["Retry"]]
        # Then a refusal is never retried (the rule ahead of the TaskFailed wildcard, which would match it)
        refusal = next(rule for rule in states[name]["Retry"] if rule["ErrorEquals"] == NOT_RETRIED)
        assert refusal["MaxAttempts"] == 0
        assert rules.index(NOT_RETRIED) < next(i for i, r in enumerate(rules) if "States.TaskFailed" in r)


def test_reindex_state_machine_logs_traces_and_runs_the_bootstrap_state_machine(dev: Synthesized) -> None:
    # Given the Reindex state machine and the Pelican stack's export of the bootstrap state machine's name
    template = dev.template_json(dev.stacks.reindex)
    machine = template["Resources"][state_machine_id(template, "Reindex")]["Properties"]
    pelican = dev.template_json(dev.stacks.pelican)
    export = pelican["Outputs"]["BootstrapStateMachineName"]
    # Then logging is ALL and X-Ray is on
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    # And the name it imports is the bootstrap state machine's
    assert export["Value"] == {"Fn::GetAtt": [state_machine_id(pelican, "Bootstrap"), "Name"]}
    assert export["Export"]["Name"] == dev.stacks.pelican.bootstrap_name_export
    assert {"Fn::ImportValue": export["Export"]["Name"]} in machine["DefinitionString"]["Fn::Join"][1]
    manifest = json.loads((dev.outdir / "manifest.json").read_text())
    assert dev.stacks.pelican.stack_name in manifest["artifacts"][dev.stacks.reindex.stack_name]["dependencies"]


def test_the_reindex_function_logs_in_as_the_admin_and_builds_the_configured_embedder(dev: Synthesized) -> None:
    # Given the reindex function
    template = dev.template_json(dev.stacks.reindex)
    function = function_by_handler(template, topology.REINDEX_HANDLER)
    env = environment(function)
    # Then it reads the admin secret (as the migrate step), the stage's embedder, and both lanes' queue URLs
    assert "DatabaseSecret" in json.dumps(env["REFARCH_DATABASE_SECRET_ARN"])
    assert "DatabaseLogin" not in json.dumps(env["REFARCH_DATABASE_SECRET_ARN"])
    assert (env["REFARCH_EMBEDDER"], env["REFARCH_OPENAI_MODEL"], env["REFARCH_OPENAI_DIMENSIONS"]) == (
        "openai",
        dev.config.search.openai_model,
        str(dev.config.search.openai_dimensions),
    )
    assert "SyncQueue" in json.dumps(env["REFARCH_QUEUE_URL"])
    assert "SyncBulkQueue" in json.dumps(env["REFARCH_BULK_QUEUE_URL"])
    assert function["VpcConfig"]["SubnetIds"] and function["TracingConfig"] == {"Mode": "Active"}


def start_call(synth: Synthesized) -> dict:
    """The SDK call the start-on-deploy custom resource makes on create and on update."""
    template = synth.template_json(synth.stacks.reindex)
    props = next(iter(resources(template, "Custom::StartReindex").values()))["Properties"]
    assert props["Create"] == props["Update"]
    return json.loads(render_create(props["Update"]))


def test_a_deploy_that_changes_the_embedder_starts_an_execution(dev: Synthesized, prod: Synthesized, variant):
    # Given the start-on-deploy resource of three stages: dev and prod share an embedder, the variant's is 512-d
    dev_call, prod_call, variant_call = start_call(dev), start_call(prod), start_call(variant)
    # Then it starts an execution of the Reindex state machine, on create and on update
    assert (dev_call["service"], dev_call["action"]) == ("SFN", "startExecution")
    assert dev_call["parameters"]["stateMachineArn"] == "ARN"
    template = dev.template_json(dev.stacks.reindex)
    custom = next(iter(resources(template, "Custom::StartReindex").values()))
    assert custom["Properties"]["Create"]["Fn::Join"][1][1] == {"Ref": state_machine_id(template, "Reindex")}
    # And its properties carry the configured embedder and vector index, so they change (and
    # CloudFormation updates the resource, starting an execution) exactly when one of them changes
    dev_input, variant_input = (
        json.loads(dev_call["parameters"]["input"]),
        json.loads(variant_call["parameters"]["input"]),
    )
    assert dev_input == {
        "embedder": {"kind": "openai", "model": dev.config.search.openai_model, "dimensions": 1536},
        "placement": {
            "backend": "pinecone",
            "pinecone_index": dev.config.search.pinecone_index_name,
            "namespace": dev.config.search.pinecone_namespace,
        },
        "source_text": load(dev.config.search.source).fingerprint("text"),
    }
    assert variant_input["embedder"]["dimensions"] == 512
    assert variant_input["placement"] == {"backend": "pgvector", "pinecone_index": None, "namespace": None}
    # And each stage's placement is its own index and namespace (the embedder is the same)
    prod_input = json.loads(prod_call["parameters"]["input"])
    assert prod_input["embedder"] == dev_input["embedder"]
    assert prod_input["placement"]["pinecone_index"] == "refarch-prod-products"
    assert prod_input["placement"]["namespace"] == "prod-products"
    assert dev_call != variant_call
    # And it waits for the schema and for the function's new settings
    depends = custom.get("DependsOn", [])
    assert function_logical_id(template, topology.REINDEX_HANDLER) in depends
    manifest = json.loads((dev.outdir / "manifest.json").read_text())
    assert dev.stacks.data.stack_name in manifest["artifacts"][dev.stacks.reindex.stack_name]["dependencies"]


def test_a_move_from_pinecone_to_pgvector_keeps_the_pinecone_key_until_told_otherwise(dev: Synthesized, tmp_path):
    # Given the dev stage moved to pgvector with keep_pinecone_access (docs/reindex.md)
    moving = synthesize(
        replace(DEV, name="moving", search=SearchConfig(vector_backend="pgvector", keep_pinecone_access=True)), tmp_path
    )
    # Then the deploy starts a re-index into pgvector (the placement in the start call changed)
    assert json.loads(start_call(moving)["parameters"]["input"])["placement"] == {
        "backend": "pgvector",
        "pinecone_index": None,
        "namespace": None,
    }
    assert start_call(moving) != start_call(dev)
    # And every search runtime writes new generations to pgvector, yet still reads the Pinecone key, so search
    # keeps reading the Pinecone generation until the switch and a rollback can return to it until gc
    emu = moving.template_json(moving.stacks.emu)
    runtimes = {
        "emu live": function_by_handler(emu, topology.EMU_HANDLER, lane="live"),
        "emu bulk": function_by_handler(emu, topology.EMU_HANDLER, lane="bulk"),
        "reindex": function_by_handler(moving.template_json(moving.stacks.reindex), topology.REINDEX_HANDLER),
    }
    envs = {name: environment(function) for name, function in runtimes.items()}
    envs["web"] = environment(container(moving.template_json(moving.stacks.frontend), "web"))
    secret = f":secret:{moving.config.search.pinecone_secret_name}"
    for name, env in envs.items():
        assert env["REFARCH_VECTOR_BACKEND"] == "pgvector", name
        assert secret in json.dumps(env["REFARCH_PINECONE_SECRET_ARN"]), name
    # And Emu's roles may read that secret
    reads = [
        statement
        for policy in resources(emu, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in statement["Action"] and secret in json.dumps(statement["Resource"])
    ]
    assert len(reads) == 2  # one per lane's function
    # And no Pinecone index is created for it
    assert moving.stacks.pinecone_index is None


def test_a_daily_rule_runs_gc(dev: Synthesized) -> None:
    # Given the re-index stack's schedule
    template = dev.template_json(dev.stacks.reindex)
    rule = only(template, "AWS::Events::Rule")
    # Then it invokes the reindex function with {"action": "gc"} once a day
    assert rule["ScheduleExpression"] == "rate(1 day)"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_logical_id(template, topology.REINDEX_HANDLER), "Arn"]}
    assert json.loads(target["Input"]) == {"action": "gc"}


def test_outputs_name_the_state_machine_and_the_function(dev: Synthesized) -> None:
    # Given the re-index stack's outputs
    outputs = dev.template_json(dev.stacks.reindex)["Outputs"]
    # Then an operator finds the state machine (start by hand) and the function (rollback, abort, gc)
    template = dev.template_json(dev.stacks.reindex)
    assert outputs["ReindexStateMachineArn"]["Value"] == {"Ref": state_machine_id(template, "Reindex")}
    assert outputs["ReindexFunctionName"]["Value"] == {"Ref": function_logical_id(template, topology.REINDEX_HANDLER)}
    assert "rollback" in render_join(outputs["ReindexFunctionName"]["Description"])


def test_a_poll_too_frequent_for_the_execution_history_is_refused() -> None:
    # Given a stack with a function and a bootstrap state machine to run
    stack = cdk.Stack(cdk.App(), "PollProbe")
    function = lambda_.Function(
        stack,
        "F",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context): ..."),
    )
    bootstrap = sfn.StateMachine.from_state_machine_name(stack, "Bootstrap", "bootstrap")
    # When polling every 10 s for 24 h (8,640 polls, ~86,000 history events; a standard workflow stops at 25,000)
    # Then the construct refuses, saying what to change
    with pytest.raises(ValueError, match="poll less often or time out sooner"):
        ReindexStateMachine(
            stack,
            "Reindex",
            reindex=function,
            bootstrap=bootstrap,
            poll=Duration.seconds(10),
            timeout=Duration.hours(24),
            log_retention=logs.RetentionDays.ONE_DAY,
        )
