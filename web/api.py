"""The JSON API (the page uses it too): search, products, sync status, health. Described in openapi.yaml."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
from flask import Blueprint, Response, current_app, jsonify, request, send_from_directory, url_for

from refarch import products, status
from refarch.observability import logger
from refarch.products import MAX_ID, Product, ProductNotFoundError, StaleVersionError
from refarch.search.service import ListingRequest, SearchPage, SearchRequest
from refarch.serving import STATUS_BUDGET, StatusBudget
from refarch.source import Source, records, writes
from refarch.source.records import Record
from web import contract
from web.auth import can_edit, editor_required
from web.contract import DeleteQuery, SyncStatusesQuery, request_json, respond
from web.db import get_db, get_runtime
from web.errors import ApiError, error_response

bp = Blueprint("api", __name__)
F = TypeVar("F", bound=Callable[..., Any])


def visible_sync(sync: dict[str, Any] | None) -> dict[str, Any]:
    """A sync state as this session may see it: why indexing failed only for people who may edit."""
    sync = dict(sync or {})
    # The reason can name internals (provider messages); visitors see just "failed".
    if "last_error" in sync and not can_edit():
        sync["last_error"] = None
    return sync


def product_body(product: Product, sync: dict[str, Any] | None) -> dict[str, Any]:
    """A product as the API returns it: its fields plus its sync state."""
    return {**product.as_dict(), "sync": visible_sync(sync)}


def _search_body(page: SearchPage) -> dict[str, Any]:
    body = page.as_dict()
    for result in body["results"]:
        result["sync"] = visible_sync(result["sync"])
    return body


def json_object() -> dict[str, Any]:
    """The request's JSON object; ApiError 400 for anything else."""
    body = request_json()
    if not isinstance(body, dict):
        raise ApiError(400, "send a JSON object (Content-Type: application/json)")
    return body


def _existing(conn: Any, product_id: int) -> Product:
    product = products.get(conn, product_id) if product_id <= MAX_ID else None
    if product is None:
        raise ProductNotFoundError(product_id)
    return product


@bp.get("/api/search")
def search() -> Response:
    """Ranked products for ?q= (empty: products by id), with filters and pagination."""
    asked = SearchRequest.checked(request.args)
    service = get_runtime().search
    page = service.answer(asked, filters=service.column_filters(request.args))
    return respond(contract.search_page_model(service.source), _search_body(page))


def products_only(view: F) -> F:
    """404 unless this app serves products: another source answers under its own name (/api/articles)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        source = get_runtime().search.source
        if not source.is_builtin_products:
            raise ApiError(404, f"this site serves {source.name}: see /api/{source.name}")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


@bp.get("/api/products")
@products_only
def list_products() -> Response:
    """Products by id, a page at a time, with the same filters as search."""
    return _listing()


def _listing() -> Response:
    listing = ListingRequest.checked(request.args)
    service = get_runtime().search
    page = service.answer(
        SearchRequest.model_validate(listing.model_dump()), filters=service.column_filters(request.args)
    )
    return respond(contract.search_page_model(service.source), _search_body(page))


@bp.post("/api/products")
@products_only
@editor_required
def create_product() -> Response:
    """Add a product; it is pending until Emu has indexed it."""
    fields = products.validate_new(json_object())
    with get_db() as conn:
        product = products.create(conn, fields)
        sync = products.sync_statuses(conn, [product.id]).get(product.id)
    location = url_for("api.get_product", product_id=product.id)
    response = respond(contract.Product, product_body(product, sync), 201)
    response.headers["Location"] = location
    return response


@bp.get("/api/products/<int:product_id>")
@products_only
def get_product(product_id: int) -> Response:
    """One product with its sync state."""
    with get_db() as conn:
        product = _existing(conn, product_id)
        sync = products.sync_statuses(conn, [product_id]).get(product_id)
    if sync is None:  # deleted between the two reads (each statement sees what was committed by then)
        raise ProductNotFoundError(product_id)
    return respond(contract.Product, product_body(product, sync))


@bp.put("/api/products/<int:product_id>")
@products_only
@editor_required
def update_product(product_id: int) -> Response:
    """Change the fields sent; `version` must be the one the client saw (else 409)."""
    expected, fields = products.validate_change(json_object())
    if product_id > MAX_ID:
        raise ProductNotFoundError(product_id)
    try:
        with get_db() as conn:
            product = products.update(conn, product_id, fields, expected_version=expected)
            sync = products.sync_statuses(conn, [product_id]).get(product_id)
    except StaleVersionError as err:
        with get_db() as conn:
            current = _existing(conn, product_id)
            sync = products.sync_statuses(conn, [product_id]).get(product_id)
        # The current state lets a client show what changed and re-apply its edit on top.
        raise ApiError(
            409,
            f"{err}; it is now at version {current.version}: reload it and apply your change again",
            current=product_body(current, sync),
        ) from err
    return respond(contract.Product, product_body(product, sync))


@bp.delete("/api/products/<int:product_id>")
@products_only
@editor_required
def delete_product(product_id: int) -> tuple[str, int]:
    """Delete a product (only if still at ?version=, when given); Emu then removes its vector."""
    expected = DeleteQuery.from_query(request.args).version
    if product_id > MAX_ID:
        raise ProductNotFoundError(product_id)
    with get_db() as conn:
        products.delete(conn, product_id, expected_version=expected)
    return "", 204


@bp.get("/api/sync/statuses")
def sync_statuses() -> Response:
    """Sync state of the given products (?ids=1,2,3): what the page polls while rows are pending."""
    ids = SyncStatusesQuery.from_query(request.args).ids
    with get_db() as conn:
        found = products.sync_statuses(conn, ids)
    return respond(
        contract.SyncStatuses,
        {
            "products": [{"id": pid, **visible_sync(found[pid])} for pid in ids if pid in found],
            "missing": [pid for pid in ids if pid not in found],
        },
    )


@bp.get("/api/sync/status")
def sync_status() -> Response:
    """Totals (indexed / pending / failed), outbox backlog, oldest pending change, both lanes' queues and DLQs,
    the active index generation and a re-index's progress (at most SYNC_STATUS_CACHE_SECONDS old)."""
    return respond(contract.SyncStatus, sync_summary())


# The status is the same for every caller, and costs whole-table aggregates, SQS calls and paid
# CloudWatch reads: each process computes it at most once per this many seconds (the page polls every 5).
SYNC_STATUS_CACHE_SECONDS = 2.0


class RecentValue:
    """A value computed at most once per `max_age` seconds in this process (callers in between share it)."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._computed: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def get(self, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The value, computed now if the last one is too old (one thread computes; the others wait for it)."""
        with self._lock:
            now = time.monotonic()
            if self._computed is None or now - self._computed[0] >= self.max_age:
                self._computed = (now, compute())
            return dict(self._computed[1])


def sync_summary() -> dict[str, Any]:
    """The sync status (the API's and the page header's), shared by this process's requests for a moment."""
    max_age = current_app.config.get("SYNC_STATUS_CACHE_SECONDS", SYNC_STATUS_CACHE_SECONDS)
    cache: RecentValue = current_app.extensions.setdefault("refarch_sync_status", RecentValue(max_age))
    return cache.get(_compute_sync_summary)


def _compute_sync_summary() -> dict[str, Any]:
    with get_db() as conn:
        result: dict[str, Any] = status.sync_counts(conn)
        result.update(status.generation_counts(conn))
    result.update(queue_state())
    return result


def queue_state() -> dict[str, Any]:
    """Each lane's queue depth, oldest message age and DLQ depth, plus totals, waiting at most
    STATUS_BUDGET.wait_seconds for SQS and CloudWatch: `queue` says "ok", "stale" (the last known
    state, SQS being slow or failing), "unreachable" (nothing known: the depths are null) or
    "not configured". Never an error."""
    runtime = get_runtime()
    queues = status.lane_queues(runtime.settings)
    if not queues:
        return {"queue_depth": None, "dlq_depth": None, "queue": "not configured"}
    reader: QueueStateReader = current_app.extensions.setdefault("refarch_queue_state", QueueStateReader())
    # The clients are built in the refresh's thread too: a slow client set-up is waited for no longer.
    return reader.read(lambda: status.queue_states(runtime.status_sqs, runtime.status_cloudwatch, queues), queues)


class QueueStateReader:
    """The queues' state for the status line, within the status budget however slow SQS is.

    A read starts a refresh in a background thread (unless one runs: one at a time per process) and
    waits for it at most `budget.wait_seconds`; when it is slower, or every lane failed, the read is
    answered with the last state that was read (`queue: "stale"`, up to `budget.stale_seconds` old)
    or with unknown depths (`queue: "unreachable"`). The refresh's own clients give up after the
    budget's short timeouts and one retry, so a hung refresh ends too, and no thread piles up behind it.
    """

    def __init__(self, budget: StatusBudget = STATUS_BUDGET, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._lock = threading.Lock()
        self._running: _Refresh | None = None
        self._known: tuple[float, dict[str, Any]] | None = None

    def read(
        self, compute: Callable[[], dict[str, Any]], queues: dict[str, tuple[str | None, str | None]]
    ) -> dict[str, Any]:
        """The queues' state (status.queue_states' fields plus `queue`), fresh if it came within the wait."""
        with self._lock:
            refresh = self._running
            if refresh is None:
                refresh = self._running = _Refresh()
                threading.Thread(target=self._refresh, args=(refresh, compute), name="queue-state", daemon=True).start()
        if refresh.done.wait(self.budget.wait_seconds) and _answered(refresh.state):
            return {**refresh.state, "queue": "ok"}
        with self._lock:
            known = self._known
        if known is not None and self._clock() - known[0] <= self.budget.stale_seconds:
            return {**known[1], "queue": "stale"}
        unknown = {f"{lane}_{key}": None for lane in queues for key in _LANE_FIELDS}
        return {**unknown, "queue_depth": None, "dlq_depth": None, "queue": "unreachable"}

    def _refresh(self, refresh: _Refresh, compute: Callable[[], dict[str, Any]]) -> None:
        started = self._clock()
        try:
            refresh.state = compute()
        except Exception as err:  # the status line must not fail with the queues (e.g. a client that cannot be built)
            logger.warning("queue state unavailable", extra={"error": f"{type(err).__name__}: {err}"})
        took = self._clock() - started
        if took > self.budget.wait_seconds:
            logger.info("queue state took longer than the status line waits for it", extra={"seconds": round(took, 3)})
        with self._lock:
            if _answered(refresh.state):
                self._known = (self._clock(), dict(refresh.state))
            self._running = None
        refresh.done.set()


# Each lane's fields in status.queue_states.
_LANE_FIELDS = ("queue_depth", "queue_age_seconds", "dlq_depth")


class _Refresh:
    """One refresh of the queues' state: its result (empty until it has one, or when it failed); set when done."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.state: dict[str, Any] = {}


def _answered(state: dict[str, Any]) -> bool:
    """Whether a refresh read any lane's depth (queue_states sums the lanes it could read; None when none)."""
    return state.get("queue_depth") is not None


@bp.get("/healthz")
def healthz() -> Response:
    """200 when the database answers, else 503 (the load balancer's health check).

    It asks on its health thread's kept connection (web/health_lane.py), not a new one per check: opening a
    connection starts a Postgres backend, which on a busy machine took /healthz past 100 ms.
    """
    try:
        _ping_database()
    except psycopg2.Error as err:
        logger.warning("health check failed", extra={"error": type(err).__name__})
        return error_response(503, "database unavailable")
    return respond(contract.Health, {"status": "ok"})


def _ping_database() -> None:
    """`SELECT 1` on the thread's kept connection; when the database dropped that connection (a restart, a
    failover), once more on a new one at once, so a stale connection never fails a health check by itself
    (each health thread keeps one: a check per thread would fail before the database is asked). A new
    connection that fails is the answer: the check does not wait for a second connect."""
    db = get_runtime().db
    kept = db.keeps_connection()
    try:
        with db.transaction() as conn:
            status.ping(conn)
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        if not kept:
            raise
        with db.transaction() as conn:  # the failed connection was closed: this one is new
            status.ping(conn)


@bp.get("/api/openapi.yaml")
def openapi() -> Response:
    """The OpenAPI description of this API: products' is the checked-in file; another source's is made from
    its definition (web.openapi.document), sent as JSON, which is YAML too (YAML 1.2 holds JSON)."""
    source = get_runtime().search.source
    if source.is_builtin_products:
        return send_from_directory(current_app.root_path, "openapi.yaml", mimetype="application/yaml")
    return current_app.response_class(_source_openapi(source), mimetype="application/yaml")


@functools.cache
def _source_openapi(source: Source) -> str:
    """Another source's OpenAPI document, made once per process."""
    from web import openapi as openapi_document

    return json.dumps(openapi_document.document(source), indent=1)


# --- another source's rows (refarch.source.writes): /api/<source name>[/<id>], registered by create_app ---


def row_body(record: Record, sync: dict[str, Any] | None) -> dict[str, Any]:
    """A row as the API returns it: id, key, its columns, version, and its sync state."""
    return {**record.as_dict(get_runtime().search.source), "sync": visible_sync(sync)}


def _row_response(record: Record, status_code: int = 200) -> Response:
    with get_db() as conn:
        sync = products.sync_statuses(conn, [record.id]).get(record.id)
    response: Response = jsonify(row_body(record, sync))
    response.status_code = status_code
    return response


def list_rows() -> Response:
    """Rows by id, a page at a time, with the same filters as search."""
    return _listing()


def get_row(row_id: int) -> Response:
    """One row with its sync state."""
    source = get_runtime().search.source
    with get_db() as conn:
        found = records.get_many(conn, source, [row_id]).get(row_id) if row_id <= MAX_ID else None
    if found is None:
        raise ApiError(404, f"{source.name} row {row_id} does not exist (it may have been deleted)")
    return _row_response(found)


@editor_required
def create_row() -> Response:
    """Add a row; it is pending until Emu has indexed it."""
    source = get_runtime().search.source
    fields = writes.validate_new(source, json_object())
    with get_db() as conn:
        created = writes.create(conn, source, fields)
    response = _row_response(created, 201)
    response.headers["Location"] = f"/api/{source.name}/{created.id}"
    return response


@editor_required
def update_row(row_id: int) -> Response:
    """Change the fields sent; `version` must be the one the client saw (else 409)."""
    source = get_runtime().search.source
    expected, fields = writes.validate_change(source, json_object())
    try:
        with get_db() as conn:
            changed = writes.update(conn, source, row_id, fields, expected_version=expected)
    except writes.RowNotFoundError as err:
        raise ApiError(404, str(err)) from err
    except writes.StaleRowError as err:
        raise ApiError(409, f"{err}; reload it and apply your change again") from err
    return _row_response(changed)


@editor_required
def delete_row(row_id: int) -> tuple[str, int]:
    """Delete a row (only if still at ?version=, when given); Emu then removes its vector."""
    source = get_runtime().search.source
    expected = DeleteQuery.from_query(request.args).version
    try:
        with get_db() as conn:
            writes.delete(conn, source, row_id, expected_version=expected)
    except writes.RowNotFoundError as err:
        raise ApiError(404, str(err)) from err
    except writes.StaleRowError as err:
        raise ApiError(409, f"{err}; reload it and apply your change again") from err
    return "", 204


def register_source_routes(app: Any, source: Source) -> None:
    """A source other than products answers under its own name: /api/articles, /api/articles/<id>."""
    base = f"/api/{source.name}"
    app.add_url_rule(base, "rows_list", list_rows, methods=["GET"])
    app.add_url_rule(base, "rows_create", create_row, methods=["POST"])
    app.add_url_rule(f"{base}/<int:row_id>", "rows_get", get_row, methods=["GET"])
    app.add_url_rule(f"{base}/<int:row_id>", "rows_update", update_row, methods=["PUT"])
    app.add_url_rule(f"{base}/<int:row_id>", "rows_delete", delete_row, methods=["DELETE"])
