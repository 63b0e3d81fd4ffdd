"""A local SQS event source mapping: polls the queue and calls the Emu handler like Lambda does.

It builds real SQS-shaped events, honours the batch size and `batchItemFailures` (only the
succeeded messages are deleted; failed ones come back after the visibility timeout and end in
the DLQ after maxReceiveCount), and runs up to N batches at once, N = Emu's reserved
concurrency.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from refarch.local.handlers import LocalLambdaContext, load_handler
from refarch.observability import logger
from refarch.topology import DEFAULT_TOPOLOGY, EMU_HANDLER, Topology


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
    """Polls with `concurrency` threads; each receives a batch, invokes the handler, deletes successes."""

    def __init__(self, client: Any, queue_url: str, *, handler: str = EMU_HANDLER,
                 topology: Topology = DEFAULT_TOPOLOGY, concurrency: int | None = None,
                 region: str = "us-east-1") -> None:
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
        self.queue_arn = client.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def run(self) -> None:
        """Poll until `stop` is set (threads finish their in-flight batch first)."""
        handler = load_handler(self.handler_name)
        threads = [threading.Thread(target=self._loop, args=(handler,), name=f"emu-{i}", daemon=True)
                   for i in range(self.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _loop(self, handler: Any) -> None:
        while not self.stop.is_set():
            try:
                self.poll_once(handler, wait_seconds=1)
            except Exception:  # a dead queue server or a handler crash: log, back off, keep polling
                logger.exception("event source poll failed")
                time.sleep(1)

    def poll_once(self, handler: Any, *, wait_seconds: int = 0) -> int:
        """Receive one batch and invoke the handler with it; return the number of records."""
        messages = self.client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size, WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"], MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [to_lambda_record(m, self.queue_arn, self.region) for m in messages]}
        context = LocalLambdaContext(function_name="emu", timeout_seconds=self.timeout_seconds)
        response = handler(event, context) or {}
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])],
            )
        with self._lock:
            self.invocations += 1
            self.failed_records += len(failed)
        return len(messages)
