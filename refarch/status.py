"""System sync status: one query for the database side, SQS attributes and metrics for each lane's queues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from refarch import generations
from refarch.db import Connection, fetch_one
from refarch.lanes.topology import LANE_NAMES
from refarch.observability import logger
from refarch.settings import Settings


def ping(conn: Connection) -> None:
    """Raise if the database does not answer a trivial query (health checks)."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def sync_counts(conn: Connection) -> dict[str, Any]:
    """Products, indexed, pending, failed, outbox backlog and the oldest pending change's age.

    "Pending" counts everything not yet true in the index: rows newer than what is indexed, and
    deletions not yet applied (the ledger still holds a product the table no longer has). So
    pending == failed == 0 with an idle queue means index == database, deletes included.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*),"
            " count(*) FILTER (WHERE status = 'indexed'),"
            " count(*) FILTER (WHERE status = 'pending'),"
            " count(*) FILTER (WHERE status = 'failed')"
            " FROM product_sync_status"
        )
        total, indexed, pending_rows, failed_rows = fetch_one(cur)
        # Deletions not yet applied, aged from their delete's outbox row (while it is kept).
        cur.execute(
            "WITH gone AS (SELECT s.product_id, s.status FROM sync_state s"
            " WHERE s.generation = active_generation() AND s.status <> 'deleted'"
            " AND NOT EXISTS (SELECT 1 FROM source_rows p WHERE p.id = s.product_id))"
            " SELECT count(*) FILTER (WHERE status <> 'failed'), count(*) FILTER (WHERE status = 'failed'),"
            " coalesce(extract(epoch FROM now() - (SELECT min(o.created_at) FROM sync_outbox o"
            " JOIN gone g ON g.product_id = o.product_id WHERE o.op = 'delete')), 0)"
            " FROM gone"
        )
        pending_deletes, failed_deletes, oldest_delete = fetch_one(cur)
        # Oldest change not yet reflected in the index (updated_at is when that state was committed).
        cur.execute(
            "SELECT coalesce(extract(epoch FROM now() - min(p.updated_at)), 0) FROM source_rows p"
            " LEFT JOIN sync_state s ON s.product_id = p.id AND s.generation = active_generation()"
            " WHERE s.product_id IS NULL OR s.indexed_version < p.version OR s.status IN ('failed', 'deleted')"
        )
        oldest = max(float(fetch_one(cur)[0]), float(oldest_delete) if pending_deletes else 0.0)
        cur.execute("SELECT count(*) FROM sync_outbox WHERE enqueued_at IS NULL")
        outbox_backlog = fetch_one(cur)[0]
    return {
        "products": total,
        "indexed": indexed,
        "pending": pending_rows + pending_deletes,
        "pending_deletes": pending_deletes,
        "failed": failed_rows + failed_deletes,
        "outbox_backlog": outbox_backlog,
        "oldest_pending_seconds": round(oldest, 3),
    }


def generation_counts(conn: Connection) -> dict[str, Any]:
    """The active index generation, and the building one's progress (rows, rate, ETA) while a re-index runs.

    Flat keys, as every other status field: `building_generation` is None when nothing builds.
    """
    active = generations.active(conn)
    building = generations.building(conn)
    result: dict[str, Any] = {
        "generation": active.id,
        "generation_model": active.model_id,
        "building_generation": building.id if building else None,
    }
    if building is not None:
        progress = generations.progress(conn, building.id)
        result.update(
            building_model=building.model_id,
            building_rows=progress["rows"],
            building_indexed=progress["indexed"],
            building_failed=progress["failed"],
            building_rate_per_second=progress["rate_per_second"],
            building_eta_seconds=progress["eta_seconds"],
        )
    return result


# Queues whose depth could not be read last time (per process), so an outage is warned about once.
_UNAVAILABLE_QUEUES: set[str] = set()


def queue_depths(sqs: Any, queue_url: str | None, dlq_url: str | None) -> dict[str, int | None]:
    """Visible + in-flight messages in the queue, and messages in the DLQ (None when unknown)."""

    def depth(url: str | None) -> int | None:
        if not url:
            return None
        try:
            attrs = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
        except Exception as err:  # a status display must not fail with the queue; say why the depth is unknown
            reason = f"{type(err).__name__}: {err}"
            # Status is polled (the demo twice a second, the page on every view): warn once per outage.
            log = logger.debug if url in _UNAVAILABLE_QUEUES else logger.warning
            _UNAVAILABLE_QUEUES.add(url)
            log("queue depth unavailable", extra={"queue_url": url, "reason": reason})
            return None
        if url in _UNAVAILABLE_QUEUES:
            _UNAVAILABLE_QUEUES.discard(url)
            logger.info("queue depth available again", extra={"queue_url": url})
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    return {"queue_depth": depth(queue_url), "dlq_depth": depth(dlq_url)}


def lane_queues(settings: Settings) -> dict[str, tuple[str | None, str | None]]:
    """{lane: (queue URL, DLQ URL)} for each lane whose queue is configured."""
    queues: dict[str, tuple[str | None, str | None]] = {}
    for lane in LANE_NAMES:
        url = settings.known_queue_url(lane)
        if url:
            queues[lane] = (url, settings.dlq_url(lane))
    return queues


def oldest_message_age(cloudwatch: Any, queue_url: str) -> float | None:
    """Seconds the oldest message has waited: SQS publishes it only as a CloudWatch metric (every minute).

    Locally the SQS server publishes the same metric (refarch_local.sqs). None when unknown.
    """
    now = datetime.now(UTC)
    try:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_url.rstrip("/").rsplit("/", 1)[-1]}],
            StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=1),
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    except Exception as err:  # a status display must not fail with CloudWatch; the age is then unknown
        logger.debug("queue age unavailable", extra={"queue_url": queue_url, "reason": f"{type(err).__name__}: {err}"})
        return None
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])


def queue_states(sqs: Any, cloudwatch: Any, queues: dict[str, tuple[str | None, str | None]]) -> dict[str, Any]:
    """Per lane: queue depth, age of its oldest message and DLQ depth; plus totals over both lanes.

    `queue_depth` and `dlq_depth` are the sums (None when no lane could be read), so "nothing
    queued anywhere" is one check.
    """
    result: dict[str, Any] = {}
    for lane, (queue_url, dlq_url) in queues.items():
        depths = queue_depths(sqs, queue_url, dlq_url)
        age = None
        if depths["queue_depth"] == 0:
            age = 0.0
        elif depths["queue_depth"] is not None and queue_url:
            age = oldest_message_age(cloudwatch, queue_url)
        result[f"{lane}_queue_depth"] = depths["queue_depth"]
        result[f"{lane}_queue_age_seconds"] = age
        result[f"{lane}_dlq_depth"] = depths["dlq_depth"]
    for key in ("queue_depth", "dlq_depth"):
        known = [result[f"{lane}_{key}"] for lane in queues if result[f"{lane}_{key}"] is not None]
        result[key] = sum(known) if known else None
    return result
