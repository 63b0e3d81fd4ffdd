"""Shared pieces of the Pelican tests: a queue drainer, a send recorder, listener processes, DB probes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2

from refarch.lanes.queues import make_sqs_client
from refarch.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy and return its value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class QueueDrain:
    """Receives and deletes everything that reaches the queue, in background threads (as Emu would).

    Draining while producers run keeps the local queue shallow. Once a message is deleted, moto
    no longer deduplicates against it: a second send of the same product and version then shows
    up here, which makes "exactly once" checks stricter than on AWS, not looser.
    """

    def __init__(self, settings: Settings, *, threads: int = 4, lane: str = "live") -> None:
        self.settings = settings
        self.lane = lane
        self.url = settings.queue_url("live") if lane == "live" else settings.queue_url("bulk")
        # One entry per product named: a live message as received (with its FIFO attributes), a
        # bulk message's items each with the message's source and force flag.
        self.messages: list[dict[str, Any]] = []
        self.bulk_bodies: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, name=f"drain-{i}", daemon=True) for i in range(threads)]

    def __enter__(self) -> QueueDrain:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _loop(self) -> None:
        client = make_sqs_client(self.settings)
        while not self._stop.is_set():
            received = client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=120,
                MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
            )
            batch = received.get("Messages", [])
            if not batch:
                time.sleep(0.05)
                continue
            for m in batch:
                body = json.loads(m["Body"])
                if "items" in body:
                    self.bulk_bodies.append(body)
                    self.messages.extend(
                        {**item, "source": body["source"], "force": body.get("force", False)} for item in body["items"]
                    )
                else:
                    attributes = m.get("Attributes", {})
                    self.messages.append(
                        {
                            **body,
                            "sqs_group_id": attributes.get("MessageGroupId"),
                            "sqs_dedup_id": attributes.get("MessageDeduplicationId"),
                        }
                    )
            client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )

    def depth(self) -> int:
        """Messages still in the queue, visible or in flight."""
        attrs = make_sqs_client(self.settings).get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def settle(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until the queue is empty and every received message is recorded; return them all."""

        def stays_empty() -> bool:
            # Queue depths are approximate (the local server reuses them for 50 ms): read twice.
            if self.depth():
                return False
            time.sleep(0.2)
            return self.depth() == 0

        wait_for(stays_empty, timeout, "the queue to drain", interval=0.1)
        return self.messages

    def latest_versions(self) -> dict[int, int]:
        """The highest version seen per product."""
        latest: dict[int, int] = {}
        for m in self.messages:
            latest[m["product_id"]] = max(m["version"], latest.get(m["product_id"], 0))
        return latest


class SendRecorder:
    """Forwards every call to a real SQS client and records each SendMessageBatch entry SQS accepted.

    SQS FIFO (and moto) drop a re-sent product + version inside the dedup window, so the queue
    alone cannot prove a sender never sent twice; this record can.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.accepted: list[dict[str, Any]] = []
        self.senders: Counter[str] = Counter()
        self.attempts = 0

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        """Send for real, then record the accepted entries (and which thread sent them)."""
        self.attempts += 1
        response = self._client.send_message_batch(**kwargs)
        ok = {s["Id"] for s in response.get("Successful", [])}
        for entry in kwargs["Entries"]:
            if entry["Id"] in ok:
                self.accepted.append(json.loads(entry["MessageBody"]))
                self.senders[threading.current_thread().name] += 1
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def per_product(self) -> Counter[int]:
        """How many times each product was named by an accepted message (live or bulk)."""
        return Counter(pid for m in self.accepted for pid in named_products(m))


def named_products(body: dict[str, Any]) -> list[int]:
    """The product ids one message body names (a live message one, a bulk message its items)."""
    return [item["product_id"] for item in body["items"]] if "items" in body else [body["product_id"]]


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on its own autocommit connection and return its rows (if any)."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params or None)  # without params, a literal % stays literal
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def product_versions(dsn: str) -> dict[int, int]:
    """Current version of every product."""
    return dict(query(dsn, "SELECT id, version FROM products"))


def unsent_outbox_rows(dsn: str) -> int:
    """Outbox rows not yet marked enqueued."""
    return query(dsn, "SELECT count(*) FROM sync_outbox WHERE enqueued_at IS NULL")[0][0]


def edit_products(dsn: str, product_ids: list[int]) -> None:
    """One committed edit (a version bump) per listed id, each in its own transaction, like users do."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for pid in product_ids:
                cur.execute("UPDATE products SET price = price + 0.01 WHERE id = %s", (pid,))
    finally:
        conn.close()


def refarch_env(settings: Settings, dsn: str) -> dict[str, str]:
    """Environment for a `python -m refarch_cli` child: the test's home (runtime.json with the queues) and DB."""
    env = {
        **os.environ,
        "REFARCH_HOME": str(settings.home),
        "DATABASE_URL": dsn,
        "AWS_REGION": settings.aws_region,
        "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp"),
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    env.pop("REFARCH_QUEUE_URL", None)
    return env


class RefarchProcess:
    """A `python -m refarch_cli ...` child process (stdout/stderr to a log file), killed if a test leaves it running."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "refarch_cli", *args], env=env, cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT
        )

    def signal(self, signum: int) -> None:
        """Send a signal to this child only."""
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit; return its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.flush()

    def kill(self) -> None:
        """SIGKILL the child (no cleanup runs) and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._out.close()

    def output(self) -> str:
        """What the child printed so far (for assertion messages)."""
        return self.log.read_text(errors="replace")[-4000:]


def heartbeat(settings: Settings) -> Path:
    """The listener's liveness file under the test's home."""
    return settings.home / "pelican.heartbeat"
