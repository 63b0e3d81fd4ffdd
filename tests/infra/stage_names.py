"""The data-holding names a stage's templates create or reference, and the ones two stages share.

A name counts when it is fixed in the template (a literal, or a join of literals and the account,
region and partition): such a name is the same in every stack that writes it, so two stages in one
account (or one Pinecone project) would meet there. Names CloudFormation generates carry the stack
name and never collide.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from refarch.observability import BASE_NAMESPACE, SERVICE
from refarch.settings import Settings
from tests.infra.templates import Template, environment, resources

# Resource type -> (the property holding its physical name, what the resource is called in a failure).
NAMED_RESOURCES = {
    "AWS::SQS::Queue": ("QueueName", "SQS queue"),
    "AWS::SecretsManager::Secret": ("Name", "secret"),
    "AWS::Logs::LogGroup": ("LogGroupName", "log group"),
    "AWS::Events::Rule": ("Name", "EventBridge rule"),
    "AWS::Scheduler::Schedule": ("Name", "EventBridge schedule"),
    "AWS::StepFunctions::StateMachine": ("StateMachineName", "state machine"),
    "AWS::RDS::DBInstance": ("DBInstanceIdentifier", "database instance"),
    "AWS::DynamoDB::Table": ("TableName", "DynamoDB table"),
    "AWS::S3::Bucket": ("BucketName", "S3 bucket"),
    "AWS::CloudWatch::Dashboard": ("DashboardName", "dashboard"),
    "AWS::Lambda::Function": ("FunctionName", "Lambda function"),
    "AWS::SNS::Topic": ("TopicName", "SNS topic"),
    "AWS::ECS::Cluster": ("ClusterName", "ECS cluster"),
    "Custom::PineconeIndex": ("IndexName", "Pinecone index"),
    "AWS::WAFv2::WebACL": ("Name", "WAF web ACL"),
}
PSEUDO_PARAMETERS = {"AWS::AccountId", "AWS::Region", "AWS::Partition", "AWS::URLSuffix"}
# A secret referenced by name (Secret.from_secret_name_v2) appears in ARNs, in IAM with a wildcard suffix.
SECRET_IN_ARN = re.compile(r":secret:([^:*?\"]+?)(?:-\?{6})?$")
# What a runtime without REFARCH_PINECONE_NAMESPACE writes: the same in every stage.
DEFAULT_NAMESPACE = Settings.model_fields["pinecone_namespace"].default


@dataclass(frozen=True, order=True)
class DataName:
    """One name that holds data: what kind of thing it names, and the name."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}"


def fixed_name(value: Any) -> str | None:
    """The name as every deploy of it resolves it, or None when CloudFormation makes it unique."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("Ref") in PSEUDO_PARAMETERS:
        return "${" + value["Ref"] + "}"
    if isinstance(value, dict) and "Fn::Join" in value:
        delimiter, parts = value["Fn::Join"]
        rendered = [fixed_name(part) for part in parts]
        return None if None in rendered else delimiter.join(str(part) for part in rendered)
    return None


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a template value (the literal parts of joins included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def runtime_environments(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, environment) of every Lambda function and container in the template."""
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        yield logical_id, environment(function["Properties"])
    for logical_id, task in resources(template, "AWS::ECS::TaskDefinition").items():
        for definition in task["Properties"]["ContainerDefinitions"]:
            yield f"{logical_id}/{definition['Name']}", environment(definition)


def is_refarch_runtime(logical_id: str, env: dict[str, Any]) -> bool:
    """Whether a function or container runs this project's code (CDK's own helper functions do not)."""
    return "/" in logical_id or env.get("POWERTOOLS_SERVICE_NAME") == SERVICE


def data_holding_names(templates: dict[str, Template]) -> dict[DataName, list[str]]:
    """Every data-holding name the stacks (stack name -> template) create or reference -> where
    (`stack/logical id`): named resources, secrets referenced by name, each runtime's Pinecone
    index and index + namespace (the one it writes, reads and repairs), and the CloudWatch namespace
    each runtime writes its metrics to and each alarm reads (CloudWatch's own `AWS/…` excepted)."""
    found: dict[DataName, list[str]] = {}

    def add(kind: str, name: str | None, where: str) -> None:
        if name is not None:
            found.setdefault(DataName(kind, name), []).append(where)

    for stack_name, template in templates.items():
        for logical_id, resource in template["Resources"].items():
            where = f"{stack_name}/{logical_id}"
            if resource["Type"] in NAMED_RESOURCES:
                prop, kind = NAMED_RESOURCES[resource["Type"]]
                add(kind, fixed_name(resource.get("Properties", {}).get(prop)), where)
            for text in _strings(resource.get("Properties", {})):
                match = SECRET_IN_ARN.search(text)
                if match:
                    add("secret", match.group(1), where)
        for logical_id, alarm in resources(template, "AWS::CloudWatch::Alarm").items():
            for namespace in _alarm_namespaces(alarm["Properties"]):
                if not namespace.startswith("AWS/"):
                    add("metrics namespace", namespace, f"{stack_name}/{logical_id}")
        for logical_id, env in runtime_environments(template):
            if is_refarch_runtime(logical_id, env):
                # Without the variable a runtime writes the code's default namespace, the same in every stage.
                metrics = fixed_name(env.get("POWERTOOLS_METRICS_NAMESPACE", BASE_NAMESPACE))
                add("metrics namespace", metrics, f"{stack_name}/{logical_id}")
            index = fixed_name(env.get("PINECONE_INDEX_NAME"))
            if index is None:
                continue
            where = f"{stack_name}/{logical_id}"
            namespace = fixed_name(env.get("REFARCH_PINECONE_NAMESPACE", DEFAULT_NAMESPACE))
            add("Pinecone index", index, where)
            add("Pinecone index + namespace", f"{index} / {namespace}", where)
    return {name: sorted(set(places)) for name, places in found.items()}


def _alarm_namespaces(properties: dict[str, Any]) -> Iterator[str]:
    """The namespaces an alarm reads: its metric's, or each metric's of its math expression."""
    if "Namespace" in properties:
        yield properties["Namespace"]
    for query in properties.get("Metrics", []):
        namespace = query.get("MetricStat", {}).get("Metric", {}).get("Namespace")
        if namespace:
            yield namespace


def shared_names(per_stage: dict[str, dict[DataName, list[str]]]) -> dict[DataName, dict[str, list[str]]]:
    """The names more than one stage uses -> stage -> where each uses it."""
    stages_of: dict[DataName, dict[str, list[str]]] = {}
    for stage, names in per_stage.items():
        for name, places in names.items():
            stages_of.setdefault(name, {})[stage] = places
    return {name: stages for name, stages in sorted(stages_of.items()) if len(stages) > 1}


def describe_shared(shared: dict[DataName, dict[str, list[str]]]) -> str:
    """A failure message naming each shared name and the resources of every stage that use it."""
    lines = ["stages share data-holding names (each stage's data must be its own: ARCHITECTURE.md decision 11):"]
    for name, stages in shared.items():
        used_by = "; ".join(f"{stage}: {', '.join(places)}" for stage, places in stages.items())
        lines.append(f"  {name} is used by {used_by}")
    return "\n".join(lines)
