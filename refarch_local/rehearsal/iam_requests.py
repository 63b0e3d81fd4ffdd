"""What IAM sees of an API request: the action it authorizes and the resource it names.

moto 5.2 enforces identity policies, but it authorizes the operation name under the signing
name (`monitoring:GetMetricStatistics`, `sqs:SendMessageBatch`, `lambda:Invoke`) where AWS
authorizes the IAM action (`cloudwatch:GetMetricStatistics`, `sqs:SendMessage`,
`lambda:InvokeFunction`); it names a resource only for SQS (and not for GetQueueUrl, which
carries a queue name instead of a URL), checking every other service against "*"; and its
pattern matcher fails on the `?` wildcard CDK writes for secrets referenced by name. These
pure functions give the action and resource AWS would check; `iam_server` applies them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

# Signing names that differ from the IAM service prefix.
IAM_SERVICE_OF_SIGNING_NAME = {"monitoring": "cloudwatch"}

# Operations authorized as another action (AWS: "SendMessageBatch requires sqs:SendMessage").
IAM_ACTION_OF_OPERATION = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "lambda:Invoke": "lambda:InvokeFunction",
}


def iam_action(signing_name: str, operation: str) -> str:
    """The IAM action AWS checks for an operation sent under a signing name."""
    service = IAM_SERVICE_OF_SIGNING_NAME.get(signing_name, signing_name)
    action = f"{service}:{operation}"
    return IAM_ACTION_OF_OPERATION.get(action, action)


# Which request parameter names the resource, per IAM action (the others are checked against "*",
# as AWS does for actions without resource-level permissions, e.g. cloudwatch:GetMetricStatistics).
RESOURCE_PARAMETER = {
    "secretsmanager:GetSecretValue": "SecretId",
    "secretsmanager:DescribeSecret": "SecretId",
    "states:StartExecution": "stateMachineArn",
    "states:DescribeStateMachine": "stateMachineArn",
    "states:ListExecutions": "stateMachineArn",
    "states:DescribeExecution": "executionArn",
    "states:StopExecution": "executionArn",
    "states:GetExecutionHistory": "executionArn",
    "lambda:InvokeFunction": "FunctionName",
    "sqs:GetQueueUrl": "QueueName",
}


def request_resource(
    action: str, parameter: Callable[[str], Any], arn_of: Callable[[str, str], str], moto_resource: str
) -> str:
    """The resource ARN IAM checks for this request.

    `parameter(name)` reads a request parameter; `arn_of(action, value)` turns what the request
    names (a secret's name or ARN, a queue's name, a function's name) into the resource's ARN;
    `moto_resource` is what moto determined itself (kept when the action is not in the table).
    """
    name = RESOURCE_PARAMETER.get(action)
    value = parameter(name) if name else None
    if not value:
        return moto_resource
    return arn_of(action, str(value))


@lru_cache(maxsize=1024)  # every request is checked against the same few patterns
def _pattern(iam_pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """An IAM wildcard pattern (`*` any run of characters, `?` exactly one) as a regular expression."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in iam_pattern)
    return re.compile("".join(parts), re.IGNORECASE if ignore_case else 0)


def element_matches(statement: Mapping[str, Any], element: str, value: str) -> bool:
    """Whether a statement's Action/NotAction (case-insensitive) or Resource (case-sensitive) matches."""
    patterns = statement[element] if isinstance(statement[element], list) else [statement[element]]
    ignore_case = element in ("Action", "NotAction")
    return any(_pattern(p, ignore_case=ignore_case).fullmatch(value) for p in patterns)
