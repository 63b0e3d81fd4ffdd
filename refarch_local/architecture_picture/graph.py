"""The architecture as a graph, read from the synthesized CDK app (templates plus construct paths).

Nodes are the parts a reader looks for (web and listener services, queues, our Lambda functions,
state machines, schedules, the database, the CDN and load balancer, the vector index); edges say
who reaches whom, each derived from what CloudFormation will actually create:

- a queue invokes a function: an event source mapping;
- a queue dead-letters to a queue: its redrive policy;
- X sends to a queue: X's role is granted `sqs:SendMessage` on it;
- a state machine invokes a function / starts a state machine: its role's grants;
- a schedule triggers its rule's targets;
- X connects to the database: X's role may read one of the database's login secrets;
- X uses the vector index: X's environment refers to the index resource;
- the CDN forwards to the load balancer (its origin), which forwards to an ECS service (a
  listener's target group).

Parts created on deploy by a custom resource (the schema migration, the first bootstrap, the
Pinecone index) carry the note "runs on deploy". `describe()` is the graph as stable text: the
picture embeds it and a test compares it with a fresh synth.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aws_cdk import Stack

from refarch_local.architecture_picture.synthesized_app import SynthesizedApp, TemplateResource, humanize

# CloudFormation type -> the kind of node it becomes and its detail line from its properties (our
# Lambda functions are chosen by handler, queues told apart by the redrive policies pointing at them).
NODE_KINDS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "AWS::CloudFront::Distribution": ("cdn", lambda _: "CloudFront"),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": (
        "load balancer",
        lambda props: f"ALB, {props.get('Scheme', 'internet-facing')}",
    ),
    "AWS::ECS::Service": ("service", lambda _: "ECS Fargate"),
    "AWS::RDS::DBInstance": (
        "database",
        lambda props: f"RDS {props.get('Engine')} {props.get('EngineVersion')}, {props.get('DBInstanceClass')}",
    ),
    "AWS::SQS::Queue": ("queue", lambda props: "SQS FIFO" if props.get("FifoQueue") else "SQS standard"),
    "AWS::StepFunctions::StateMachine": ("state machine", lambda _: "Step Functions"),
    "AWS::Events::Rule": ("schedule", lambda props: props.get("ScheduleExpression", "")),
    "Custom::PineconeIndex": ("vector index", lambda _: "Pinecone, created by a custom resource"),
}
# What a stack without any of the nodes above holds, in words (the picture lists it in the stack's box).
HEADLINE_TYPES = {
    "AWS::EC2::VPC": "VPC",
    "AWS::EC2::Subnet": "subnet",
    "AWS::EC2::NatGateway": "NAT gateway",
    "AWS::EC2::VPCEndpoint": "VPC endpoint",
    "AWS::EC2::FlowLog": "flow log",
    "AWS::CloudWatch::Dashboard": "dashboard",
    "AWS::CloudWatch::Alarm": "alarm",
    "AWS::SNS::Topic": "SNS topic",
}
# Handlers of this repository's Lambda code; other functions are CDK's own custom-resource plumbing.
OUR_HANDLER_PREFIX = "lambdas."


@dataclass(frozen=True, order=True)
class Node:
    """One part of the system: `id` is "<stack role>/<construct path>" (e.g. "Data/Sync/BulkQueue"), stable
    across logical-id hashes; secrets the app only names by ARN have "secret:<name>" and no stack."""

    id: str
    kind: str
    stack: str
    label: str
    detail: str = ""
    parent: str | None = None  # the state machine whose box it is drawn in
    step: int = 0  # with a parent: its place in the machine's definition (the order it runs in)
    note: str = ""


@dataclass(frozen=True, order=True)
class Edge:
    """A directed relation between two nodes: kind is one of request, invokes, sends, dead-letters,
    starts, triggers, connects (label: the database login), uses (the vector index), reads (a secret)."""

    source: str
    target: str
    kind: str
    label: str = ""


@dataclass
class ArchitectureGraph:
    """Nodes, edges and the stacks in deployment order."""

    stacks: list[str]
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    summaries: dict[str, str] = field(default_factory=dict)  # stack -> what it holds, for stacks with no node

    def describe(self) -> str:
        """The graph as sorted text lines: what the picture embeds and the staleness test compares."""
        lines = [f"stack {name} {self.summaries.get(name, '')!r}" for name in self.stacks]
        for node in sorted(self.nodes.values()):
            extras = "".join(
                f" {key}={value!r}"
                for key, value in (("parent", node.parent), ("step", node.step), ("note", node.note))
                if value
            )
            lines.append(f"node {node.id} [{node.kind}] {node.label!r} {node.detail!r}{extras}")
        lines += [f"edge {e.source} -> {e.target} [{e.kind}] {e.label!r}" for e in sorted(set(self.edges))]
        return "\n".join(lines) + "\n"


def architecture_graph(stacks: list[Stack], outdir: Path, *, prefix: str) -> ArchitectureGraph:
    """Build the graph of a synthesized app: `stacks` in deployment order, their templates in `outdir`."""
    app = SynthesizedApp(stacks, outdir, prefix)
    graph = ArchitectureGraph(stacks=[app.role_of(stack.stack_name) for stack in stacks])
    node_of: dict[tuple[str, str], str] = {}  # resource -> node id (roles and task definitions map to their user)

    def add(resource: TemplateResource, kind: str, detail: str) -> None:
        node_id = "/".join([resource.stack, *resource.name_path])
        label = humanize("".join(resource.name_path))
        graph.nodes[node_id] = Node(node_id, kind, resource.stack, label, detail)
        node_of[resource.key] = node_id

    _add_nodes(app, add)
    _map_principals(app, node_of)
    secret_nodes: dict[str, Node] = {}
    graph.edges += _edges(app, node_of, secret_nodes)
    graph.nodes.update(secret_nodes)
    _summarize_other_stacks(app, graph)
    _name_lanes(graph)
    _nest_state_machine_functions(app, graph, node_of)
    _note_deploy_hooks(app, graph, node_of)
    return graph


def _add_nodes(app: SynthesizedApp, add: Callable[[TemplateResource, str, str], None]) -> None:
    """One node per part a reader looks for (NODE_KINDS, and functions running this repository's handlers)."""
    dead_letter_targets = {
        target
        for queue in app.of_type("AWS::SQS::Queue")
        for target in app.refs(queue.stack, queue.properties.get("RedrivePolicy", {}))
    }
    for resource in sorted(app.resources.values(), key=lambda r: r.key):
        props = resource.properties
        if resource.type == "AWS::Lambda::Function":
            handler = props.get("Handler", "")
            if handler.startswith(OUR_HANDLER_PREFIX):
                lane = props.get("Environment", {}).get("Variables", {}).get("REFARCH_EMU_LANE")
                detail = handler + (f" ({lane} lane)" if lane else "")
                add(resource, "function", detail)
            continue
        if resource.type in NODE_KINDS:
            kind, detail_of = NODE_KINDS[resource.type]
            if kind == "queue" and resource.key in dead_letter_targets:
                kind = "dead-letter queue"
            add(resource, kind, detail_of(props))


def _map_principals(app: SynthesizedApp, node_of: dict[tuple[str, str], str]) -> None:
    """Point execution and task roles (and task definitions) at the node that runs with them."""
    for resource in list(app.resources.values()):
        node_id = node_of.get(resource.key)
        if node_id is None:
            continue
        props = resource.properties
        if resource.type == "AWS::Lambda::Function":
            for role in app.refs(resource.stack, props.get("Role")):
                node_of[role] = node_id
        elif resource.type == "AWS::StepFunctions::StateMachine":
            for role in app.refs(resource.stack, props.get("RoleArn")):
                node_of[role] = node_id
        elif resource.type == "AWS::ECS::Service":
            for task in app.refs(resource.stack, props.get("TaskDefinition")):
                node_of[task] = node_id
                task_props = app.resources[task].properties
                for role in app.refs(task[0], task_props.get("TaskRoleArn")):
                    node_of[role] = node_id


def _database_logins(app: SynthesizedApp) -> dict[tuple[str, str], tuple[tuple[str, str], str]]:
    """Secret (or its attachment) -> (the database it logs in to, the login's name)."""
    logins = {}
    for attachment in app.of_type("AWS::SecretsManager::SecretTargetAttachment"):
        databases = app.refs(attachment.stack, attachment.properties["TargetId"])
        secrets = app.refs(attachment.stack, attachment.properties["SecretId"])
        for database in databases:
            for secret in secrets:
                # The user name the generated secret is made with: the login that connects.
                generated = app.resources[secret].properties.get("GenerateSecretString", {})
                template = json.loads(generated.get("SecretStringTemplate", "{}"))
                login = template.get("username", humanize(app.resources[secret].construct_id))
                logins[secret] = logins[attachment.key] = (database, login)
    return logins


def _edges(app: SynthesizedApp, node_of: dict[tuple[str, str], str], secret_nodes: dict[str, Node]) -> Iterator[Edge]:
    """Every edge the templates declare between nodes (see the module docstring for the rules); the secrets
    read (other than database logins) are added to `secret_nodes`."""
    for mapping in app.of_type("AWS::Lambda::EventSourceMapping"):
        batch = mapping.properties.get("BatchSize")
        window = mapping.properties.get("MaximumBatchingWindowInSeconds")
        label = f"batch ≤ {batch}" + (f", {window} s window" if window else "") if batch else ""
        for queue in app.refs(mapping.stack, mapping.properties["EventSourceArn"]):
            for function in app.refs(mapping.stack, mapping.properties["FunctionName"]):
                yield Edge(node_of[queue], node_of[function], "invokes", label)
    for source_queue in app.of_type("AWS::SQS::Queue"):
        redrive = source_queue.properties.get("RedrivePolicy")
        if redrive:
            for dead_letters in app.refs(source_queue.stack, redrive):
                after = f"after {redrive['maxReceiveCount']}"
                yield Edge(node_of[source_queue.key], node_of[dead_letters], "dead-letters", after)
    logins = _database_logins(app)
    db_logins: dict[tuple[str, str], set[str]] = {}
    roles = [role.key for role in app.of_type("AWS::IAM::Role") if role.key in node_of]
    for role in roles:
        principal = node_of[role]
        for action, targets, written in app.grants(role):
            if action == "secretsmanager:GetSecretValue":
                for secret_node in _secret_nodes(app, targets, written, logins):
                    secret_nodes[secret_node.id] = secret_node
                    yield Edge(principal, secret_node.id, "reads")
            for target in targets:
                target_node = node_of.get(target)
                if action == "sqs:SendMessage" and target_node:
                    yield Edge(principal, target_node, "sends")
                elif action == "lambda:InvokeFunction" and target_node and target_node != principal:
                    yield Edge(principal, target_node, "invokes")
                elif action == "states:StartExecution" and target_node and target_node != principal:
                    yield Edge(principal, target_node, "starts")
                elif action == "secretsmanager:GetSecretValue" and target in logins:
                    database, login = logins[target]
                    db_logins.setdefault((principal, node_of[database]), set()).add(login)
    for (connecting, database_node), names in sorted(db_logins.items()):
        yield Edge(connecting, database_node, "connects", ", ".join(sorted(names)))
    for rule in app.of_type("AWS::Events::Rule"):
        for target in app.refs(rule.stack, [t["Arn"] for t in rule.properties.get("Targets", [])]):
            if target in node_of:
                yield Edge(node_of[rule.key], node_of[target], "triggers")
    yield from _index_users(app, node_of)
    yield from _request_path(app, node_of)


def _secret_nodes(
    app: SynthesizedApp, targets: set[tuple[str, str]], written: Any, logins: dict[tuple[str, str], Any]
) -> Iterator[Node]:
    """The secrets a statement grants, database logins left out (they are "connects" edges).

    A secret of the app is a node of its stack; one the app only names by ARN (an API key you
    create, e.g. `refarch/openai-api-key`) is a node of no stack.
    """
    for target in sorted(targets):
        resource = app.resources[target]
        if resource.type == "AWS::SecretsManager::Secret" and target not in logins:
            node_id = "/".join([resource.stack, *resource.name_path])
            yield Node(node_id, "secret", resource.stack, humanize("".join(resource.name_path)), "Secrets Manager")
    for match in re.finditer(r":secret:([\w/+=.@-]+?)-\?{6}", json.dumps(written)):
        name = match.group(1)
        yield Node(f"secret:{name}", "secret", "", name, "Secrets Manager, created by you")


def _index_users(app: SynthesizedApp, node_of: dict[tuple[str, str], str]) -> Iterator[Edge]:
    """Functions and containers whose environment refers to the vector index resource."""
    indexes = {
        r.key
        for r in app.resources.values()
        if node_of.get(r.key) and r.type in NODE_KINDS and NODE_KINDS[r.type][0] == "vector index"
    }
    for function in app.of_type("AWS::Lambda::Function"):
        if function.key in node_of:
            for index in app.refs(function.stack, function.properties.get("Environment")) & indexes:
                yield Edge(node_of[function.key], node_of[index], "uses")
    for task in app.of_type("AWS::ECS::TaskDefinition"):
        if task.key in node_of:
            environments = [c.get("Environment") for c in task.properties["ContainerDefinitions"]]
            for index in app.refs(task.stack, environments) & indexes:
                yield Edge(node_of[task.key], node_of[index], "uses")


def _request_path(app: SynthesizedApp, node_of: dict[tuple[str, str], str]) -> Iterator[Edge]:
    """CDN -> load balancer (its origins, directly or through a VPC origin) -> ECS service (listener target groups)."""
    for cdn in app.of_type("AWS::CloudFront::Distribution"):
        for origin in cdn.properties["DistributionConfig"].get("Origins", []):
            reached = app.refs(cdn.stack, origin)
            vpc_origins = {key for key in reached if app.resources[key].type == "AWS::CloudFront::VpcOrigin"}
            for vpc_origin in vpc_origins:
                reached |= app.refs(vpc_origin[0], app.resources[vpc_origin].properties)
            label = "HTTP (VPC origin)" if vpc_origins else "HTTP"
            for target in sorted(reached):
                if app.resources[target].type == "AWS::ElasticLoadBalancingV2::LoadBalancer":
                    yield Edge(node_of[cdn.key], node_of[target], "request", label)
    for listener in app.of_type("AWS::ElasticLoadBalancingV2::Listener"):
        balancers = app.refs(listener.stack, listener.properties["LoadBalancerArn"])
        groups = app.refs(listener.stack, listener.properties.get("DefaultActions", []))
        for service in app.of_type("AWS::ECS::Service"):
            if groups & app.refs(service.stack, service.properties.get("LoadBalancers", [])):
                for balancer in balancers:
                    yield Edge(
                        node_of[balancer], node_of[service.key], "request", f"port {listener.properties.get('Port')}"
                    )


def _summarize_other_stacks(app: SynthesizedApp, graph: ArchitectureGraph) -> None:
    """For a stack none of whose resources is a node, count what it holds (HEADLINE_TYPES)."""
    with_nodes = {node.stack for node in graph.nodes.values()}
    for stack in graph.stacks:
        if stack in with_nodes:
            continue
        counts = Counter(r.type for r in app.resources.values() if r.stack == stack and r.type in HEADLINE_TYPES)
        graph.summaries[stack] = ", ".join(
            f"{count} {HEADLINE_TYPES[kind]}{'s' if count > 1 else ''}" for kind, count in counts.items()
        )


def _name_lanes(graph: ArchitectureGraph) -> None:
    """Say which lane a queue (and its dead-letter queue) feeds: the lane of the Emu function it invokes."""
    lane_of: dict[str, str] = {}
    for edge in sorted(set(graph.edges)):
        found = re.search(r"\((\w+) lane\)", graph.nodes[edge.target].detail) if edge.kind == "invokes" else None
        if found and graph.nodes[edge.source].kind == "queue":
            lane_of[edge.source] = found.group(1)
    for edge in graph.edges:
        if edge.kind == "dead-letters" and edge.source in lane_of:
            lane_of[edge.target] = lane_of[edge.source]
    for node_id, lane in lane_of.items():
        node = graph.nodes[node_id]
        graph.nodes[node_id] = replace(node, detail=f"{node.detail}, {lane} lane")


def _nest_state_machine_functions(
    app: SynthesizedApp, graph: ArchitectureGraph, node_of: dict[tuple[str, str], str]
) -> None:
    """A function invoked by exactly one state machine of its own stack is drawn inside that machine's box,
    numbered in the order its definition names them."""
    definition_order: dict[str, list[str]] = {}
    for machine in app.of_type("AWS::StepFunctions::StateMachine"):
        named = [node_of.get((machine.stack, lid)) for lid in app.local_refs(machine.properties["DefinitionString"])]
        definition_order[node_of[machine.key]] = [n for n in named if n]
    invokers: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.kind == "invokes" and graph.nodes[edge.source].kind == "state machine":
            invokers.setdefault(edge.target, []).append(edge.source)
    for function, machines in invokers.items():
        node = graph.nodes[function]
        if len(machines) == 1 and graph.nodes[machines[0]].stack == node.stack:
            order = definition_order.get(machines[0], [])
            step = order.index(function) + 1 if function in order else 0
            graph.nodes[function] = replace(node, parent=machines[0], step=step)


def _note_deploy_hooks(app: SynthesizedApp, graph: ArchitectureGraph, node_of: dict[tuple[str, str], str]) -> None:
    """Mark what a custom resource runs on deploy: the function behind its provider, or what its own policy starts."""
    for resource in app.resources.values():
        if not resource.type.startswith("Custom::"):
            continue
        reached: set[tuple[str, str]] = set()
        for handler in app.refs(resource.stack, resource.properties.get("ServiceToken")):
            # A provider framework's function invokes ours (its role is granted lambda:InvokeFunction).
            handler_roles = app.refs(handler[0], app.resources[handler].properties.get("Role"))
            for role in handler_roles:
                reached |= {
                    t for action, targets, _ in app.grants(role) if action == "lambda:InvokeFunction" for t in targets
                }
            reached.add(handler)
        # An AwsCustomResource's own policy lives under its construct: what it may start is what it runs.
        for policy in app.of_type("AWS::IAM::Policy"):
            if policy.stack == resource.stack and policy.construct_id == resource.construct_id:
                for statement in policy.properties["PolicyDocument"]["Statement"]:
                    reached |= app.refs(policy.stack, statement.get("Resource", []))
        for key in reached:
            node_id = node_of.get(key)
            if node_id and node_id in graph.nodes and graph.nodes[node_id].kind in ("function", "state machine"):
                node = graph.nodes[node_id]
                graph.nodes[node_id] = replace(node, note="runs on deploy")
