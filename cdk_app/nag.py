"""cdk-nag wiring: AwsSolutions checks on the whole app, and acknowledgements that always carry a reason."""

from __future__ import annotations

import json
from typing import Any, cast

from aws_cdk import Acknowledgment, App, CfnElement, Stack, Validations
from aws_cdk import aws_stepfunctions as sfn
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

PACK = "AwsSolutions"


def check_app(app: App) -> None:
    """Run AwsSolutions on every stack at synth; an unacknowledged finding fails the synth."""
    # A validation plugin, not an Aspect: cdk-nag 3 reads CDK's acknowledgements this way.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule: str, reason: str, *, findings: tuple[str, ...] = ()) -> None:
    """Accept a finding on `scope` (and its children) for a stated reason.

    `findings` narrows rules that report several findings per resource, for example
    `Resource::*` for AwsSolutions-IAM5: each one is acknowledged on its own, so a new wildcard
    still fails the synth.
    """
    if len(reason.strip()) < 20:
        raise ValueError(f"acknowledging {rule} needs a real reason, got {reason!r}")
    ids = [f"{rule}[{finding}]" for finding in findings] if findings else [rule]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=f"{PACK}::{rule_id}", reason=reason) for rule_id in ids))


# The id CDK gives the one Lambda per stack behind every AwsCustomResource.
AWS_CUSTOM_RESOURCE_PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"


def acknowledge_provider_framework(provider: IConstruct, function: IConstruct, what: str) -> None:
    """The findings every `custom_resources.Provider` raises, with the reasons they are acceptable."""
    acknowledge(
        provider,
        "AwsSolutions-IAM4",
        "The CDK custom resource framework's function uses the AWS-maintained logging policy.",
        findings=("Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",),
    )
    acknowledge(
        provider,
        "AwsSolutions-IAM5",
        f"The framework may invoke any version of the {what} function (CDK's own policy).",
        findings=(f"Resource::<{logical_id(function)}.Arn>:*",),
    )


def acknowledge_aws_custom_resource(stack: Stack) -> None:
    """Accept the findings on CDK's AwsCustomResource provider function (CDK-owned code and policy)."""
    provider = stack.node.try_find_child(AWS_CUSTOM_RESOURCE_PROVIDER_ID)
    if provider is None:
        raise ValueError(f"{stack.node.path} has no AwsCustomResource provider to acknowledge")
    acknowledge(
        provider,
        "AwsSolutions-IAM4",
        "CDK's AwsCustomResource function uses the AWS-maintained logging policy.",
        findings=("Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",),
    )


def acknowledge_task_execution_role(task: IConstruct) -> None:
    """Accept the ECS execution role's `Resource::*`: ecr:GetAuthorizationToken has no resource-level form."""
    execution_role = getattr(task, "execution_role", None)
    if execution_role is None:
        raise ValueError(f"{task.node.path} has no execution role")
    acknowledge(
        execution_role,
        "AwsSolutions-IAM5",
        "Pulling the image needs ecr:GetAuthorizationToken, which supports no resource-level permission.",
        findings=("Resource::*",),
    )


def acknowledge_invoker(state_machine: sfn.StateMachine, what: str, functions: tuple[IConstruct, ...]) -> None:
    """A state machine role's wildcards, which cdk-nag flags, with the reason they are needed."""
    acknowledge(
        state_machine.role,
        "AwsSolutions-IAM5",
        f"Step Functions invokes the {what} functions by qualified ARN (version wildcard), and "
        "log delivery and X-Ray support no resource-level permissions.",
        findings=("Resource::*", *(f"Resource::<{logical_id(fn)}.Arn>:*" for fn in functions)),
    )


def finding_text(scope: IConstruct, value: str) -> str:
    """A resource ARN as cdk-nag writes it in a finding (its flattenCfnReference): `Ref` as `<Name>`, an
    import as its export name, a join joined. Only for values that resolve the same in `scope`'s stack
    before and after the synth resolves cross-stack references (not for another stack's resources)."""

    def visit(node: Any) -> str:
        if isinstance(node, str):
            return node.replace("${", "<").replace("}", ">")
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return str(delimiter).join(visit(item) for item in items)
        if "Fn::ImportValue" in node:
            return visit(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{visit(node['Ref'])}>"
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{visit(resource)}.{visit(attribute)}>"
        return json.dumps(node, separators=(",", ":"))

    return visit(Stack.of(scope).resolve(value))


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of a construct's resource (for a finding that names it)."""
    return Stack.of(construct).get_logical_id(cast(CfnElement, construct.node.default_child))
