"""The outbox relay: drains `sync_outbox` onto the queue on start, on NOTIFY, and on a poll timer.

NOTIFY is only a wake-up; the outbox is the source of truth. Rows are claimed with
`FOR UPDATE SKIP LOCKED` (two relays never send the same row) and marked enqueued only after
SQS accepted them, in the same transaction that holds the claim: a crash in between re-sends
(harmless: FIFO dedup + Emu's idempotence), it never loses.

Changes go to the live lane, one message per product. A backlog above `bulk_threshold` rows
(one UPDATE touching 50,000 rows, a long outage) goes to the bulk lane instead, 100 products per
message, until it is below the threshold again: it would otherwise fill the live lane for minutes.
"""

from __future__ import annotations

import select
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import cast

import psycopg2
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from refarch.db import Connection, connect
from refarch.lanes.messages import BulkSyncMessage, SyncMessage, SyncOp, bulk_messages
from refarch.lanes.queues import PartialSendError, SyncQueue
from refarch.lanes.topology import DEFAULT_TOPOLOGY, LaneName
from refarch.observability import logger, metrics
from refarch.pelican import outbox

CHANNEL = "refarch_outbox"
# Rows claimed per round on the bulk lane: 50 bulk messages, 5 SendMessageBatch calls.
BULK_CLAIM_SIZE = 5000


def relay_lane(backlog: int, threshold: int, *, bulk_available: bool) -> LaneName:
    """The lane for the next claim: bulk while the unsent backlog exceeds the threshold."""
    return "bulk" if bulk_available and backlog > threshold else "live"


class OutboxRelay:
    """Moves captured changes from Postgres to SQS, forever, until `stop` is set."""

    def __init__(
        self,
        dsn: str,
        queue: SyncQueue,
        *,
        poll_seconds: float = 2.0,
        claim_size: int = 500,
        prune_after_hours: float = 24.0,
        heartbeat_file: Path | None = None,
        bulk_queue: SyncQueue | None = None,
        bulk_threshold: int = DEFAULT_TOPOLOGY.relay_bulk_threshold,
    ) -> None:
        self.dsn = dsn
        self.queue = queue
        self.bulk_queue = bulk_queue
        self.bulk_threshold = bulk_threshold
        self.poll_seconds = poll_seconds
        self.claim_size = claim_size
        self.prune_after_hours = prune_after_hours
        self.heartbeat_file = heartbeat_file
        self.stop = threading.Event()
        self.sent = 0
        self.sent_bulk = 0
        self._sent_reported = 0

    def drain(self, conn: Connection) -> int:
        """Send every unsent outbox row; return how many rows were marked enqueued."""
        total = 0
        while not self.stop.is_set():
            with conn:
                backlog = outbox.pending_at_least(conn, self.bulk_threshold + 1)
                lane = relay_lane(backlog, self.bulk_threshold, bulk_available=self.bulk_queue is not None)
                rows = outbox.claim(conn, self.claim_size if lane == "live" else BULK_CLAIM_SIZE)
                if not rows:
                    break
                if lane == "bulk" and self.bulk_queue is not None:
                    self.bulk_queue.send(_bulk(rows))
                    self.sent_bulk += len(rows)
                else:
                    self.queue.send(_coalesce(rows))
                outbox.mark_enqueued(conn, [r.id for r in rows])
            total += len(rows)
            self.sent += len(rows)
            # A long backlog is work, not a hang: stay live for the health check while draining it.
            self._heartbeat()
        if total:
            logger.info(
                "outbox drained", extra={"rows": total, "sent_total": self.sent, "sent_bulk_total": self.sent_bulk}
            )
        return total

    def run(self) -> None:
        """Connect (with backoff), drain, LISTEN, and keep draining until `stop` is set."""
        for attempt in Retrying(
            retry=retry_if_exception_type((psycopg2.OperationalError, psycopg2.InterfaceError)),
            wait=wait_exponential(multiplier=0.2, max=10),
            before_sleep=lambda rs: logger.warning(
                "database unavailable, reconnecting",
                # before_sleep runs only after a failed attempt, so the outcome is always set.
                extra={"attempt": rs.attempt_number, "error": str(rs.outcome.exception() if rs.outcome else None)},
            ),
        ):
            with attempt:
                if not self.stop.is_set():
                    self._serve()

    def _serve(self) -> None:
        listen_conn = connect(self.dsn, autocommit=True, application_name="pelican-listen")
        work_conn = connect(self.dsn, application_name="pelican-drain")
        try:
            with listen_conn.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
            # LISTEN first, then drain: a change committed in between is caught by one or the other.
            self._drain_unless_queue_fails(work_conn)
            self.maintain(work_conn)
            last_maintenance = time.monotonic()
            while not self.stop.is_set():
                self._heartbeat()
                readable, _, _ = select.select([listen_conn], [], [], self.poll_seconds)
                if readable:
                    listen_conn.poll()
                    listen_conn.notifies.clear()
                self._drain_unless_queue_fails(work_conn)
                if time.monotonic() - last_maintenance > 60:
                    self.maintain(work_conn)
                    last_maintenance = time.monotonic()
        finally:
            listen_conn.close()
            work_conn.close()

    def _drain_unless_queue_fails(self, conn: Connection) -> None:
        # SQS unreachable or refusing (after the SDK's and SyncQueue's own retries): the claim was
        # rolled back, so its rows stay unsent and the next poll retries them. Exiting instead
        # would only trade this wait for a container restart.
        try:
            self.drain(conn)
        except (BotoCoreError, ClientError, PartialSendError) as err:
            logger.warning(
                "queue send failed, rows stay in the outbox for the next drain",
                extra={"error": f"{type(err).__name__}: {err}"},
            )

    def maintain(self, conn: Connection) -> None:
        """Prune old enqueued rows; log and publish the backlog, its oldest age and rows sent since last time.

        The metrics are CloudWatch embedded-metric-format lines on stdout (the container's log
        stream), so a relay that runs but cannot send, e.g. refused by SQS, still raises an alarm.
        """
        with conn:
            pruned = outbox.prune(conn, self.prune_after_hours)
            count, age = outbox.backlog(conn)
        sent, self._sent_reported = self.sent - self._sent_reported, self.sent
        logger.info(
            "outbox status",
            extra={
                "backlog": count,
                "oldest_pending_seconds": round(age, 3),
                "pruned": pruned,
                "sent_total": self.sent,
            },
        )
        metrics.add_metric(name="OutboxBacklog", unit=MetricUnit.Count, value=count)
        metrics.add_metric(name="OutboxOldestPendingAge", unit=MetricUnit.Seconds, value=age)
        metrics.add_metric(name="OutboxSent", unit=MetricUnit.Count, value=sent)
        metrics.flush_metrics()

    def _heartbeat(self) -> None:
        if self.heartbeat_file is not None:
            self.heartbeat_file.parent.mkdir(parents=True, exist_ok=True)
            self.heartbeat_file.touch()


def _coalesce(rows: list[outbox.OutboxRow]) -> list[SyncMessage]:
    """One message per product (its newest change, timed from its oldest): Emu re-reads the row anyway."""
    latest: dict[int, outbox.OutboxRow] = {}
    earliest: dict[int, datetime] = {}
    for row in rows:
        if row.product_id not in latest or row.version > latest[row.product_id].version:
            latest[row.product_id] = row
        earliest[row.product_id] = min(row.created_at, earliest.get(row.product_id, row.created_at))
    return [
        SyncMessage(
            product_id=r.product_id,
            version=r.version,
            op=cast(SyncOp, r.op),  # the table's CHECK allows only SyncOp values; SyncMessage validates it again
            source="change",
            outbox_id=r.id,
            changed_at=earliest[r.product_id],
        )
        for r in latest.values()
    ]


def _bulk(rows: list[outbox.OutboxRow]) -> list[BulkSyncMessage]:
    """A backlog as bulk messages: each product once at its newest version, timed from the oldest change."""
    latest: dict[int, outbox.OutboxRow] = {}
    for row in rows:
        if row.product_id not in latest or row.version > latest[row.product_id].version:
            latest[row.product_id] = row
    oldest = min(row.created_at for row in rows)
    return bulk_messages(
        [(r.product_id, r.version, r.op) for r in latest.values()], source="backlog", changed_at=oldest
    )


def heartbeat_age(path: Path) -> float:
    """Seconds since the relay last looped (inf if it never did): the container's liveness."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
