"""Emu: the SQS-triggered Lambda that embeds changed products and updates the vector index.

One handler, two functions: REFARCH_EMU_LANE=live (FIFO queue, batches of 10) or bulk (standard
queue, batches of up to 100 messages of up to 100 products each).
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from refarch.lanes.queues import queue_of, release_now
from refarch.lanes.topology import is_fifo
from refarch.observability import logger, metrics, tracer
from refarch.runtime import Runtime

runtime = Runtime(application_name="emu")


class RecordFailed(Exception):
    """This record must be retried (and, after maxReceiveCount, lands in the DLQ)."""


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId")
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Sync the batch's products (one embed call per chunk), then report per-message failures."""
    started = time.perf_counter()
    lane = runtime.settings.emu_lane
    if metrics.default_dimensions.get("lane") != lane:
        # A default dimension (set once per process) survives each flush: every metric names its lane.
        metrics.set_default_dimensions(lane=lane)
    records = event.get("Records", [])
    outcome = runtime.emu.process(
        {r["messageId"]: r.get("body", "") for r in records},
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )

    if outcome.not_started_messages:
        for message_id in hand_back_unstarted(records, outcome.not_started_messages):
            del outcome.failures[message_id]  # sent anew: this record is done

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in outcome.failures:
            raise RecordFailed(outcome.failures[record.message_id])

    # A processor per invocation: it holds per-batch state, and the local event source calls this
    # handler from several threads at once. Records from the live lane's FIFO queue keep FIFO rules:
    # after a failure in a message group, later messages of that group are failed too. The bulk
    # lane's standard queue has no order to keep.
    processor: BatchProcessor = (
        SqsFifoPartialProcessor(skip_group_on_error=True) if is_fifo(lane) else BatchProcessor(EventType.SQS)
    )
    try:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        # Also when every record failed (Powertools then raises so the whole batch is retried):
        # that is when the Failed metric matters most.
        failed = len(processor.fail_messages)
        metrics.add_metric("Embedded", MetricUnit.Count, outcome.embedded)
        metrics.add_metric("Skipped", MetricUnit.Count, outcome.skipped + outcome.metadata_only)
        metrics.add_metric("Deleted", MetricUnit.Count, outcome.deleted)
        metrics.add_metric("Failed", MetricUnit.Count, failed)
        metrics.add_metric("NotStarted", MetricUnit.Count, outcome.not_started)
        metrics.add_metric("EmbedCalls", MetricUnit.Count, outcome.embed_calls)
        # Throttled provider answers (Bedrock's, retried by botocore or not): a lane outgrowing the quota.
        metrics.add_metric("EmbedThrottles", MetricUnit.Count, outcome.embed_throttles)
        metrics.add_metric("Chunks", MetricUnit.Count, outcome.chunks)
        metrics.add_metric("BatchLatency", MetricUnit.Milliseconds, (time.perf_counter() - started) * 1000)
        if outcome.max_lag_seconds is not None:
            metrics.add_metric("SyncLag", MetricUnit.Milliseconds, outcome.max_lag_seconds * 1000)
        logger.info(
            "batch done",
            extra={
                "lane": lane,
                "records": len(records),
                "embedded": outcome.embedded,
                "skipped": outcome.skipped,
                "metadata_only": outcome.metadata_only,
                "deleted": outcome.deleted,
                "not_started": outcome.not_started,
                "embed_throttles": outcome.embed_throttles,
                "failed": failed,
            },
        )


def hand_back_unstarted(records: list[dict[str, Any]], message_ids: set[str]) -> set[str]:
    """Give the queue back the messages time ran out for, now (not after the visibility timeout).

    The bulk lane's standard queue gets a copy of each as a new message, and the originals count
    as done (returned): SQS counts receives, not attempts, so a message handed back as it is would
    use up one of its maxReceiveCount receives for work never started, and a delivery too big for
    one invocation could push its last messages to the DLQ untried. The live lane's FIFO queue
    would drop such a copy (same deduplication id), so its messages are made visible again instead
    (a live delivery is one chunk: it runs short only when the invocation starts short of time).
    """
    chosen = [r for r in records if r["messageId"] in message_ids]
    arn, lane = chosen[0]["eventSourceARN"], runtime.settings.emu_lane
    if not is_fifo(lane):
        try:
            queue_of(runtime.sqs, arn, lane=lane).send_bodies([r.get("body", "") for r in chosen])
            logger.info("messages not started sent again", extra={"messages": len(chosen)})
            return {r["messageId"] for r in chosen}
        except Exception as err:  # some copies may be out: the originals come back too (duplicates are harmless)
            logger.warning("could not send messages again", extra={"messages": len(chosen), "error": str(err)})
    try:
        release_now(runtime.sqs, arn, [r["receiptHandle"] for r in chosen])
    except Exception as err:  # they still come back, after the visibility timeout
        logger.warning("could not release messages early", extra={"messages": len(chosen), "error": str(err)})
    return set()
