"""Every error is JSON {"error": message, "fields": {field: message}, "request_id": id}; bad input is a 4xx,
never a 500.

Every response carries X-Request-Id, and every error logged here names the same id: a person quoting
the id from an error lets an operator find the log line. What went wrong inside (a database rule's
text, a configuration problem) goes to the log, never to an anonymous caller: it would tell an
attacker about the schema and the deployment. A signed-in editor is told the database's reason for
refusing their own values.
"""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pinecone
import psycopg2
import psycopg2.errors
from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from refarch.bedrock import BedrockServiceError
from refarch.observability import logger
from refarch.products import ProductInputError, ProductNotFoundError, StaleVersionError
from refarch.search.service import SearchInputError
from refarch.settings import ConfigurationError
from web.db import get_runtime

REQUEST_ID_HEADER = "X-Request-Id"


def request_id() -> str:
    """This request's id (made on first use; never taken from the client, so a log line cannot be forged)."""
    if "request_id" not in g:
        g.request_id = uuid.uuid4().hex
    return str(g.request_id)


def _tag_response(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = request_id()
    return response


def _editor_signed_in() -> bool:
    """True when a signed-in editor made the request (imported late: web.auth imports this module)."""
    from web.auth import signed_in

    try:
        return signed_in()
    except psycopg2.Error:  # the sign-in cannot be checked while the database is down: not signed in
        return False


class ApiError(Exception):
    """An error with the HTTP status and the message the client should see."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}
        self.extra = extra


def error_response(status: int, message: str, fields: dict[str, str] | None = None, **extra: Any) -> Response:
    """The one error shape."""
    response = jsonify({"error": message, "fields": fields or {}, **extra, "request_id": request_id()})
    response.status_code = status
    return response


def _api_error(err: ApiError) -> Response:
    return error_response(err.status, err.message, err.fields, **err.extra)


def _http_error(err: HTTPException) -> Response:
    response = error_response(err.code or 500, err.description or err.name)
    # Keep headers such as Allow (405) that tell the client what would work.
    for name, value in err.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _search_input(err: SearchInputError) -> Response:
    return error_response(400, str(err))


def _product_input(err: ProductInputError) -> Response:
    # A field over its length limit is bad input like any other (a 400 naming it); 413 is kept for a
    # body over MAX_CONTENT_LENGTH, which werkzeug refuses before it is read.
    return error_response(400, "some fields are invalid", err.fields)


def _product_not_found(err: ProductNotFoundError) -> Response:
    return error_response(404, str(err))


def _stale_version(err: StaleVersionError) -> Response:
    return error_response(409, f"{err}; reload the product and apply your change again")


def _unique_violation(err: psycopg2.errors.UniqueViolation) -> Response:
    source = get_runtime().search.source
    if source.is_builtin_products:  # the only unique column people write there is the SKU
        return error_response(
            409, "a product with this SKU already exists", {"sku": "is already used by another product"}
        )
    # Another source's table has unique columns of its own; Postgres names them only in its detail text.
    logger.warning("database refused a duplicate", extra={"request_id": request_id(), "error": str(err).strip()})
    return error_response(409, f"another {source.name} row already has one of these values; request id {request_id()}")


def _refused_value(err: psycopg2.Error) -> Response:
    """A value the table refuses that the definition's checks let through (a NOT NULL column the definition
    does not mark required, a shorter varchar, a number out of the column's range): the client's input, a 400
    naming the column when Postgres does."""
    logger.warning(
        "database refused a value",
        extra={"request_id": request_id(), "column": err.diag.column_name, "error": str(err).strip()},
    )
    column = err.diag.column_name
    fields = {column: "is refused by the table (a rule the checks before it do not know)"} if column else None
    message = "the database refused a value (a rule the checks before it do not know)"
    if _editor_signed_in():
        message = f"{message}: {err.diag.message_primary}"
    return error_response(400, f"{message}; request id {request_id()}", fields)


def _check_violation(err: psycopg2.errors.CheckViolation) -> Response:
    # Validation runs first, so this is a rule the validation does not know about yet: still the client's input.
    logger.warning(
        "database refused values",
        extra={"request_id": request_id(), "constraint": err.diag.constraint_name, "error": str(err).strip()},
    )
    message = "the database refused the values (a rule the checks before it do not know)"
    if _editor_signed_in():  # their own values: the rule's wording helps them fix the edit
        message = f"{message}: {err.diag.message_primary}"
    return error_response(400, f"{message}; request id {request_id()}")


def _database_unavailable(err: psycopg2.Error) -> Response:
    logger.warning("database unavailable", extra={"request_id": request_id(), "error": str(err).strip()})
    return error_response(503, "the database is unavailable; try again shortly")


# What the search providers' SDKs raise once their own retries are spent: the service is down, slow
# (timeouts), throttling us (429) or refusing our key: not the client's fault, and usually passing.
EMBEDDING_SERVICE_ERRORS: tuple[type[Exception], ...] = (openai.APIError, BedrockServiceError)
VECTOR_INDEX_ERRORS = (pinecone.PineconeError,)
SEARCH_PROVIDER_ERRORS = EMBEDDING_SERVICE_ERRORS + VECTOR_INDEX_ERRORS


def search_provider_message(err: Exception) -> str:
    """What a person is told when a search provider failed (logged with the provider's own words)."""
    service = "embedding service" if isinstance(err, EMBEDDING_SERVICE_ERRORS) else "vector index"
    logger.warning(
        "search provider unavailable",
        extra={"request_id": request_id(), "service": service, "error": f"{type(err).__name__}: {err}"},
    )
    return f"the {service} is unavailable (it failed, timed out or refused the request); try again shortly"


def _search_provider_unavailable(err: Exception) -> Response:
    return error_response(503, search_provider_message(err))


def _not_configured(err: ConfigurationError) -> Response:
    logger.error("not configured", extra={"request_id": request_id(), "error": str(err)})
    message = "the service is not fully configured"
    if _editor_signed_in():
        message = f"{message}: {err}"
    return error_response(503, f"{message}; request id {request_id()} (logged)")


def _unexpected(err: Exception) -> Response:
    logger.exception("unexpected error", extra={"request_id": request_id()})
    return error_response(500, f"internal error; it has been logged with request id {request_id()}")


def init_app(app: Flask) -> None:
    """Register the handlers (the most specific class wins) and the request id on every response."""
    app.after_request(_tag_response)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(SearchInputError, _search_input)
    app.register_error_handler(ProductInputError, _product_input)
    app.register_error_handler(StaleVersionError, _stale_version)
    app.register_error_handler(ProductNotFoundError, _product_not_found)
    app.register_error_handler(psycopg2.errors.UniqueViolation, _unique_violation)
    app.register_error_handler(psycopg2.errors.CheckViolation, _check_violation)
    # Any other integrity rule (NOT NULL, a foreign key) and any value of the wrong shape for its column.
    app.register_error_handler(psycopg2.IntegrityError, _refused_value)
    app.register_error_handler(psycopg2.DataError, _refused_value)
    app.register_error_handler(psycopg2.OperationalError, _database_unavailable)
    app.register_error_handler(psycopg2.InterfaceError, _database_unavailable)
    for provider_error in SEARCH_PROVIDER_ERRORS:
        app.register_error_handler(provider_error, _search_provider_unavailable)
    app.register_error_handler(ConfigurationError, _not_configured)
    app.register_error_handler(Exception, _unexpected)
