"""Dead letters for signed-in editors (the page's status area): list with reasons, redrive, discard.

A thin layer over `refarch.lanes.dead_letters`, which `refarch dlq` uses too. Editors only: a
reason can quote a provider's message, and a redrive or a discard changes the system.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from flask import Blueprint, Response, request
from pydantic import BaseModel, ValidationError

from refarch.input_errors import field_messages
from refarch.lanes.dead_letters import DeadLetterError, DeadLetters
from refarch.observability import logger
from web import contract
from web.auth import editor_required
from web.contract import DeadLettersQuery, DiscardRequest, RedriveRequest, request_json, respond
from web.db import get_runtime
from web.errors import ApiError, error_response

bp = Blueprint("dead_letters", __name__)


def dead_letters() -> DeadLetters:
    """Both lanes' dead letters, with this process's SQS client and database."""
    runtime = get_runtime()
    return DeadLetters.for_settings(runtime.sqs, runtime.db, runtime.settings)


def _body(model: type[BaseModel]) -> Any:
    """The request's JSON body as `model`; ApiError 400 naming each wrong field."""
    try:
        return model.model_validate(request_json())
    except ValidationError as err:
        fields, _ = field_messages(err)
        raise ApiError(400, "; ".join(f"{k} {v}" for k, v in fields.items()) or "send a JSON object", fields) from None


@bp.get("/api/dead-letters")
@editor_required
def list_dead_letters() -> Response:
    """Each lane's dead letters with the reason each failed (they stay in the DLQ)."""
    lane = DeadLettersQuery.from_query(request.args).lane
    listings = dead_letters().listings(lane)
    lanes = [{"lane": x.lane, "depth": x.depth, "messages": [m.as_dict() for m in x.letters]} for x in listings]
    return respond(contract.DeadLetters, {"lanes": lanes})


@bp.post("/api/dead-letters/redrive")
@editor_required
def redrive() -> Response:
    """Send dead letters back to their lane's queue (after the cause is fixed)."""
    lane = _body(RedriveRequest).lane
    results = dead_letters().redrive(lane)
    logger.info("dead letters redriven", extra={"lanes": [r.as_dict() for r in results]})
    return respond(contract.Redrive, {"lanes": [r.as_dict() for r in results]})


@bp.post("/api/dead-letters/discard")
@editor_required
def discard() -> Response:
    """Delete these dead letters; their products stay failed with the reason. 404 when none was found."""
    asked = _body(DiscardRequest)
    result = dead_letters().discard(asked.ids, asked.lane)
    if not result.discarded:
        raise ApiError(404, f"not in any dead-letter queue: {', '.join(result.not_found)}")
    logger.info("dead letters discarded", extra={"ids": [m.id for m in result.discarded]})
    return respond(contract.Discarded, result.as_dict())


@bp.errorhandler(DeadLetterError)
def _not_configured(err: DeadLetterError) -> Response:
    return error_response(503, str(err))


@bp.errorhandler(BotoCoreError)
@bp.errorhandler(ClientError)
def _queue_unavailable(err: Exception) -> Response:
    logger.warning("dead-letter queue unavailable", extra={"error": f"{type(err).__name__}: {err}"})
    return error_response(503, "the queue service is unavailable or refused the request; try again shortly")
