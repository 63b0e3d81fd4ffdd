"""A local SQS event source mapping: polls one lane's queue and calls the Emu handler like Lambda does.

As in AWS, the lane's concurrency (the smaller of reserved and maximum concurrency) bounds the
invocations in flight; each slot gathers its own batch and invokes the handler with it. Per lane:

- live (FIFO): one receive of up to `batch_size` (10) records, invoked at once (FIFO event
  sources have no batching window); the queue keeps one product's messages in order.
- bulk (standard): records are gathered over several receives (10 per receive, the SQS
  maximum) until `batch_size` records or `batching_window_seconds` after the first one.

Events are real SQS-shaped Lambda events; `batchItemFailures` is honoured: only succeeded
messages are deleted, failed ones come back after the visibility timeout and reach the DLQ
after maxReceiveCount.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from refarch.lanes.topology import DEFAULT_TOPOLOGY, EMU_HANDLER, Lane
from refarch.observability import logger
from refarch_local.handlers import Handler, LocalLambdaContext, load_handler

RECEIVE_WAIT_SECONDS = 1
# Tests shorten a lane's batching window with this (seconds; a window is only ever shortened, and a
# receive still long-polls for at least a second): each bulk delivery of a small bootstrap otherwise
# waits out the full window for messages that never come. Unset: the lane's own window, as on AWS.
BATCHING_WINDOW_ENV = "REFARCH_LOCAL_BATCHING_WINDOW_SECONDS"
# ReceiveMessage returns at most 10 messages per call, on AWS as here.
RECEIVE_MAX = 10


def to_lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as it appears in a Lambda event record."""
    attributes = message.get("Attributes", {})
    record_attributes = {
        "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
        "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
        "SenderId": attributes.get("SenderId", "local"),
        "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
    }
    if queue_arn.endswith(".fifo"):
        # Only FIFO records carry these (Powertools' FIFO processor reads MessageGroupId).
        record_attributes.update(
            SequenceNumber=attributes.get("SequenceNumber", "0"),
            MessageGroupId=attributes.get("MessageGroupId", ""),
            MessageDeduplicationId=attributes.get("MessageDeduplicationId", ""),
        )
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": record_attributes,
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def batching_window(lane: Lane) -> float:
    """The lane's batching window in seconds, shortened by $REFARCH_LOCAL_BATCHING_WINDOW_SECONDS when set."""
    window = float(lane.batching_window_seconds)
    shorter = os.environ.get(BATCHING_WINDOW_ENV)
    return min(window, float(shorter)) if shorter else window


class EventSourcePoller:
    """Gathers batches for one lane and invokes the handler with at most `concurrency` batches in flight."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        handler: str = EMU_HANDLER,
        lane: Lane = DEFAULT_TOPOLOGY.live,
        concurrency: int | None = None,
        region: str = "us-east-1",
        handler_function: Handler | None = None,
    ) -> None:
        self.client = client
        # The function to call instead of loading `handler` in this process (the rehearsal's worker processes).
        self.handler_function = handler_function
        self.queue_url = queue_url
        self.handler_name = handler
        self.lane = lane
        self.batch_size = lane.batch_size
        self.window_seconds = 0.0 if lane.fifo else batching_window(lane)
        self.timeout_seconds = lane.timeout_seconds
        self.concurrency = concurrency or lane.concurrency
        self.region = region
        self.stop = threading.Event()
        self.invocations = 0
        self.failed_records = 0
        self._lock = threading.Lock()
        self.queue_arn = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def run(self) -> None:
        """Poll until `stop` is set, one gatherer per concurrency slot; in-flight invocations finish first."""
        handler = self.handler_function or load_handler(self.handler_name)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"emu-{self.lane.name}") as pool:
            for _ in range(self.concurrency):
                pool.submit(self._slot, handler)

    def _slot(self, handler: Any) -> None:
        """One concurrency slot: gather a batch, invoke, repeat."""
        while not self.stop.is_set():
            try:
                messages = self.gather()
            except Exception:  # the queue server is down or restarting: back off, keep polling
                logger.exception("event source receive failed")
                self.stop.wait(1)
                continue
            if not messages:
                continue
            try:
                self.invoke(handler, messages)
            except Exception:  # a crashed invocation: nothing is deleted, the batch comes back (as in Lambda)
                logger.exception("emu invocation failed")

    def gather(self) -> list[dict[str, Any]]:
        """One batch by the lane's rules: a single receive (FIFO), or receives until full or the window ends."""
        messages = self.receive(limit=min(self.batch_size, RECEIVE_MAX))
        if not messages or not self.window_seconds:
            return messages
        window_ends = time.monotonic() + self.window_seconds
        while len(messages) < self.batch_size and not self.stop.is_set():
            remaining = window_ends - time.monotonic()
            if remaining <= 0:
                break
            more = self.receive(
                wait_seconds=min(RECEIVE_WAIT_SECONDS, max(1, int(remaining))),
                limit=min(self.batch_size - len(messages), RECEIVE_MAX),
            )
            messages.extend(more)
        return messages

    def receive(self, wait_seconds: int = RECEIVE_WAIT_SECONDS, *, limit: int | None = None) -> list[dict[str, Any]]:
        """One (long) poll for up to `limit` messages (default: a batch, at most 10)."""
        messages: list[dict[str, Any]] = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=limit or min(self.batch_size, RECEIVE_MAX),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        return messages

    def poll_once(self, handler: Any) -> int:
        """Receive one batch without waiting and invoke the handler with it; return its record count (tests, tools)."""
        messages = self.receive(wait_seconds=0)
        if messages and self.window_seconds:
            # Gather what is already there, as the window would, without waiting for more.
            while len(messages) < self.batch_size:
                more = self.receive(wait_seconds=0, limit=min(self.batch_size - len(messages), RECEIVE_MAX))
                if not more:
                    break
                messages.extend(more)
        if messages:
            self.invoke(handler, messages)
        return len(messages)

    def invoke(self, handler: Any, messages: list[dict[str, Any]]) -> None:
        """Invoke the handler with one batch; delete what succeeded."""
        event = {"Records": [to_lambda_record(m, self.queue_arn, self.region) for m in messages]}
        context = LocalLambdaContext(function_name=f"emu-{self.lane.name}", timeout_seconds=self.timeout_seconds)
        response = handler(event, context) or {}
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        with self._lock:
            self.invocations += 1
            self.failed_records += len(failed)
