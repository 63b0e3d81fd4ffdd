"""A local SQS event source mapping: polls the queue and calls the Emu handler like Lambda does.

As in AWS, a poller receives batches and invokes the function with up to N batches in flight,
N = Emu's reserved concurrency. Events are real SQS-shaped Lambda events; the batch size and
`batchItemFailures` are honoured: only succeeded messages are deleted, failed ones come back
after the visibility timeout and reach the DLQ after maxReceiveCount.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from refarch.observability import logger
from refarch.topology import DEFAULT_TOPOLOGY, EMU_HANDLER, Topology
from refarch_local.handlers import LocalLambdaContext, load_handler

RECEIVE_WAIT_SECONDS = 1


def to_lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as it appears in a Lambda event record."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
            "SenderId": attributes.get("SenderId", "local"),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
            "SequenceNumber": attributes.get("SequenceNumber", "0"),
            "MessageGroupId": attributes.get("MessageGroupId", ""),
            "MessageDeduplicationId": attributes.get("MessageDeduplicationId", ""),
        },
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class EventSourcePoller:
    """Receives batches and invokes the handler with at most `concurrency` batches in flight."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        handler: str = EMU_HANDLER,
        topology: Topology = DEFAULT_TOPOLOGY,
        concurrency: int | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.client = client
        self.queue_url = queue_url
        self.handler_name = handler
        self.batch_size = topology.emu_batch_size
        self.timeout_seconds = topology.emu_timeout_seconds
        self.concurrency = concurrency or min(topology.emu_reserved_concurrency, topology.emu_max_concurrency)
        self.region = region
        self.stop = threading.Event()
        self.invocations = 0
        self.failed_records = 0
        self._lock = threading.Lock()
        self.queue_arn = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def run(self) -> None:
        """Poll until `stop` is set; in-flight invocations finish first."""
        handler = load_handler(self.handler_name)
        slots = threading.BoundedSemaphore(self.concurrency)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="emu") as pool:
            while not self.stop.is_set():
                slots.acquire()
                try:
                    messages = self.receive()
                except Exception:  # the queue server is down or restarting: back off, keep polling
                    logger.exception("event source receive failed")
                    slots.release()
                    self.stop.wait(1)
                    continue
                if not messages:
                    slots.release()
                    continue
                pool.submit(self._invoke_and_release, handler, messages, slots)

    def receive(self, wait_seconds: int = RECEIVE_WAIT_SECONDS) -> list[dict[str, Any]]:
        """One (long) poll for up to a batch of messages."""
        return self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])

    def _invoke_and_release(self, handler: Any, messages: list[dict[str, Any]], slots: threading.Semaphore) -> None:
        try:
            self.invoke(handler, messages)
        except Exception:  # a crashed invocation: nothing is deleted, the batch comes back (as in Lambda)
            logger.exception("emu invocation failed")
        finally:
            slots.release()

    def poll_once(self, handler: Any) -> int:
        """Receive one batch and invoke the handler with it; return the number of records (tests, tools)."""
        messages = self.receive(wait_seconds=0)
        if messages:
            self.invoke(handler, messages)
        return len(messages)

    def invoke(self, handler: Any, messages: list[dict[str, Any]]) -> None:
        """Invoke the handler with one batch; delete what succeeded."""
        event = {"Records": [to_lambda_record(m, self.queue_arn, self.region) for m in messages]}
        context = LocalLambdaContext(function_name="emu", timeout_seconds=self.timeout_seconds)
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
