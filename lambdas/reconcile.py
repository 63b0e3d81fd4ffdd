"""Scheduled reconciliation (weekly by default): report drift between Postgres and the index, and repair it."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from refarch.observability import logger, metrics, tracer
from refarch.reconcile import find_drift, repair
from refarch.runtime import Runtime

runtime = Runtime(application_name="reconcile")


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Find drift; enqueue repairs unless the event says {"repair": false}."""
    report = find_drift(runtime.db, runtime.index, runtime.embedder.model_id)
    if event.get("repair", True):
        repair(runtime.db, runtime.bulk_queue, report)
    for name in ("missing", "extra", "stale"):
        metrics.add_metric(f"Drift{name.capitalize()}", MetricUnit.Count, len(getattr(report, name)))
    result = report.as_dict()
    logger.info("reconcile done", extra=result)
    return result
