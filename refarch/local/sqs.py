"""A local SQS API (moto's server on 127.0.0.1) with the queues the CDK app defines."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from typing import Any

from refarch.queue import make_sqs_client
from refarch.settings import Settings, write_local_runtime
from refarch.topology import DEFAULT_TOPOLOGY, DLQ_NAME, QUEUE_NAME, Topology

DEFAULT_PORT = 9324
# Locally a failed message comes back after this many seconds (AWS: 6 x Emu's timeout), so
# retries and the DLQ path are observable in seconds rather than minutes.
LOCAL_VISIBILITY_TIMEOUT = 10


class LocalSqsServer:
    """moto's SQS API on 127.0.0.1, one request at a time.

    moto's in-memory queues are not thread-safe (concurrent receive/delete/send can strand or drop
    a message), so requests are serialised. Long polls (WaitTimeSeconds > 0) are served as a
    series of short polls outside the lock, so a waiting receiver never blocks senders.
    """

    LONG_POLL_STEP_SECONDS = 0.02

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._app: Any = None

    def start(self) -> LocalSqsServer:
        """Serve in a background thread of this process."""
        os.environ["MOTO_PORT"] = str(self.port)
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", self.port, self._serve, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="sqs-server", daemon=True)
        self._thread.start()
        return self

    def _serve(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        wait = 0.0
        if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage":
            request = json.loads(body or b"{}")
            wait = float(request.get("WaitTimeSeconds") or 0)
            if wait:
                request["WaitTimeSeconds"] = 0
                body = json.dumps(request).encode()
        deadline = time.monotonic() + wait
        while True:
            response: dict[str, Any] = {}

            def capture(status: str, headers: list, exc_info: Any = None) -> None:
                response.update(status=status, headers=headers)

            env = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
            with self._lock:
                payload = b"".join(self._app(env, capture))
            if not wait or b'"Messages"' in payload or time.monotonic() >= deadline:
                break
            time.sleep(self.LONG_POLL_STEP_SECONDS)
        start_response(response["status"], response["headers"])
        return [payload]

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None


def start_server(port: int = DEFAULT_PORT) -> LocalSqsServer:
    """Start the local SQS API on 127.0.0.1:port; returns the server (call .stop())."""
    return LocalSqsServer(port).start()


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
