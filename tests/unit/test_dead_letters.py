"""The dead-letter decisions (reason, what a discard marks failed, the FIFO redrive id), table-driven, and the
AWS redrive's requests checked against the SQS API model (botocore's Stubber: no AWS is reachable here, and
moto's server does not implement message-move tasks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from refarch.lanes.dead_letter_decisions import (
    LedgerView,
    ReceivedLetter,
    describe,
    reason_for,
    redrive_deduplication_id,
    to_mark_failed,
)
from refarch.lanes.dead_letters import DeadLetters, has_move_task
from refarch.lanes.messages import WorkItem, bulk_messages

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def item(pid: int, version: int = 2) -> WorkItem:
    return WorkItem(pid, version, "update", False, NOW)


FAILED = LedgerView("failed", 1, "embed/upsert failed: refused")
CAUGHT_UP = LedgerView("indexed", 2, None)
BEHIND = LedgerView("indexed", 1, None)


@pytest.mark.parametrize(
    ("views", "reason"),
    [
        ({1: FAILED}, "product 1: embed/upsert failed: refused"),
        ({1: CAUGHT_UP}, "no failure recorded: the index has caught up with it since"),
        ({1: LedgerView("deleted", 3, None)}, "no failure recorded: the index has caught up with it since"),
        ({1: BEHIND}, "no failure recorded for its products"),
        ({}, "no failure recorded for its products"),
    ],
)
def test_the_reason_is_the_ledgers_or_says_what_the_ledger_shows(views: dict[int, LedgerView], reason: str) -> None:
    assert reason_for([item(1)], views).startswith(reason)


def test_a_bulk_messages_reason_names_only_its_failed_products() -> None:
    views = {1: CAUGHT_UP, 2: FAILED, 3: CAUGHT_UP, 4: FAILED}
    assert reason_for([item(p) for p in (1, 2, 3, 4)], views) == (
        "product 2: embed/upsert failed: refused; product 4: embed/upsert failed: refused"
    )
    # And a discard marks failed only those the index has not caught up with (a missing entry included)
    assert to_mark_failed([item(p) for p in (1, 2, 3, 4, 5)], views) == [2, 4, 5]


def letter(body: str, **extra: Any) -> ReceivedLetter:
    fields: dict[str, Any] = {"receive_count": 6, "sent_at": NOW - timedelta(seconds=90), **extra}
    return ReceivedLetter(id="m-1", body=body, receipt_handle="h", **fields)


def test_a_malformed_message_is_described_with_the_parsers_reason() -> None:
    described = describe(letter('{"items": "nope", "schema_version": 2}'), "bulk", {}, now=NOW)
    assert described.malformed and described.products == [] and described.age_seconds == 90
    assert described.reason.startswith("Emu could not read this message (malformed message:")


def test_a_redriven_fifo_copy_gets_a_new_but_stable_deduplication_id_within_the_limit() -> None:
    short = letter("{}", deduplication_id="7-3")
    assert redrive_deduplication_id(short) == "7-3-redrive-m-1" == redrive_deduplication_id(short)
    long = letter("{}", deduplication_id="x" * 128)
    assert len(redrive_deduplication_id(long)) <= 128 and redrive_deduplication_id(long) != "x" * 128


def test_only_awss_own_endpoint_has_move_tasks() -> None:
    keys = {"region_name": "eu-west-1", "aws_access_key_id": "k", "aws_secret_access_key": "s"}
    assert has_move_task(boto3.client("sqs", **keys))
    assert not has_move_task(boto3.client("sqs", endpoint_url="http://127.0.0.1:9324", **keys))


DLQ_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/dev-refarch-bulk-dlq"
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/dev-refarch-bulk"
DLQ_ARN = "arn:aws:sqs:eu-west-1:123456789012:dev-refarch-bulk-dlq"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:dev-refarch-bulk"


def aws_redrive(running: list[dict[str, Any]]) -> tuple[DeadLetters, Stubber]:
    """A redrive of the bulk lane against AWS's SQS API, its requests checked against the API model."""
    sqs = boto3.client("sqs", region_name="eu-west-1", aws_access_key_id="k", aws_secret_access_key="s")
    stub = Stubber(sqs)
    depth = {"ApproximateNumberOfMessages": "3", "ApproximateNumberOfMessagesNotVisible": "0"}
    stub.add_response(
        "get_queue_attributes", {"Attributes": depth}, {"QueueUrl": DLQ_URL, "AttributeNames": list(depth)}
    )
    arn = {"QueueUrl": DLQ_URL, "AttributeNames": ["QueueArn"]}
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": DLQ_ARN}}, arn)
    stub.add_response("list_message_move_tasks", {"Results": running}, {"SourceArn": DLQ_ARN, "MaxResults": 1})
    dead = DeadLetters(sqs, None, {"bulk": (QUEUE_URL, DLQ_URL)}, use_move_task=True)  # type: ignore[arg-type]
    return dead, stub


def test_on_aws_a_redrive_starts_sqss_move_task_from_the_dlq_to_the_lanes_queue() -> None:
    dead, stub = aws_redrive(running=[])
    queue_arn = {"QueueUrl": QUEUE_URL, "AttributeNames": ["QueueArn"]}
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": QUEUE_ARN}}, queue_arn)
    task = {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN}
    stub.add_response("start_message_move_task", {"TaskHandle": "task-1"}, task)
    with stub:
        [result] = dead.redrive("bulk")
    stub.assert_no_pending_responses()
    assert result.as_dict() == {"lane": "bulk", "method": "move-task", "messages": 3, "task_handle": "task-1"}


def test_on_aws_a_move_task_already_running_is_reported_not_started_again() -> None:
    running = [{"Status": "RUNNING", "TaskHandle": "task-0", "ApproximateNumberOfMessagesToMove": 2}]
    dead, stub = aws_redrive(running=running)
    with stub:
        [result] = dead.redrive("bulk")
    stub.assert_no_pending_responses()
    assert (result.method, result.task_handle, result.messages) == ("move-task", "task-0", 2)


def test_bulk_messages_name_their_products_in_the_description() -> None:
    [message] = bulk_messages([(1, 2, "sync"), (2, 2, "sync")], source="repair")
    described = describe(letter(message.model_dump_json()), "bulk", {2: FAILED}, now=NOW)
    assert described.products == [1, 2] and described.reason == "product 2: embed/upsert failed: refused"
