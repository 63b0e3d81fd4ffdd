"""A local SQS API (moto's server on 127.0.0.1) with the queues the CDK app defines."""

from __future__ import annotations

import json
import logging
from typing import Any

from refarch.queue import make_sqs_client
from refarch.settings import Settings, write_local_runtime
from refarch.topology import DEFAULT_TOPOLOGY, DLQ_NAME, QUEUE_NAME, Topology

DEFAULT_PORT = 9324
# Locally a failed message comes back after this many seconds (AWS: 6 x Emu's timeout), so
# retries and the DLQ path are observable in seconds rather than minutes.
LOCAL_VISIBILITY_TIMEOUT = 10


def start_server(port: int = DEFAULT_PORT) -> Any:
    """Start moto's SQS server in a thread of this process; returns the server (call .stop())."""
    import os

    os.environ["MOTO_PORT"] = str(port)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def create_queues(settings: Settings, endpoint: str, *, topology: Topology = DEFAULT_TOPOLOGY,
                  visibility_timeout: int = LOCAL_VISIBILITY_TIMEOUT) -> dict[str, str]:
    """Create the FIFO queue + FIFO DLQ with redrive (idempotent); publish their URLs."""
    write_local_runtime(settings, sqs_endpoint_url=endpoint)
    client = make_sqs_client(settings)
    dlq_url = client.create_queue(QueueName=DLQ_NAME, Attributes={"FifoQueue": "true",
                                                                   "MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = client.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            "FifoQueue": "true",
            # High-throughput FIFO, as in AWS.
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": str(topology.max_receive_count)}),
        },
    )["QueueUrl"]
    write_local_runtime(settings, queue_url=queue_url, dlq_url=dlq_url)
    return {"queue_url": queue_url, "dlq_url": dlq_url, "sqs_endpoint_url": endpoint}
