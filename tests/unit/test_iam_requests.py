"""What IAM checks of a request: the IAM action of an operation, the resource it names, wildcard matching."""

from __future__ import annotations

import pytest

from refarch_local.rehearsal.iam_requests import element_matches, iam_action, request_resource


@pytest.mark.parametrize(
    ("signing_name", "operation", "action"),
    [
        ("sqs", "SendMessageBatch", "sqs:SendMessage"),
        ("sqs", "DeleteMessageBatch", "sqs:DeleteMessage"),
        ("sqs", "ChangeMessageVisibilityBatch", "sqs:ChangeMessageVisibility"),
        ("sqs", "GetQueueAttributes", "sqs:GetQueueAttributes"),
        ("monitoring", "GetMetricStatistics", "cloudwatch:GetMetricStatistics"),
        ("lambda", "Invoke", "lambda:InvokeFunction"),
        ("secretsmanager", "GetSecretValue", "secretsmanager:GetSecretValue"),
        ("states", "StartExecution", "states:StartExecution"),
    ],
)
def test_an_operation_is_authorized_as_its_iam_action(signing_name: str, operation: str, action: str) -> None:
    assert iam_action(signing_name, operation) == action


@pytest.mark.parametrize(
    ("action", "parameters", "resource"),
    [
        # A secret named by name is checked as its full ARN (looked up), a queue by name as its ARN
        ("secretsmanager:GetSecretValue", {"SecretId": "refarch/openai-api-key"}, "arn-of:refarch/openai-api-key"),
        ("sqs:GetQueueUrl", {"QueueName": "dev-refarch-bulk"}, "arn-of:dev-refarch-bulk"),
        (
            "states:DescribeExecution",
            {"executionArn": "arn:aws:states:r:1:execution:m:e"},
            "arn-of:arn:aws:states:r:1:execution:m:e",
        ),
        # What moto determined itself stands where the table names no parameter (SQS queue URLs, CloudWatch "*")
        ("sqs:SendMessage", {"QueueUrl": "http://q"}, "moto"),
        ("cloudwatch:GetMetricStatistics", {}, "moto"),
        # A parameter the request left out: moto's value
        ("states:StartExecution", {}, "moto"),
    ],
)
def test_the_resource_is_what_the_request_names(action: str, parameters: dict[str, str], resource: str) -> None:
    assert request_resource(action, parameters.get, lambda _action, value: f"arn-of:{value}", "moto") == resource


@pytest.mark.parametrize(
    ("element", "pattern", "value", "matches"),
    [
        # `?` is exactly one character: CDK's pattern for a secret referenced by name (moto's matcher raised here)
        (
            "Resource",
            "arn:aws:secretsmanager:r:1:secret:refarch/openai-api-key-??????",
            "arn:aws:secretsmanager:r:1:secret:refarch/openai-api-key-AbC123",
            True,
        ),
        (
            "Resource",
            "arn:aws:secretsmanager:r:1:secret:refarch/openai-api-key-??????",
            "arn:aws:secretsmanager:r:1:secret:refarch/openai-api-key-AbC12",
            False,
        ),
        ("Resource", "arn:aws:states:r:1:execution:Boot*", "arn:aws:states:r:1:execution:Boot:run-1", True),
        # A dot is a dot, and resources are case-sensitive
        ("Resource", "arn:aws:sqs:r:1:dev.fifo", "arn:aws:sqs:r:1:devXfifo", False),
        ("Resource", "arn:aws:sqs:r:1:Queue", "arn:aws:sqs:r:1:queue", False),
        # Actions are case-insensitive
        ("Action", "sqs:SendMessage", "SQS:sendmessage", True),
        ("Action", "sqs:Get*", "sqs:GetQueueUrl", True),
        ("Action", "sqs:Get*", "sqs:SendMessage", False),
    ],
)
def test_iam_wildcards(element: str, pattern: str, value: str, matches: bool) -> None:
    assert element_matches({element: [pattern]}, element, value) is matches
