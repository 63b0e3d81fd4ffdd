"""Sending sync messages to a lane's SQS queue (SendMessageBatch, partial failures resent), and
handing received ones back early."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from refarch.lanes.messages import AnyMessage, SyncMessage
from refarch.lanes.topology import LaneName, is_fifo
from refarch.settings import Settings

if TYPE_CHECKING:  # the stubs are a development dependency (boto3-stubs); nothing imports them at run time
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_sqs import SQSClient

SQS_BATCH = 10


class PartialSendError(RuntimeError):
    """Some entries of a SendMessageBatch were refused (retried by tenacity, then raised)."""


# Every client's limits unless told otherwise (Pelican, Emu, the dead-letter commands, the CLI: nobody
# waits on them, and a retry saves a re-delivery). Retries count after the first attempt.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0
RETRIES = 5


def make_sqs_client(settings: Settings, *, timeout_seconds: float | None = None, retries: int = RETRIES) -> SQSClient:
    """A boto3 SQS client (the local server's endpoint when one is configured).

    `timeout_seconds` bounds both connecting and each read (a status display someone waits on passes
    refarch.serving.STATUS_BUDGET's); `retries` is how often a failed call is tried again.
    """
    # The service name is a literal at each call: boto3's stubs type `boto3.client` per service.
    return boto3.client("sqs", **_client_options(settings, timeout_seconds, retries))


def make_cloudwatch_client(
    settings: Settings, *, timeout_seconds: float | None = None, retries: int = RETRIES
) -> CloudWatchClient:
    """A boto3 CloudWatch client, for the queues' age metric (the local SQS server serves it too)."""
    return boto3.client("cloudwatch", **_client_options(settings, timeout_seconds, retries))


def _client_options(settings: Settings, timeout_seconds: float | None, retries: int) -> dict[str, Any]:
    """Region, retries and timeouts for a client; the local server's endpoint when one is configured."""
    endpoint = settings.resolved_sqs_endpoint()
    connect = CONNECT_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
    read = READ_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
    kwargs: dict[str, Any] = {
        "region_name": settings.aws_region,
        # botocore's own "max_attempts" here counts retries (the first attempt not included).
        "config": Config(
            retries={"max_attempts": retries, "mode": "standard"}, connect_timeout=connect, read_timeout=read
        ),
    }
    if endpoint:
        # The local SQS server accepts any credentials; real ones are never needed or read.
        kwargs.update(endpoint_url=endpoint, aws_access_key_id="local", aws_secret_access_key="local")
    return kwargs


class SyncQueue:
    """A queue Emu consumes: the live lane's FIFO queue (group = product id, dedup id = product id +
    version) or the bulk lane's standard queue (many products per message, no group)."""

    def __init__(self, client: Any, queue_url: str, *, lane: LaneName) -> None:
        self.client = client
        self.url = queue_url
        self.lane = lane
        self.fifo = is_fifo(lane)

    @classmethod
    def for_lane(cls, client: Any, settings: Settings, lane: LaneName) -> SyncQueue:
        """The lane's queue as the settings configure it."""
        return cls(client, settings.queue_url(lane), lane=lane)

    def send(self, messages: Sequence[AnyMessage]) -> None:
        """Send all messages; returns only when SQS accepted every one of them (else raises)."""
        if self.fifo and not all(isinstance(m, SyncMessage) for m in messages):
            # Checked before anything is sent: a bulk message has no group, and names many products.
            raise TypeError("a bulk message cannot go to the live lane's FIFO queue")
        for start in range(0, len(messages), SQS_BATCH):
            self._send_batch([self._entry(str(i), m) for i, m in enumerate(messages[start : start + SQS_BATCH])])

    def send_bodies(self, bodies: Sequence[str]) -> None:
        """Send received bodies again as new messages (a standard queue only: FIFO entries need their
        group and deduplication ids, and a copy within the deduplication window would be dropped)."""
        if self.fifo:
            raise TypeError("bodies cannot be re-sent to a FIFO queue")
        for start in range(0, len(bodies), SQS_BATCH):
            self._send_batch(
                [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + SQS_BATCH])]
            )

    def _entry(self, key: str, message: AnyMessage) -> dict[str, str]:
        entry = {"Id": key, "MessageBody": message.model_dump_json()}
        if self.fifo and isinstance(message, SyncMessage):
            entry.update(MessageGroupId=message.group_id, MessageDeduplicationId=message.deduplication_id)
        return entry

    def _send_batch(self, batch: Sequence[dict[str, str]]) -> None:
        pending = {entry["Id"]: entry for entry in batch}

        @retry(
            retry=retry_if_exception_type(PartialSendError),
            stop=stop_after_attempt(6),
            wait=wait_exponential(multiplier=0.1, max=5),
            reraise=True,
        )
        def attempt() -> None:
            response = self.client.send_message_batch(
                QueueUrl=self.url,
                Entries=list(pending.values()),
            )
            for ok in response.get("Successful", []):
                pending.pop(ok["Id"], None)
            if pending:
                reasons = {f["Id"]: f.get("Message", f.get("Code")) for f in response.get("Failed", [])}
                raise PartialSendError(f"{len(pending)} of {len(batch)} entries refused: {reasons}")

        attempt()

    def depth(self) -> dict[str, int]:
        """Approximate visible and in-flight message counts."""
        attrs = self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return {
            "visible": int(attrs["ApproximateNumberOfMessages"]),
            "in_flight": int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        }


def queue_of(client: Any, queue_arn: str, *, lane: LaneName) -> SyncQueue:
    """The lane's queue an event source's records came from (by the ARN in each record)."""
    return SyncQueue(client, _url_of(client, queue_arn), lane=lane)


def _url_of(client: Any, queue_arn: str) -> str:
    return str(client.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"])


def release_now(client: Any, queue_arn: str, receipt_handles: Sequence[str]) -> None:
    """Make received messages visible again at once, so their retry need not wait for the visibility timeout."""
    url = _url_of(client, queue_arn)
    for start in range(0, len(receipt_handles), SQS_BATCH):
        handles = receipt_handles[start : start + SQS_BATCH]
        entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(handles)]
        refused = client.change_message_visibility_batch(QueueUrl=url, Entries=entries).get("Failed", [])
        if refused:
            raise PartialSendError(f"{len(refused)} of {len(entries)} messages not released: {refused}")
