"""The HTTP API's requests and responses, declared once: the handlers validate requests with these
models and answer through them (`respond`), and `web.openapi` builds the OpenAPI document from them.

Product and search requests are the runtime library's own models (`refarch.products.NewProduct`,
`ProductChange`, `refarch.search.service.SearchRequest`, `ListingRequest`): the CLI and the search service
check the same limits. What only the web API has lives here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from flask import Response, jsonify, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from refarch.input_errors import field_messages
from refarch.products import MAX_ID
from refarch.search.service import SearchMode
from refarch.serving import STATUS_BUDGET
from refarch.source import Source
from web.errors import ApiError

MAX_STATUS_IDS = 200

ProductId = Annotated[int, Field(ge=1, le=MAX_ID)]
_Request = TypeVar("_Request", bound="QueryRequest")


def present(args: Mapping[str, str]) -> dict[str, str]:
    """The query-string values that were given: an empty value counts as absent (as HTML forms send it)."""
    return {name: value for name, value in args.items() if value != ""}


class QueryRequest(BaseModel):
    """A request read from the query string (an empty value is a value: `version=` is not a version)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    MESSAGES: ClassVar[dict[tuple[str, str], str]] = {}

    @classmethod
    def from_query(cls: type[_Request], args: Mapping[str, str]) -> _Request:
        """The request, or ApiError 400 naming each bad parameter."""
        try:
            return cls.model_validate(dict(args.items()))
        except ValidationError as err:
            fields, _ = field_messages(err, cls.MESSAGES)
            message = "; ".join(f"{name} {text}" for name, text in fields.items())
            raise ApiError(400, message, fields) from None


def _comma_separated(value: Any) -> Any:
    return value.split(",") if isinstance(value, str) else value


class SyncStatusesQuery(QueryRequest):
    """GET /api/sync/statuses?ids=1,2,3."""

    ids: Annotated[
        list[ProductId],
        BeforeValidator(_comma_separated),
        Field(min_length=1, max_length=MAX_STATUS_IDS, description=f"Product ids (at most {MAX_STATUS_IDS})"),
    ]

    MESSAGES: ClassVar[dict[tuple[str, str], str]] = {
        ("ids", "missing"): "is required: a comma-separated list of product ids",
        ("ids", "too_long"): f"holds more than {MAX_STATUS_IDS} ids",
        ("ids", "int_parsing"): "must be whole numbers separated by commas",
        ("ids", "greater_than_equal"): "must be product ids (1 or more)",
        ("ids", "less_than_equal"): "must be product ids (a bigint)",
    }


class DeleteQuery(QueryRequest):
    """DELETE /api/products/{product_id}?version=."""

    version: (
        Annotated[int, Field(ge=1, le=MAX_ID, description="Only delete if the product is still at this version")] | None
    ) = None

    MESSAGES: ClassVar[dict[tuple[str, str], str]] = {
        ("version", "greater_than_equal"): "out of range",
        ("version", "less_than_equal"): "out of range",
    }


class SignIn(BaseModel):
    """POST /api/session."""

    password: Annotated[str, Field(json_schema_extra={"format": "password"})]


# Responses: what the handlers answer. `respond` checks a body against its model and serializes it
# with it, so an answer cannot hold a field the document does not declare (the contract test also
# checks every answer against the document).


class Answer(BaseModel):
    """A response body: every field declared (an undeclared one is a bug, found by the tests)."""

    model_config = ConfigDict(extra="forbid")


def request_json() -> Any:
    """The request's JSON body; None when it is not JSON, also when nested too deep to parse (the
    parser's RecursionError, which werkzeug does not turn into a 400 as it does a syntax error)."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def respond(model: type[Answer], body: Mapping[str, Any], status: int = 200) -> Response:
    """Answer with `body` as `model` serializes it (fields the handler did not set are left out)."""
    response = jsonify(model.model_validate(body).model_dump(mode="json", exclude_unset=True))
    response.status_code = status
    return response


class Error(Answer):
    """The one error shape, on every route."""

    error: str = Field(description="What went wrong, in words a person can act on")
    fields: dict[str, str] = Field(description="A message per request field that is wrong (may be empty)")
    request_id: str = Field(description="This request's id, as in the X-Request-Id header and the server's log")


class SyncState(Answer):
    """Whether the vector index holds a product's current version."""

    product_id: int
    status: Literal["indexed", "pending", "failed"]
    last_error: str | None = Field(
        description="Why indexing failed (status failed); null for sessions that may not edit"
    )
    version: int = Field(description="The product's current version")
    indexed_version: int | None = Field(description="The version the index holds")
    attempts: int | None
    indexed_at: datetime | None


class Product(Answer):
    """A product with its sync state."""

    id: int
    sku: str
    name: str
    description: str
    category: str
    price: str = Field(description="Decimal with two places, e.g. 19.99", examples=["19.99"])
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Bumped by the database on every real change")
    sync: SyncState


class Conflict(Error):
    """Someone else saved first (stale version; `current` is their version) or the SKU is taken."""

    current: Product | None = Field(default=None, description="The product as saved now (stale version only)")


class SearchResult(Product):
    """A product in a result page, with its score and the ranked lists it came from."""

    score: float | None = Field(
        description="Higher is better, comparable within one response only. semantic: cosine similarity; "
        "lexical: Postgres ts_rank_cd; hybrid: the sum of 1/(60 + rank) over the lists the product is in, "
        "plus 1 for an exact SKU match, or, for a result a rerank model reordered, its relevance (0 to 1). "
        "Null when listing."
    )
    ranks: dict[str, Annotated[int, Field(ge=1)]] = Field(
        description="The lists the result came from (semantic, lexical, code: a SKU or model code that starts "
        "with the query however it is typed, sku: the exact SKU; rerank: its place after the rerank model "
        "reordered hybrid's top candidates, absent when no rerank happened) and its 1-based rank in each; "
        "empty when listing",
        examples=[{"semantic": 3, "lexical": 1}],
    )
    snippet: str | None = Field(
        default=None,
        description="For a long text indexed as several chunks: the chunk the vector index matched, from the "
        "row's current text (the part of the text the query found). Absent otherwise",
    )


class SearchPage(Answer):
    """One page of results, best first (or by id when listing)."""

    query: str
    mode: SearchMode = Field(description="The mode that ranked these results")
    requested_mode: SearchMode
    fallback_reason: str | None = Field(
        description="Why `mode` differs from `requested_mode` (the embedding service or the vector index is "
        "unavailable); else null"
    )
    did_you_mean: str | None = Field(
        description="When no word of the query matched, the query with its misspelled words corrected from the "
        "closest product names; the lexical results are those of the corrected query. Else null"
    )
    page: int
    k: int
    total: int | None = Field(
        description="Set when listing: the matching products, counted no further than the deepest page reaches "
        "(see total_capped); null for a search"
    )
    total_capped: bool = Field(
        description="True when more products match than `total` (the count stops at the deepest reachable result)"
    )
    has_more: bool
    results: list[SearchResult]


# How a source's column travels in JSON (refarch.source.records: numbers as exact decimal strings).
_JSON_TYPES: dict[str, Any] = {"text": str, "number": str, "integer": int, "boolean": bool, "timestamp": datetime}


@functools.cache
def row_model(source: Source) -> type[Answer]:
    """A row of another source as the API returns it: its id, its key column (as text), every column the
    definition names (null where the table holds none), its version and its sync state."""
    columns: dict[str, Any] = {
        column.name: (_JSON_TYPES[column.type] | None, Field(default=None, description=column.title))
        for column in source.columns
    }
    row: type[Answer] = create_model(  # type: ignore[call-overload]
        f"{source.name.capitalize()}Row",
        __base__=Answer,
        id=(int, ...),
        **{source.key: (str, Field(description=f"The table's key ({source.key_type})"))},
        **columns,
        version=(int, Field(description="Bumped on every change to an embedded or metadata column")),
        sync=(SyncState, ...),
    )
    return row


@functools.cache
def search_page_model(source: Source) -> type[SearchPage]:
    """The result page of this source: products' own models, or ones made from the definition's columns."""
    if source.is_builtin_products:
        return SearchPage
    result: Any = create_model(
        f"{source.name.capitalize()}Result",
        __base__=row_model(source),
        score=(float | None, Field(default=None, description=SearchResult.model_fields["score"].description)),
        ranks=(dict[str, int], Field(description=SearchResult.model_fields["ranks"].description)),
        snippet=(str | None, Field(default=None, description=SearchResult.model_fields["snippet"].description)),
    )
    results: Any = list.__class_getitem__(result)  # list[result], of a model made at run time
    return create_model(f"{source.name.capitalize()}SearchPage", __base__=SearchPage, results=(results, ...))


class SyncStatusItem(SyncState):
    """One product's sync state, with its id."""

    id: int


class SyncStatuses(Answer):
    """States of the products that exist; deleted ones are listed as missing."""

    products: list[SyncStatusItem]
    missing: list[int]


class SyncStatus(Answer):
    """Totals, outbox backlog, oldest pending change; each lane's queue depth, oldest message age and DLQ depth;
    the active index generation and, while a re-index runs, the building generation's progress."""

    products: int
    indexed: int
    pending: int = Field(description="Rows newer than the index, and deletions not yet applied")
    pending_deletes: int
    failed: int
    outbox_backlog: int = Field(description="Changes not yet handed to the queue")
    oldest_pending_seconds: float = Field(description="Age of the oldest change not yet in the index")
    queue_depth: int | None = Field(
        description="Messages waiting or in flight, both lanes; null when SQS cannot answer"
    )
    dlq_depth: int | None = Field(description="Messages in both lanes' dead-letter queues")
    live_queue_depth: int | None = Field(default=None, description="Live lane (FIFO) messages waiting or in flight")
    live_queue_age_seconds: float | None = Field(
        default=None, description="Age of the live lane's oldest message (CloudWatch, per minute; 0 when empty)"
    )
    live_dlq_depth: int | None = None
    bulk_queue_depth: int | None = Field(
        default=None, description="Bulk lane messages (up to 100 products each) waiting or in flight"
    )
    bulk_queue_age_seconds: float | None = Field(
        default=None, description="Age of the bulk lane's oldest message (CloudWatch, per minute; 0 when empty)"
    )
    bulk_dlq_depth: int | None = None
    queue: Literal["ok", "stale", "unreachable", "not configured"] = Field(
        description="Where the queue fields come from: SQS now (ok); the last state read, SQS being slow or failing"
        f" (stale: at most {STATUS_BUDGET.stale_seconds:g} s old); nowhere (unreachable: they are null); no queues"
        " (not configured)"
    )
    generation: int = Field(description="The active index generation (the one search reads; docs/reindex.md)")
    generation_model: str | None = Field(description="Its embedder, e.g. local:all-MiniLM-L6-v2:384")
    building_generation: int | None = Field(description="The generation a re-index is filling (null when none)")
    building_model: str | None = Field(default=None, description="Its embedder (only while a re-index runs)")
    building_rows: int | None = Field(default=None, description="Rows it must hold (the table's)")
    building_indexed: int | None = Field(default=None, description="Rows it holds at their current version")
    building_failed: int | None = Field(default=None, description="Rows whose last attempt failed in it")
    building_rate_per_second: float | None = Field(
        default=None, description="Rows indexed into it per second over the last 30 s"
    )
    building_eta_seconds: float | None = Field(
        default=None, description="Time left at that rate (null when the rate is 0)"
    )


class Session(Answer):
    """Whether editing needs a password, whether this session may edit, and its CSRF token."""

    password_required: bool
    signed_in: bool
    can_edit: bool
    csrf_token: str


class Health(Answer):
    """The database answers."""

    status: Literal["ok"]


# Dead letters (web/dead_letters.py, docs/operations.md): signed-in editors list, redrive and discard them.

MAX_DISCARD_IDS = 100
LaneChoice = Literal["live", "bulk"]


class DeadLettersQuery(QueryRequest):
    """GET /api/dead-letters?lane=."""

    lane: LaneChoice | None = Field(default=None, description="One lane's dead-letter queue (default: both)")

    MESSAGES: ClassVar[dict[tuple[str, str], str]] = {("lane", "literal_error"): "must be live or bulk"}


class RedriveRequest(BaseModel):
    """POST /api/dead-letters/redrive."""

    model_config = ConfigDict(extra="forbid")

    lane: LaneChoice | None = Field(default=None, description="One lane (default: both)")


class DiscardRequest(BaseModel):
    """POST /api/dead-letters/discard."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=MAX_DISCARD_IDS, description="Message ids, as GET /api/dead-letters lists them"
    )
    lane: LaneChoice | None = Field(default=None, description="Look in one lane only (default: both)")


class DeadLetter(Answer):
    """A message Emu gave up on (after maxReceiveCount receives), and why."""

    id: str = Field(description="The SQS message id (what discard takes)")
    lane: LaneChoice
    products: list[int] = Field(description="The products it names (empty when it cannot be read)")
    reason: str = Field(
        description="Why it failed: the ledger's last error of each failed product, or why the message cannot be read"
    )
    malformed: bool = Field(description="Emu could not read the message (no products)")
    receive_count: int = Field(description="Times it was received (SQS ApproximateReceiveCount; listing adds one)")
    sent_at: datetime
    age_seconds: float


class DeadLetterLane(Answer):
    """One lane's dead-letter queue: how many messages it holds, and those read (up to 200)."""

    lane: LaneChoice
    depth: int
    messages: list[DeadLetter]


class DeadLetters(Answer):
    """Each configured lane's dead letters, oldest first."""

    lanes: list[DeadLetterLane]


class RedriveLane(Answer):
    """What a redrive did on one lane."""

    lane: LaneChoice
    method: Literal["move-task", "moved", "nothing"] = Field(
        description="move-task: SQS's own message-move task started (AWS); moved: sent back one by one (local SQS)"
    )
    messages: int = Field(description="Messages moved (move-task: the approximate number the task moves)")
    task_handle: str | None


class Redrive(Answer):
    """Each lane's redrive."""

    lanes: list[RedriveLane]


class Discarded(Answer):
    """The messages deleted, the products left marked failed with the reason, and the ids not found."""

    discarded: list[DeadLetter]
    marked_failed: list[int] = Field(description="Products now failed, their last_error saying why")
    not_found: list[str]
