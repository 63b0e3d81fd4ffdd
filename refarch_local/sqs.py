"""A local SQS API (moto's server on 127.0.0.1) with the queues the CDK app defines: both lanes, each with its DLQ."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from refarch.lanes.queues import make_sqs_client
from refarch.lanes.topology import BULK_DLQ_NAME, BULK_QUEUE_NAME, DEFAULT_TOPOLOGY, DLQ_NAME, QUEUE_NAME, Topology
from refarch.settings import Settings, write_local_runtime

if TYPE_CHECKING:  # boto3's stubs are a dev dependency: types only, never imported at run time
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

DEFAULT_PORT = 9324
# Locally a failed message comes back after this many seconds (AWS: 6 x Emu's timeout), so
# retries and the DLQ path are observable in seconds rather than minutes.
LOCAL_VISIBILITY_TIMEOUT = 10
# The bulk lane's deliveries are up to 100 x 100 products; locally they take a minute or more on
# 2 cores, so its messages stay invisible longer (AWS: 6 x the bulk function's 300 s timeout).
LOCAL_BULK_VISIBILITY_TIMEOUT = 180


# The request body as the client signed it: a long poll is served as repeated short ones (the body
# rewritten), so a signature check (refarch_local.rehearsal.iam_server) must read this one.
SIGNED_BODY = "refarch.signed_body"


class LocalSqsServer:
    """moto's SQS API on 127.0.0.1, one request at a time.

    moto's in-memory queues are not thread-safe (concurrent receive/delete/send can strand or drop
    a message), so requests are serialised. A long poll (WaitTimeSeconds > 0) waits outside the
    lock, so it never blocks senders: it polls again as soon as any request could have made a
    message receivable (a send, a delete that frees a FIFO group, a visibility change), and when
    the queue's next hidden message (visibility timeout or delay) comes due. An idle stack costs
    next to no CPU: a long poll on an empty queue is answered twice, at its start and at its end.
    """

    # The longest a long poll sleeps between two looks at its queue, whatever the queue holds: a
    # safety net only (every change that can make a message receivable wakes it, and so does the
    # moment the next hidden message comes due). Rechecking every 0.5 s, the Emu workers' 1 s long
    # polls were answered in full three times each instead of twice.
    LONG_POLL_RECHECK_SECONDS = 5.0
    # SQS publishes ApproximateAgeOfOldestMessage to CloudWatch every minute; locally every few
    # seconds, into moto's CloudWatch on the same port, so status displays read it the same way.
    AGE_METRIC_SECONDS = 5.0

    def __init__(self, port: int, *, metric_credentials: dict[str, str] | None = None) -> None:
        self.port = port
        # Keys for publishing the age metric: any will do unless the server enforces IAM.
        self.metric_credentials = metric_credentials or {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._app: Any = None
        self._changes = threading.Condition()
        self._generation = 0  # counts requests that may have made a message receivable

    def start(self) -> LocalSqsServer:
        """Serve in a background thread of this process."""
        os.environ["MOTO_PORT"] = str(self.port)
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        _speed_up_moto()
        self._app = DomainDispatcherApplication(create_backend_app)
        # SQS requests skip the dispatcher's per-request backend lookup (a scan of moto's modules).
        self._sqs_app = create_backend_app("sqs")
        self._server = make_server("127.0.0.1", self.port, self._serve, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="sqs-server", daemon=True)
        self._thread.start()
        self._stopped = threading.Event()
        threading.Thread(target=self._publish_ages, name="sqs-age-metric", daemon=True).start()
        return self

    def oldest_ages(self) -> dict[str, float]:
        """{queue name: seconds its oldest message has waited}, for every queue holding messages."""
        from moto.sqs.models import sqs_backends

        now_ms = time.time() * 1000.0
        ages: dict[str, float] = {}
        with self._lock:
            for regions in list(sqs_backends.values()):
                for backend in list(regions.values()):
                    for name, queue in backend.queues.items():
                        stamps = (getattr(m, "sent_timestamp", None) for m in queue._messages)
                        sent = [float(ts) for ts in stamps if isinstance(ts, int | float)]
                        if sent:
                            ages[name] = max(0.0, (now_ms - min(sent)) / 1000.0)
        return ages

    def _publish_ages(self) -> None:
        import boto3

        cloudwatch = boto3.client(
            "cloudwatch",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            region_name="us-east-1",
            aws_access_key_id=self.metric_credentials["aws_access_key_id"],
            aws_secret_access_key=self.metric_credentials["aws_secret_access_key"],
        )
        while not self._stopped.wait(self.AGE_METRIC_SECONDS):
            try:
                data: list[MetricDatumTypeDef] = [
                    {
                        "MetricName": "ApproximateAgeOfOldestMessage",
                        "Dimensions": [{"Name": "QueueName", "Value": name}],
                        "Value": round(age, 3),
                        "Unit": "Seconds",
                    }
                    for name, age in self.oldest_ages().items()
                ]
                for start in range(0, len(data), 20):
                    cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=data[start : start + 20])
            except Exception:  # a status metric must never take the queue server down; try again next tick
                logging.getLogger(__name__).debug("publishing queue ages failed", exc_info=True)

    def _serve(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = signed = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        app: Any = self._sqs_app if target.startswith("AmazonSQS.") else self._app
        mutates = not target.startswith(("AmazonSQS.Receive", "AmazonSQS.Get", "AmazonSQS.List"))
        wait, queue_url = 0.0, ""
        if target == "AmazonSQS.ReceiveMessage":
            request = json.loads(body or b"{}")
            wait, queue_url = float(request.get("WaitTimeSeconds") or 0), str(request.get("QueueUrl", ""))
            if wait:
                request["WaitTimeSeconds"] = 0
                body = json.dumps(request).encode()
        deadline = time.monotonic() + wait
        response: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            response.update(status=status, headers=headers)

        while True:
            env = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), SIGNED_BODY: signed}
            with self._lock:
                generation = self._generation
                payload = b"".join(app(env, capture))
                if mutates:
                    self._generation += 1
            if mutates:
                with self._changes:
                    self._changes.notify_all()
            remaining = deadline - time.monotonic()
            if not wait or b'"Messages"' in payload or remaining <= 0:
                break
            due = self._seconds_until_next_due(queue_url)
            self._wait_for_change(generation, min(remaining, due, self.LONG_POLL_RECHECK_SECONDS))
        start_response(response["status"], response["headers"])
        return [payload]

    def _seconds_until_next_due(self, queue_url: str) -> float:
        """Seconds until the queue's next hidden message (in flight or delayed) may be received (inf: none)."""
        from moto.sqs.models import sqs_backends

        name = queue_url.rstrip("/").rpartition("/")[2]
        now = time.time() * 1000.0  # moto's clock: milliseconds
        soonest = math.inf
        with self._lock:
            for regions in list(sqs_backends.values()):
                for backend in list(regions.values()):
                    queue = backend.queues.get(name)
                    for message in queue._messages if queue is not None else ():
                        # A message already due but not received waits on another (its FIFO group's message
                        # in flight), whose own time is the one to wake for.
                        due = max(message.visible_at, message.delayed_until)
                        if now < due < soonest:
                            soonest = due
        # A message is visible strictly after its time: look 10 ms later.
        return (soonest - now) / 1000.0 + 0.01

    def _wait_for_change(self, seen: int, timeout: float) -> None:
        """Sleep until a request may have made a message receivable (or the timeout passes)."""
        with self._changes:
            self._changes.wait_for(lambda: self._generation != seen, timeout=timeout)

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._stopped.set()
            self._server.shutdown()
            self._server = None


def _speed_up_moto() -> None:
    """Local patches that keep moto's cost per message low as a queue grows to 10,000+ messages.

    Behaviour is unchanged; only the work is. moto reads the time through datetime arithmetic for
    every message; recomputes the queue's approximate counts (three scans of every message) each
    time it reads any queue attribute, which it does four times per message sent; builds every
    attribute to read the retention period of each message it receives; and scans the queue twice
    per deleted message. Here: the same clock from time.time(), read once per scan; the three
    counts in one pass, reused until a message is sent, received or deleted (or for at most 50 ms,
    so a visibility timeout can show 50 ms late); the retention period read directly; one pass per
    delete.
    """
    import moto.sqs.models as sqs_models
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if getattr(sqs_models, "_refarch_patched", False):  # once per process, however many servers start
        return
    missing = moto_internals_missing()
    if missing:
        raise RuntimeError(
            f"moto {_moto_version()} no longer has the internals refarch_local/sqs.py patches for speed: "
            f"{', '.join(missing)}. Update _speed_up_moto for this moto, or cap moto's range in "
            "pyproject.toml (the local extra) and run `make lock`."
        )
    sqs_models._refarch_patched = True  # type: ignore[attr-defined]

    # moto.sqs.models imports unix_time(_millis) from moto.core.utils without re-exporting them; the patch must
    # replace the names that module looks up, so mypy's implicit-reexport check is silenced on these lines only.
    original_ms, original_s = sqs_models.unix_time_millis, sqs_models.unix_time  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = lambda dt=None: time.time() * 1000.0 if dt is None else original_ms(dt)  # type: ignore[attr-defined]
    sqs_models.unix_time = lambda dt=None: time.time() if dt is None else original_s(dt)  # type: ignore[attr-defined]

    def counts(queue: Any) -> tuple[int, int, int]:
        """(visible, not visible, delayed) in one pass with one clock reading, reused while nothing changed."""
        cache = queue.__dict__.setdefault("_refarch_counts", (0.0, None, (0, 0, 0)))
        # Any send, receive or delete changes the key, so only visibility timeouts can be 50 ms late.
        key = (len(queue._messages), len(queue.pending_messages))
        now = time.monotonic()
        if cache[1] == key and now - cache[0] <= 0.05:
            cached: tuple[int, int, int] = cache[2]
            return cached
        clock = time.time() * 1000.0
        visible = not_visible = delayed = 0
        for m in queue._messages:
            is_delayed = clock < m.delayed_until
            if clock > m.visible_at:
                visible += not is_delayed
            else:
                not_visible += 1
            delayed += is_delayed
        queue.__dict__["_refarch_counts"] = (now, key, (visible, not_visible, delayed))
        return visible, not_visible, delayed

    queue_class = sqs_models.Queue

    def visible_messages(queue: Any) -> list[Any]:
        now = time.time() * 1000.0  # one clock reading per scan, not two per message
        return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]

    queue_class.messages = property(visible_messages)  # type: ignore[method-assign, assignment]

    def retained(backend: Any, queue_name: str, message: Any) -> bool:
        # moto computes every queue attribute (three scans of every message) to read this one, per message received.
        retention = int(backend.get_queue(queue_name).message_retention_period)
        kept: bool = retention + message.sent_timestamp / 1000 > time.time()
        return kept

    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign, assignment]

    def delete_message(queue: Any, receipt_handle: str) -> None:
        # One pass instead of moto's two, each building a list of handles per message.
        if receipt_handle in queue.deleted_messages:
            return
        for position, message in enumerate(queue._messages):
            if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
                queue.pending_messages.discard(message)
                queue.deleted_messages.update(message.all_receipt_handles)
                queue._messages = queue._messages[:position] + queue._messages[position + 1 :]
                return
        raise ReceiptHandleIsInvalid()

    queue_class.delete_message = delete_message  # type: ignore[method-assign, assignment]
    queue_class.approximate_number_of_messages = property(lambda queue: counts(queue)[0])  # type: ignore[method-assign, assignment]
    queue_class.approximate_number_of_messages_not_visible = property(lambda queue: counts(queue)[1])  # type: ignore[method-assign, assignment]
    queue_class.approximate_number_of_messages_delayed = property(lambda queue: counts(queue)[2])  # type: ignore[method-assign, assignment]


# What _speed_up_moto replaces (module functions, class members) and reads (queue and message attributes).
_PATCHED_FUNCTIONS = ("unix_time_millis", "unix_time")
_PATCHED_QUEUE_MEMBERS = (
    "messages",
    "delete_message",
    "approximate_number_of_messages",
    "approximate_number_of_messages_not_visible",
    "approximate_number_of_messages_delayed",
)
_READ_QUEUE_ATTRIBUTES = ("_messages", "pending_messages", "deleted_messages", "message_retention_period")
_READ_MESSAGE_ATTRIBUTES = (
    "visible_at",
    "delayed_until",
    "receipt_handle",
    "_old_receipt_handles",
    "all_receipt_handles",
    "sent_timestamp",
)


def moto_internals_missing() -> list[str]:
    """The moto internals the speed-ups rely on that this moto lacks (empty when all are there).

    Checked on a real queue and message of a throwaway account, so an upgrade that renames or
    removes one fails here, loudly, instead of corrupting the local queue quietly.
    """
    import moto.sqs.models as sqs_models

    missing = [f"moto.sqs.models.{name}" for name in _PATCHED_FUNCTIONS if not hasattr(sqs_models, name)]
    missing += [f"Queue.{name}" for name in _PATCHED_QUEUE_MEMBERS if not hasattr(sqs_models.Queue, name)]
    if not hasattr(sqs_models.SQSBackend, "is_message_valid_based_on_retention_period"):
        missing.append("SQSBackend.is_message_valid_based_on_retention_period")
    backend = sqs_models.sqs_backends["000000000042"]["us-east-1"]
    try:
        queue = backend.create_queue("refarch-moto-internals-check")
        backend.send_message(queue.name, "probe")
        message = queue._messages[0]
    except Exception as err:  # any change in how a queue or message is made is a change we rely on
        return [*missing, f"creating a queue and a message ({type(err).__name__}: {err})"]
    finally:
        with contextlib.suppress(KeyError):
            backend.delete_queue("refarch-moto-internals-check")
    missing += [f"Queue().{name}" for name in _READ_QUEUE_ATTRIBUTES if not hasattr(queue, name)]
    missing += [f"Message().{name}" for name in _READ_MESSAGE_ATTRIBUTES if not hasattr(message, name)]
    return missing


def _moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


def start_server(port: int = DEFAULT_PORT) -> LocalSqsServer:
    """Start the local SQS API on 127.0.0.1:port; returns the server (call .stop())."""
    return LocalSqsServer(port).start()


def create_queues(
    settings: Settings,
    endpoint: str,
    *,
    topology: Topology = DEFAULT_TOPOLOGY,
    visibility_timeout: int = LOCAL_VISIBILITY_TIMEOUT,
    bulk_visibility_timeout: int = LOCAL_BULK_VISIBILITY_TIMEOUT,
) -> dict[str, str]:
    """Create both lanes' queues with their DLQs and redrive (idempotent); publish their URLs.

    Live lane: FIFO queue + FIFO DLQ. Bulk lane: standard queue + standard DLQ.
    """
    write_local_runtime(settings, sqs_endpoint_url=endpoint)
    client = make_sqs_client(settings)
    dlq_url = client.create_queue(
        QueueName=DLQ_NAME, Attributes={"FifoQueue": "true", "MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = client.create_queue(
        QueueName=QUEUE_NAME,
        Attributes={
            "FifoQueue": "true",
            # High-throughput FIFO, as in AWS.
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(topology.max_receive_count)}
            ),
        },
    )["QueueUrl"]
    bulk_dlq_url = client.create_queue(QueueName=BULK_DLQ_NAME, Attributes={"MessageRetentionPeriod": "1209600"})[
        "QueueUrl"
    ]
    bulk_dlq_arn = client.get_queue_attributes(QueueUrl=bulk_dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    bulk_queue_url = client.create_queue(
        QueueName=BULK_QUEUE_NAME,
        Attributes={
            "VisibilityTimeout": str(bulk_visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": bulk_dlq_arn, "maxReceiveCount": str(topology.max_receive_count)}
            ),
        },
    )["QueueUrl"]
    urls = {"queue_url": queue_url, "dlq_url": dlq_url, "bulk_queue_url": bulk_queue_url, "bulk_dlq_url": bulk_dlq_url}
    write_local_runtime(settings, **urls)
    return {**urls, "sqs_endpoint_url": endpoint}
