"""Re-index steps (docs/reindex.md): the Reindex state machine's start/progress/switch, and by hand rollback,
abort and gc (the daily schedule runs gc).

It logs in as the database admin, like the migrate custom resource: creating a generation
creates its pgvector table, which the runtime roles may not (they have no CREATE).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal, assert_never

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from refarch.generations import EmbedderSpec, reindex, reindex_flow
from refarch.observability import logger, tracer
from refarch.runtime import Runtime

runtime = Runtime(application_name="reindex")


class ReindexRequest(BaseModel):
    """The event: which step, and its arguments."""

    action: Literal["start", "progress", "switch", "rollback", "abort", "gc"]
    # progress, switch: the generation the caller builds (default: whichever builds).
    generation: int | None = None
    # gc: how long a retired generation is kept for a rollback.
    grace_hours: float = Field(default=reindex.DEFAULT_GRACE / timedelta(hours=1), ge=0)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run one step; a refusal raises GenerationError (IncompleteGenerationError: the switch must wait)."""
    request = ReindexRequest.model_validate(event)
    targets = runtime.targets
    match request.action:
        case "start":
            generation, needed = reindex_flow.ensure_building(targets, EmbedderSpec.from_settings(runtime.settings))
            return {"generation": generation.id, "needed": needed}
        case "progress":
            lanes = (runtime.queue, runtime.bulk_queue)
            return reindex_flow.building_progress(targets, request.generation, lanes=lanes)
        case "switch":
            previous, new = reindex_flow.switch_to(targets, request.generation)
            return {"previous": previous.id, "active": new.id}
        case "rollback":
            previous, restored = reindex.rollback(targets)
            return {"previous": previous.id, "active": restored.id}
        case "abort":
            return {"abandoned": reindex.abort(targets).id}
        case "gc":
            return {"dropped": reindex.collect_garbage(targets, timedelta(hours=request.grace_hours))}
        case _:
            assert_never(request.action)
