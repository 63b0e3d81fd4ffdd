"""Bootstrap state machine steps: Plan -> Map(Batch) -> Finalize (and the catch: Fail)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from refarch.lanes.topology import DEFAULT_TOPOLOGY
from refarch.observability import logger, tracer
from refarch.pelican.bootstrap import fail_bootstrap, finalize_bootstrap, plan_bootstrap, run_batch
from refarch.runtime import Runtime

runtime = Runtime(application_name="bootstrap")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Create or resume a run ({"fresh": true} abandons one in progress); return {run_id, ranges} for the Map.

    {"generation": n} fills index generation n (a re-index: docs/reindex.md); default the active one.
    """
    range_size = int(event.get("range_size") or DEFAULT_TOPOLOGY.bootstrap_range_size)
    generation = int(event["generation"]) if event.get("generation") is not None else None
    return plan_bootstrap(runtime.db, range_size=range_size, fresh=bool(event.get("fresh")), generation=generation)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Enqueue one range on the bulk lane (a Map item: {run_id, range_no, ...})."""
    return run_batch(runtime.db, runtime.bulk_queue, run_id=int(event["run_id"]), range_no=int(event["range_no"]))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def finalize(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Mark the run complete; with an `error` (the catch path), record the failure instead."""
    run_id = int(event["run_id"])
    if event.get("error"):
        fail_bootstrap(runtime.db, run_id=run_id, error=str(event["error"]))
        return {"run_id": run_id, "status": "failed"}
    return finalize_bootstrap(runtime.db, run_id=run_id)
