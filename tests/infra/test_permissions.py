"""Least privilege, role by role: each runtime can touch only the secrets and queue operations it uses.

IAM decides which secrets a runtime can read and what it may do with the queues. Inside Postgres
each runtime logs in as its own role (web, emu, pelican) with its own secret, so reading only its
own secret is what confines it to its tables; the grants themselves are tested against a real
database in tests/integration/test_runtime_roles.py. Only the migrate and reindex functions read the admin
secret (they create tables).
"""

from __future__ import annotations

import json
import re

import pytest

from refarch.lanes import topology
from tests.infra.conftest import Synthesized
from tests.infra.templates import (
    container_task_role,
    function_logical_id,
    function_role,
    grants,
    managed_policies,
    resources,
    state_machine_id,
)

QUEUE_READ = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
QUEUE_SEND = "sqs:SendMessage"
SECRET_READ = {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
ALWAYS_ALLOWED = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def secrets_readable(role_grants: dict[str, list[str]]) -> set[str]:
    """Which of our secrets a role may read, by name."""
    names = {
        "DatabaseSecret": "database-admin",
        "DatabaseLoginWeb": "database:web",
        "DatabaseLoginEmu": "database:emu",
        "DatabaseLoginPelican": "database:pelican",
        "openai-api-key": "openai",
        "pinecone-api-key": "pinecone",
        "EditPassword": "edit-password",
        "SessionSecret": "session",
    }
    readable = role_grants.get("secretsmanager:GetSecretValue", [])
    found = {label for marker, label in names.items() if any(marker in arn for arn in readable)}
    assert len(found) == len(readable), f"unrecognised secret grants: {readable}"
    return found


def queue_actions(role_grants: dict[str, list[str]], queue_marker: str) -> set[str]:
    """SQS actions a role may perform on the queue whose ARN mentions `queue_marker`."""
    return {
        action
        for action, targets in role_grants.items()
        if action.startswith("sqs:") and any(queue_marker in t for t in targets)
    }


SEND = {QUEUE_SEND, "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
CONSUME = QUEUE_READ | {"sqs:GetQueueAttributes", "sqs:GetQueueUrl"}

LAMBDA_ROLES = {
    # handler: (stack attribute, secrets it may read, queue actions on the live queue, on the bulk queue)
    topology.EMU_HANDLER: ("emu", {"database:emu", "openai", "pinecone"}, CONSUME, set()),
    topology.MIGRATE_HANDLER: (
        "data",
        {"database-admin", "database:web", "database:emu", "database:pelican"},
        set(),
        set(),
    ),
    topology.PINECONE_INDEX_HANDLER: ("pinecone_index", {"pinecone"}, set(), set()),
    topology.BOOTSTRAP_PLAN_HANDLER: ("pelican", {"database:pelican"}, set(), set()),
    # The bootstrap and repairs are bulk work: they send to the bulk lane only.
    topology.BOOTSTRAP_BATCH_HANDLER: ("pelican", {"database:pelican"}, set(), SEND),
    topology.BOOTSTRAP_FINALIZE_HANDLER: ("pelican", {"database:pelican"}, set(), set()),
    topology.RECONCILE_PLAN_HANDLER: ("pelican", {"database:pelican"}, set(), set()),
    topology.RECONCILE_SHARD_HANDLER: ("pelican", {"database:pelican", "openai", "pinecone"}, set(), SEND),
    topology.RECONCILE_FINALIZE_HANDLER: ("pelican", {"database:pelican"}, set(), set()),
    # A re-index creates a generation's table (admin), builds its embedder and index, and watches both lanes.
    topology.REINDEX_HANDLER: (
        "reindex",
        {"database-admin", "openai", "pinecone"},
        {"sqs:GetQueueAttributes"},
        {"sqs:GetQueueAttributes"},
    ),
}


@pytest.mark.parametrize("handler", sorted(LAMBDA_ROLES))
def test_each_function_reads_only_its_secrets_and_uses_the_queue_only_as_needed(dev: Synthesized, handler: str) -> None:
    # Given the function's execution role
    stack_name, expected_secrets, expected_queue, expected_bulk = LAMBDA_ROLES[handler]
    template = dev.template_json(getattr(dev.stacks, stack_name))
    role_grants = grants(
        template, function_role(template, handler, lane="live" if handler == topology.EMU_HANDLER else None)
    )
    # Then it reads exactly its secrets, does exactly its queue operations, and nothing else but tracing
    assert secrets_readable(role_grants) == expected_secrets
    assert queue_actions(role_grants, "SyncQueue") == expected_queue
    assert queue_actions(role_grants, "SyncBulkQueue") == expected_bulk
    assert queue_actions(role_grants, "DeadLetter") == set()
    assert set(role_grants) <= SECRET_READ | expected_queue | expected_bulk | ALWAYS_ALLOWED


@pytest.mark.parametrize(
    ("lane", "own", "other"), [("live", "SyncQueue", "SyncBulkQueue"), ("bulk", "SyncBulkQueue", "SyncQueue")]
)
def test_each_emu_lane_reads_only_its_own_queue(dev: Synthesized, lane: str, own: str, other: str) -> None:
    # Given one lane's Emu role
    template = dev.template_json(dev.stacks.emu)
    role_grants = grants(template, function_role(template, topology.EMU_HANDLER, lane=lane))
    # Then it consumes its own queue, never the other lane's; the live lane sends nowhere, the bulk lane
    # only to its own queue (work it had no time to start goes back as new messages)
    assert queue_actions(role_grants, own) == (CONSUME if lane == "live" else CONSUME | {QUEUE_SEND})
    assert queue_actions(role_grants, other) == set()
    assert queue_actions(role_grants, "DeadLetter") == set()
    assert (QUEUE_SEND in role_grants) is (lane == "bulk")


def test_the_live_emu_consumes_but_never_sends(dev: Synthesized) -> None:
    # Given the live lane's Emu role
    template = dev.template_json(dev.stacks.emu)
    role_grants = grants(template, function_role(template, topology.EMU_HANDLER, lane="live"))
    # Then it receives and deletes from the queue but cannot enqueue (only Pelican produces changes)
    assert set(role_grants) >= QUEUE_READ
    assert QUEUE_SEND not in role_grants


DEAD_LETTER_ACTIONS = QUEUE_READ | {"sqs:GetQueueAttributes", "sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks"}


def test_web_never_consumes_the_lanes_and_acts_only_on_their_dead_letters(dev: Synthesized) -> None:
    # Given the web task role
    template = dev.template_json(dev.stacks.frontend)
    role_grants = grants(template, container_task_role(template, "web"))
    queues = {
        lane: queue_actions(role_grants, marker) for lane, marker in (("live", "SyncQueue"), ("bulk", "SyncBulkQueue"))
    }
    # Then on each lane's queue it reads the depth and sends (a redrive), never receives or deletes
    assert queues == {"live": {"sqs:GetQueueAttributes", QUEUE_SEND}, "bulk": {"sqs:GetQueueAttributes", QUEUE_SEND}}
    # And on the dead-letter queues it lists (receive, visible again), discards, and starts SQS's redrive
    assert queue_actions(role_grants, "DeadLetter") == DEAD_LETTER_ACTIONS
    for action in QUEUE_READ | {"sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks"}:
        assert all("DeadLetter" in target for target in role_grants[action]), action
    # And it reads its secrets and the search keys, and the queues' age metric
    assert secrets_readable(role_grants) == {"database:web", "openai", "pinecone", "edit-password", "session"}
    assert set(role_grants["cloudwatch:GetMetricStatistics"]) == {'"*"'}  # Resource "*"
    assert set(role_grants) <= SECRET_READ | DEAD_LETTER_ACTIONS | {QUEUE_SEND, "cloudwatch:GetMetricStatistics"}


def test_listener_sends_but_never_receives(dev: Synthesized) -> None:
    # Given the listener task role
    template = dev.template_json(dev.stacks.pelican)
    role_grants = grants(template, container_task_role(template, "listener"))
    # Then it can enqueue on both lanes (a large backlog goes bulk) and read the database secret, nothing else
    assert queue_actions(role_grants, "SyncQueue") == {QUEUE_SEND, "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert queue_actions(role_grants, "SyncBulkQueue") == {QUEUE_SEND, "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert secrets_readable(role_grants) == {"database:pelican"}
    assert set(role_grants) <= SECRET_READ | {QUEUE_SEND, "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}


def test_state_machine_can_only_invoke_the_bootstrap_functions(dev: Synthesized) -> None:
    # Given the state machine's role
    template = dev.template_json(dev.stacks.pelican)
    machine = next(iter(resources(template, "AWS::StepFunctions::StateMachine").values()))
    role_grants = grants(template, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    # Then it invokes the three bootstrap functions and nothing else
    invoked = " ".join(role_grants["lambda:InvokeFunction"])
    for handler in (
        topology.BOOTSTRAP_PLAN_HANDLER,
        topology.BOOTSTRAP_BATCH_HANDLER,
        topology.BOOTSTRAP_FINALIZE_HANDLER,
    ):
        assert function_role(template, handler)  # the function exists
    assert {"BootstrapPlan", "BootstrapBatch", "BootstrapFinalize"} == {
        name for name in ("BootstrapPlan", "BootstrapBatch", "BootstrapFinalize", "Reconcile") if name in invoked
    }
    assert not any(a.startswith(("sqs:", "secretsmanager:", "rds")) for a in role_grants)


def test_reindex_state_machine_can_only_invoke_its_function_and_run_the_bootstrap(dev: Synthesized) -> None:
    # Given the Reindex state machine's role
    template = dev.template_json(dev.stacks.reindex)
    machine = template["Resources"][state_machine_id(template, "Reindex")]
    role_grants = grants(template, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])
    bootstrap = json.dumps({"Fn::ImportValue": dev.stacks.pelican.bootstrap_name_export})
    # Then it invokes the reindex function only
    function = function_logical_id(template, topology.REINDEX_HANDLER)
    assert all(function in target for target in role_grants["lambda:InvokeFunction"])
    # And it starts the bootstrap state machine only, and reads or stops only that one's executions (.sync)
    (started,) = role_grants["states:StartExecution"]
    assert started.endswith(f':stateMachine:", {bootstrap}]]}}')
    for action in ("states:DescribeExecution", "states:StopExecution"):
        (executions,) = role_grants[action]
        assert executions.endswith(f':execution:", {bootstrap}, "*"]]}}')
    # And nothing else but the .sync integration's event rule, log delivery and tracing
    assert {action.split(":")[0] for action in role_grants} == {"lambda", "states", "events", "logs", "xray"}
    assert set(role_grants["events:PutRule"]) == set(role_grants["events:PutTargets"])
    assert all("StepFunctionsGetEventsForStepFunctionsExecutionRule" in rule for rule in role_grants["events:PutRule"])


def as_list(value: str | list[str]) -> list[str]:
    """An IAM statement's Action (or Resource): one string or a list of them."""
    return value if isinstance(value, list) else [value]


def test_no_policy_grants_a_service_wide_wildcard_action(any_stage: Synthesized) -> None:
    # Given every identity policy statement in every stack of the stage: policies attached to roles,
    # policies written inline in a role, and customer managed policies
    statements: dict[str, list[dict]] = {"AWS::IAM::Policy": [], "inline": [], "AWS::IAM::ManagedPolicy": []}
    for stack in any_stage.stacks.all():
        template = any_stage.template_json(stack)
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for policy in resources(template, kind).values():
                statements[kind].extend(policy["Properties"]["PolicyDocument"]["Statement"])
        for role in resources(template, "AWS::IAM::Role").values():
            for policy in role["Properties"].get("Policies", []):
                statements["inline"].extend(policy["PolicyDocument"]["Statement"])
    # Then no action is `*` or `service:*`, whichever kind of policy carries it
    actions = {kind: [a for s in found for a in as_list(s.get("Action", []))] for kind, found in statements.items()}
    assert actions["AWS::IAM::Policy"]
    wildcards = {kind: [a for a in found if a == "*" or a.endswith(":*")] for kind, found in actions.items()}
    assert wildcards == {kind: [] for kind in statements}


def test_only_aws_minimum_managed_policies_are_attached(any_stage: Synthesized) -> None:
    # Given every role in every stack
    attached = set()
    for stack in any_stage.stacks.all():
        template = any_stage.template_json(stack)
        for role_id in resources(template, "AWS::IAM::Role"):
            attached.update(managed_policies(template, role_id))
    # Then the only managed policies are Lambda's logging and VPC-networking minimums
    names = {name for arn in attached for name in re.findall(r":policy/(?:service-role/)?([\w+=,.@-]+)", arn)}
    assert len(names) >= 1 and all(":iam::aws:policy/" in arn for arn in attached)
    assert names == {"AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole"}
