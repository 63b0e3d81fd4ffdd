"""Permissions proven sufficient: each runtime's real AWS calls, signed as its role, against IAM enforced.

Each runtime's role from the synthesized dev templates becomes an IAM user on the local AWS API
(moto's server, IAM enforced on action and resource: refarch_local/rehearsal/iam.py). Each test
runs a runtime's own code paths with the environment its template declares, resolved to the local
queues and secrets, and that user's keys; the server must allow every call. Then one grant is taken
away on purpose and the call it allowed fails, naming the role, the action and the resource.
tests/infra/test_permissions.py proves the same policies minimal.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from cdk_app.config import DEV
from lambdas import emu as emu_handler
from refarch.generations.reindex_flow import lanes_idle
from refarch.lanes import topology
from refarch.lanes.dead_letters import DeadLetters
from refarch.lanes.messages import SyncMessage, bulk_messages
from refarch.runtime import Runtime
from refarch.secrets import (
    API_KEY_FIELDS,
    credentials_from_secret,
    database_url_from_secret,
    from_env_or_secret,
    secret_string,
    secret_text,
)
from refarch.settings import Settings
from refarch.status import lane_queues, queue_states
from refarch_local.event_source import EventSourcePoller
from refarch_local.rehearsal.iam import (
    REGION,
    Denial,
    IamEnforcedAws,
    PermissionsMissing,
    local_role,
    policy_document,
    role_user_name,
    runtime_roles,
)
from refarch_local.rehearsal.states import (
    ExecutionFailed,
    Invocation,
    StateMachines,
    function_name,
    local_functions_and_state_machines,
)
from refarch_local.rehearsal.template import (
    LOCAL_ACCOUNT,
    Assembly,
    LocalResource,
    Resolver,
    ResourceKey,
    TemplateError,
)

# Values of the local secrets: RDS-style JSON for the database logins, plain text for the rest.
DATABASE_SECRET = {"username": "local", "password": "local-only", "host": "127.0.0.1", "port": 5432}
# The API key secrets the operator creates before a deploy, by the dev stage's names (the assembly tested).
API_KEY_SECRETS = (DEV.search.openai_secret_name, DEV.search.pinecone_secret_name)


def _fallback(key: ResourceKey, resource: dict[str, Any]) -> LocalResource:
    """Roles (named in state machines' RoleArn) and the Pinecone index (its host only passed on: never reached)."""
    if resource["Type"] == "AWS::IAM::Role":
        return local_role(key)
    if resource["Type"] == "Custom::PineconeIndex":
        return LocalResource(ref=key.logical_id, attributes={"Host": "127.0.0.1:9"})
    raise TemplateError(f"no local resource for {key} ({resource['Type']})")


def create_local_resources(aws: IamEnforcedAws, assembly: Assembly) -> Resolver:
    """The templates' queues and secrets (and the API key secrets they name), created with the admin's keys."""
    sqs, secrets = aws.admin_client("sqs"), aws.admin_client("secretsmanager")
    local = local_functions_and_state_machines(assembly, REGION, LOCAL_ACCOUNT)
    for key, resource in assembly.resources("AWS::SQS::Queue"):
        name = resource["Properties"]["QueueName"]
        url = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"} if name.endswith(".fifo") else {})
        arn = f"arn:aws:sqs:{REGION}:{LOCAL_ACCOUNT}:{name}"
        local[key] = LocalResource(ref=url["QueueUrl"], attributes={"Arn": arn, "QueueName": name})
    for key, resource in assembly.resources("AWS::SecretsManager::Secret"):
        name = resource["Properties"].get("Name")
        value = json.dumps(DATABASE_SECRET) if key.stack.endswith("-Data") else "local-only-value"
        arn = secrets.create_secret(Name=name if isinstance(name, str) else key.logical_id, SecretString=value)["ARN"]
        local[key] = LocalResource(ref=arn)
    for key, resource in assembly.resources("AWS::SecretsManager::SecretTargetAttachment"):
        local[key] = local[ResourceKey(key.stack, resource["Properties"]["SecretId"]["Ref"])]
    for name in API_KEY_SECRETS:
        secrets.create_secret(Name=name, SecretString=json.dumps({"apiKey": "local-only-key"}))
    return Resolver(assembly, local, account=LOCAL_ACCOUNT, region=REGION, fallback=_fallback)


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamEnforcedAws]:
    """The local AWS API with IAM enforced (one server process for the module)."""
    server = IamEnforcedAws.start(tmp_path_factory.mktemp("iam"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def resolver(aws: IamEnforcedAws, assembly: Assembly) -> Resolver:
    """Local queues and secrets, and one user per runtime role with exactly its role's policy."""
    resolver = create_local_resources(aws, assembly)
    aws.grant_runtime_roles(assembly, resolver)
    return resolver


class RuntimeUnderTest:
    """One runtime: its role, and its template environment resolved to the local resources."""

    def __init__(self, role: ResourceKey, environment: dict[str, str]) -> None:
        self.role = role
        self.environment = environment

    def enter(self, aws: IamEnforcedAws, monkeypatch: pytest.MonkeyPatch, home: Path) -> Settings:
        """Make this process the runtime: its environment and its role's keys, no cached client or secret."""
        for name, value in {**self.environment, **aws.credentials_for(self.role), "REFARCH_HOME": str(home)}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # clients made from now on read these keys
        secret_string.cache_clear()
        return Settings()


def function_runtime(assembly: Assembly, resolver: Resolver, handler: str, **literal_env: str) -> RuntimeUnderTest:
    """A Lambda function as its template declares it."""
    spec = assembly.function(handler, **literal_env)
    assert spec.role is not None
    environment = {k: resolver.resolve_text(spec.key.stack, v) for k, v in spec.environment.items()}
    return RuntimeUnderTest(spec.role, environment)


def container_runtime(assembly: Assembly, resolver: Resolver, name: str) -> RuntimeUnderTest:
    """An ECS container as its task definition declares it."""
    spec = assembly.container(name)
    assert spec.task_role is not None
    environment = {k: resolver.resolve_text(spec.key.stack, v) for k, v in spec.environment.items()}
    return RuntimeUnderTest(spec.task_role, environment)


def read_cold_start_secrets(settings: Settings) -> None:
    """Every secret the environment names, read by ARN the way the runtime reads it at cold start."""
    if settings.database_secret_arn:
        database_url_from_secret(settings.database_secret_arn, settings.aws_region)
    for arn in settings.database_role_secret_arns.values():
        credentials_from_secret(arn, settings.aws_region)
    for what, arn in {
        "OpenAI": settings.openai_secret_arn,
        "Pinecone": settings.pinecone_secret_arn,
        "edit password": settings.edit_password_secret_arn,
        "session": settings.session_secret_arn,
    }.items():
        from_env_or_secret(None, arn, settings.aws_region, what=what, fields=API_KEY_FIELDS)


def send_admin_message(aws: IamEnforcedAws, queue_url: str, body: str = "{}") -> None:
    """Put a message on a queue as the admin (what another runtime would have sent)."""
    extra = {"MessageGroupId": "1", "MessageDeduplicationId": body + queue_url} if queue_url.endswith(".fifo") else {}
    aws.admin_client("sqs").send_message(QueueUrl=queue_url, MessageBody=body, **extra)


def event_source_queue_url(aws: IamEnforcedAws, assembly: Assembly, resolver: Resolver, function: ResourceKey) -> str:
    """The URL of the queue the function's event source mapping reads (Emu's environment names no queue)."""
    ((key, mapping),) = [
        (key, r)
        for key, r in assembly.resources("AWS::Lambda::EventSourceMapping")
        if r["Properties"]["FunctionName"] == {"Ref": function.logical_id}
    ]
    arn = resolver.resolve_text(key.stack, mapping["Properties"]["EventSourceArn"])
    return aws.admin_client("sqs").get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]


def emu_consumes_and_hands_back(
    aws: IamEnforcedAws, settings: Settings, monkeypatch: pytest.MonkeyPatch, queue_url: str
) -> None:
    """The lane's event source (the function's role on AWS) receives and deletes; the handler hands the batch back."""
    send_admin_message(
        aws, queue_url, SyncMessage(product_id=1, version=1, op="update", source="change").model_dump_json()
    )
    monkeypatch.setattr(emu_handler, "runtime", Runtime(settings))
    lane = topology.DEFAULT_TOPOLOGY.live if settings.emu_lane == "live" else topology.DEFAULT_TOPOLOGY.bulk
    poller = EventSourcePoller(emu_handler.runtime.sqs, queue_url, lane=lane, region=settings.aws_region)

    def hand_back_all(event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = event["Records"]
        emu_handler.hand_back_unstarted(records, {r["messageId"] for r in records})
        return {"batchItemFailures": []}

    assert poller.poll_once(hand_back_all) >= 1


def listener_sends_to_both_lanes(settings: Settings) -> None:
    """The outbox relay sends changes to the live lane and large backlogs to the bulk lane."""
    runtime = Runtime(settings)
    runtime.queue.send([SyncMessage(product_id=2, version=1, op="update", source="change")])
    runtime.bulk_queue.send(bulk_messages([(3, 1, "update")], source="bootstrap"))


def bulk_send(settings: Settings) -> None:
    """The bootstrap batch and the reconcile shard enqueue ranges and repairs on the bulk lane."""
    Runtime(settings).bulk_queue.send(bulk_messages([(4, 1, "update"), (5, 1, "delete")], source="bootstrap"))


def web_status(aws: IamEnforcedAws, settings: Settings) -> None:
    """The status display: each lane's depth, DLQ depth and (with messages waiting) the age metric."""
    for queue_url, _dlq in lane_queues(settings).values():
        send_admin_message(aws, queue_url, json.dumps({"status-probe": queue_url}))
    runtime = Runtime(settings)
    states = queue_states(runtime.sqs, runtime.cloudwatch, lane_queues(settings))
    assert states["queue_depth"] is not None and states["dlq_depth"] == 0


def web_dead_letters(aws: IamEnforcedAws, settings: Settings, role: ResourceKey) -> None:
    """`refarch dlq` and the page's dead letters: list, redrive and discard each lane's. The local SQS API has no
    message-move task, so the redrive makes its moves with single calls (which AWS's task needs the role to allow
    too); the task's own actions are checked against the role directly."""
    runtime = Runtime(settings)
    lanes = lane_queues(settings)
    # Bodies Emu cannot read: their reason needs no database (the rehearsal has none).
    for _queue_url, dlq_url in lanes.values():
        assert dlq_url is not None
        send_admin_message(aws, dlq_url, json.dumps({"dead-letter-probe": dlq_url}))
    dead = DeadLetters.for_settings(runtime.sqs, runtime.db, settings)
    assert not dead.use_move_task
    assert [len(listing.letters) for listing in dead.listings()] == [1, 1]
    assert [result.messages for result in dead.redrive()] == [1, 1]
    for _queue_url, dlq_url in lanes.values():
        assert dlq_url is not None
        send_admin_message(aws, dlq_url, json.dumps({"dead-letter-probe": "discard"}))
    ids = [letter.id for listing in dead.listings() for letter in listing.letters]
    assert len(dead.discard(ids).discarded) == 2
    for _queue_url, dlq_url in lanes.values():
        arn = runtime.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for action in ("sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks"):
            aws.authorize(role_user_name(role), action, arn)


def reindex_watches_lanes(settings: Settings) -> None:
    """The re-index waits for both lanes to be idle before it switches."""
    runtime = Runtime(settings)
    lanes_idle([runtime.queue, runtime.bulk_queue])


Mark = tuple[int, int]


def mark(aws: IamEnforcedAws) -> Mark:
    """(calls checked, refusals recorded) so far."""
    return aws.counts()[0], len(aws.denials())


def new_denials(aws: IamEnforcedAws, since: Mark) -> list[Denial]:
    """Refusals recorded since the mark."""
    return aws.denials()[since[1] :]


def assert_all_allowed(aws: IamEnforcedAws, since: Mark, *, at_least: int) -> None:
    """At least `at_least` calls were checked since the mark, and none was refused."""
    assert new_denials(aws, since) == []
    assert aws.counts()[0] - since[0] >= at_least


# What each function does with AWS besides reading the secrets its environment names.
FUNCTION_CALLS: dict[tuple[str, str | None], str] = {
    (topology.EMU_HANDLER, "live"): "consume its queue",
    (topology.EMU_HANDLER, "bulk"): "consume its queue",
    (topology.BOOTSTRAP_PLAN_HANDLER, None): "secrets only",
    (topology.BOOTSTRAP_BATCH_HANDLER, None): "send to the bulk lane",
    (topology.BOOTSTRAP_FINALIZE_HANDLER, None): "secrets only",
    (topology.RECONCILE_PLAN_HANDLER, None): "secrets only",
    (topology.RECONCILE_SHARD_HANDLER, None): "send to the bulk lane",
    (topology.RECONCILE_FINALIZE_HANDLER, None): "secrets only",
    (topology.REINDEX_HANDLER, None): "watch both lanes",
    (topology.MIGRATE_HANDLER, None): "secrets only",
}


@pytest.mark.parametrize(("handler", "lane"), sorted(FUNCTION_CALLS, key=str))
def test_each_function_is_allowed_every_call_it_makes(
    aws: IamEnforcedAws,
    resolver: Resolver,
    assembly: Assembly,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    handler: str,
    lane: str | None,
) -> None:
    # Given the function, started from its template environment with its role's keys
    literal_env = {"REFARCH_EMU_LANE": lane} if lane else {}
    runtime = function_runtime(assembly, resolver, handler, **literal_env)
    settings = runtime.enter(aws, monkeypatch, tmp_path)
    since = mark(aws)
    # When it reads its secrets at cold start and makes its queue calls
    read_cold_start_secrets(settings)
    calls = FUNCTION_CALLS[(handler, lane)]
    if calls == "consume its queue":
        function = assembly.function(handler, **literal_env).key
        queue_url = event_source_queue_url(aws, assembly, resolver, function)
        emu_consumes_and_hands_back(aws, settings, monkeypatch, queue_url)
    elif calls == "send to the bulk lane":
        bulk_send(settings)
    elif calls == "watch both lanes":
        reindex_watches_lanes(settings)
    # Then IAM allowed every one of them
    assert_all_allowed(aws, since, at_least=1)


@pytest.mark.parametrize("container", ["web", "listener"])
def test_each_container_is_allowed_every_call_it_makes(
    aws: IamEnforcedAws,
    resolver: Resolver,
    assembly: Assembly,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    container: str,
) -> None:
    # Given the container, started from its task definition's environment with its task role's keys
    runtime = container_runtime(assembly, resolver, container)
    settings = runtime.enter(aws, monkeypatch, tmp_path)
    since = mark(aws)
    # When it reads its secrets and makes its queue and metric calls
    read_cold_start_secrets(settings)
    if container == "web":
        web_status(aws, settings)
        web_dead_letters(aws, settings, runtime.role)
    else:
        listener_sends_to_both_lanes(settings)
    # Then IAM allowed every one of them
    assert_all_allowed(aws, since, at_least=1)


def test_the_pinecone_index_function_reads_its_key_by_the_arn_its_custom_resource_passes(
    aws: IamEnforcedAws, resolver: Resolver, assembly: Assembly, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given the custom resource's properties and the function's role
    ((key, index),) = assembly.resources("Custom::PineconeIndex")
    arn = resolver.resolve_text(key.stack, index["Properties"]["ApiKeySecretArn"])
    settings = function_runtime(assembly, resolver, topology.PINECONE_INDEX_HANDLER).enter(aws, monkeypatch, tmp_path)
    since = mark(aws)
    # When it reads the API key the way its handler does, then IAM allowed it
    assert secret_text(arn, settings.aws_region, fields=API_KEY_FIELDS) == "local-only-key"
    assert_all_allowed(aws, since, at_least=1)


# What each function answers a state machine in these tests: enough to take every task of the definitions.
STUB_RESULTS: dict[str, Any] = {
    topology.BOOTSTRAP_PLAN_HANDLER: {"run_id": 1, "ranges": [{"start": 1, "end": 2}]},
    topology.RECONCILE_PLAN_HANDLER: {"shards": [{"prefix": "1"}]},
}
REINDEX_STEPS = {"start": {"needed": True, "generation": 2}, "progress": {"complete": True, "lanes_idle": True}}


def stubbed_machines(aws: IamEnforcedAws, resolver: Resolver, assembly: Assembly) -> tuple[StateMachines, list[str]]:
    """The synthesized state machines, every task call authorized as the machine's role; their functions
    stubbed (the handlers' own calls are the function tests' concern). Also the invoked handlers, in order."""
    handlers = {function_name(f.key): f.handler for f in assembly.functions()}
    invoked: list[str] = []

    def call(name: str, event: Any) -> Invocation:
        handler = handlers[name]
        invoked.append(handler)
        if handler == topology.REINDEX_HANDLER:
            return Invocation(result=REINDEX_STEPS.get(event["action"], {}))
        return Invocation(result=STUB_RESULTS.get(handler, {}))

    return StateMachines(assembly, resolver, call, time_scale=0.001, authorize=aws.authorize), invoked


def test_each_state_machine_may_make_every_call_its_definition_makes(
    aws: IamEnforcedAws, resolver: Resolver, assembly: Assembly
) -> None:
    # Given the three synthesized definitions in moto's interpreter, each task authorized as its machine's role
    machines, invoked = stubbed_machines(aws, resolver, assembly)
    since = mark(aws)
    # When the re-index runs (Start, Fill: the bootstrap's Plan, Batch and Finalize, Progress, Switch) and a reconcile
    machines.run("Reindex", {}, timeout_seconds=60)
    machines.run("Reconcile", {}, timeout_seconds=60)
    # Then every invocation, StartExecution and DescribeExecution was checked and allowed
    assert set(invoked) >= {
        topology.REINDEX_HANDLER,
        topology.BOOTSTRAP_PLAN_HANDLER,
        topology.BOOTSTRAP_BATCH_HANDLER,
        topology.BOOTSTRAP_FINALIZE_HANDLER,
        topology.RECONCILE_PLAN_HANDLER,
        topology.RECONCILE_SHARD_HANDLER,
        topology.RECONCILE_FINALIZE_HANDLER,
    }
    assert_all_allowed(aws, since, at_least=len(invoked) + 2)


@pytest.mark.parametrize(
    ("construct", "role_of", "action", "resource_marker"),
    [
        ("Reindex", "Reindex", "states:StartExecution", ":stateMachine:Refarch-dev-Pelican-BootstrapStateMachine"),
        ("Bootstrap", "Bootstrap", "lambda:InvokeFunction", ":function:Refarch-dev-Pelican-BootstrapBatchFunction"),
        ("Reconcile", "Reconcile", "lambda:InvokeFunction", ":function:Refarch-dev-Pelican-ReconcileShardFunction"),
    ],
)
def test_a_state_machine_missing_a_grant_fails_naming_it(
    aws: IamEnforcedAws,
    resolver: Resolver,
    assembly: Assembly,
    construct: str,
    role_of: str,
    action: str,
    resource_marker: str,
) -> None:
    # Given a machine's role with one grant taken away on purpose
    role = assembly.state_machine(role_of).role
    assert role is not None
    full = policy_document(assembly, role, resolver)
    aws.grant(role, without_grant(full, action, resource_marker))
    machines, _ = stubbed_machines(aws, resolver, assembly)
    since = mark(aws)
    # When the execution reaches the call that grant allowed, it fails (after the definition's retries)
    try:
        with pytest.raises(ExecutionFailed):
            machines.run(construct, {}, timeout_seconds=60)
    finally:
        aws.grant(role, full)
    # Then each refusal names the machine's role, the action and the resource
    denials = new_denials(aws, since)
    assert denials and {(d.role, d.action) for d in denials} == {(role.logical_id, action)}
    assert all(resource_marker in d.resource for d in denials)


def without_grant(document: dict[str, Any], action: str, resource_marker: str) -> dict[str, Any]:
    """The document with the statement granting `action` on the resource whose ARN mentions the marker removed."""
    reduced = copy.deepcopy(document)
    kept = []
    for statement in reduced["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action in actions and any(resource_marker in r for r in resources):
            continue
        kept.append(statement)
    assert len(kept) == len(reduced["Statement"]) - 1, f"no single statement grants {action} on *{resource_marker}*"
    reduced["Statement"] = kept
    return reduced


@pytest.mark.parametrize(
    ("container", "action", "resource_marker"),
    [
        ("listener", "sqs:SendMessage", ":dev-refarch-bulk"),
        ("web", "secretsmanager:GetSecretValue", ":secret:SessionSecret"),
    ],
)
def test_a_missing_grant_fails_naming_the_role_action_and_resource(
    aws: IamEnforcedAws,
    resolver: Resolver,
    assembly: Assembly,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    container: str,
    action: str,
    resource_marker: str,
) -> None:
    # Given the container's role with one of its grants taken away on purpose
    runtime = container_runtime(assembly, resolver, container)
    full = policy_document(assembly, runtime.role, resolver)
    aws.grant(runtime.role, without_grant(full, action, resource_marker))
    settings = runtime.enter(aws, monkeypatch, tmp_path)
    since = mark(aws)
    try:
        # When the container makes its calls, the one that grant allowed is refused
        with pytest.raises(ClientError, match=f"not authorized to perform: {action} on resource: .*{resource_marker}"):
            read_cold_start_secrets(settings)
            listener_sends_to_both_lanes(settings)
    finally:
        aws.grant(runtime.role, full)
    # Then the refusal names the role, the action and the resource, and the check fails saying so
    (denial,) = new_denials(aws, since)
    assert (denial.role, denial.action) == (runtime.role.logical_id, action) and resource_marker in denial.resource
    with pytest.raises(
        PermissionsMissing, match=f"{runtime.role.logical_id} is not allowed {action} on .*{resource_marker}"
    ):
        aws.assert_no_denials()


def test_every_runtime_role_has_a_user_and_its_statements(
    aws: IamEnforcedAws, resolver: Resolver, assembly: Assembly
) -> None:
    # Given the runtime roles of the dev assembly: 11 functions, 2 containers, 3 state machines
    roles = runtime_roles(assembly)
    assert len(roles) == 16
    # Then each has keys, and each policy resolved to local ARNs (no intrinsic left)
    for role in roles:
        assert aws.keys_for(role)["aws_access_key_id"]
        assert "Fn::" not in json.dumps(policy_document(assembly, role, resolver))


def test_calls_are_counted_and_the_admin_is_not_a_runtime(aws: IamEnforcedAws, resolver: Resolver) -> None:
    # Given the counts so far
    checked, denied = aws.counts()
    # When the admin makes a call, and a runtime role one it is refused
    aws.admin_client("sqs").list_queues()
    role = ResourceKey("Probe", "NoGrants")
    aws.grant(
        role, {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}]}
    )
    probe = boto3.client("sqs", region_name=REGION, endpoint_url=aws.endpoint, **aws.keys_for(role))
    with pytest.raises(ClientError):
        probe.get_queue_attributes(QueueUrl=next(iter(probe.list_queues()["QueueUrls"])))
    # Then only the runtime's two calls count, one of them denied
    assert aws.counts() == (checked + 2, denied + 1)
    assert denied + 1 == len(aws.denials())
