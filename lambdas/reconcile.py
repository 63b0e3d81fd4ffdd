"""Reconcile state machine steps (weekly by default): Plan -> Map(Shard) -> Finalize.

Each shard compares its slice of the id space in Postgres and in the index and enqueues repairs,
so a catalog of any size reconciles within each Lambda's 15 minutes.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from refarch.index.id_shards import Shard
from refarch.observability import logger, metrics, tracer
from refarch.reconcile import SHARD_SAMPLE, find_drift, merge_reports, plan_shards, repair
from refarch.runtime import Runtime

runtime = Runtime(application_name="reconcile")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Split the id space into shards; {"repair": false} only reports. Returns {repair, shards} for the Map."""
    repair_drift = bool(event.get("repair", True))
    return {
        "repair": repair_drift,
        "shards": [{**s.as_item(), "repair": repair_drift} for s in plan_shards(runtime.db)],
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def shard(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Compare one shard; enqueue forced syncs for its drift unless {"repair": false}. Returns counts + samples."""
    active = runtime.targets.active()
    report = find_drift(runtime.db, active.index, active.embedder.model_id, Shard.from_item(event))
    if event.get("repair", True):
        repair(runtime.db, runtime.bulk_queue, report)
    result = report.as_dict(sample=SHARD_SAMPLE)
    if not report.clean:
        logger.info("drift in shard", extra={"shard": Shard.from_item(event).as_item(), **result})
    return result


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def finalize(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Sum the shards' reports ({"results": [...]}), publish the drift metrics, return the whole report."""
    result = merge_reports(event.get("results", []))
    for name in ("missing", "extra", "stale"):
        metrics.add_metric(f"Drift{name.capitalize()}", MetricUnit.Count, result[name])
    logger.info("reconcile done", extra=result)
    return result
