"""Build web/openapi.yaml from the request and response models (`web.contract`): `make openapi`.

The models state every limit (pydantic's JSON Schema); this module adds what only HTTP has: the
paths, every status each route can answer, the 429's Retry-After and the session and CSRF scheme.
A test regenerates the document and insists nothing changed.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from refarch.products import NewProduct, ProductChange
from refarch.search.service import MAX_DEPTH, MAX_PAGE, MAX_RESULT_WINDOW, ListingRequest, SearchRequest
from refarch.settings import Settings
from refarch.source import Source, writes
from refarch.source import load as load_source
from web import contract
from web.app import MAX_REQUEST_BYTES

OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{model}"

DESCRIPTION = f"""\
Search over a Postgres product table kept in live sync with a vector index: hybrid (meaning and
words, fused by Reciprocal Rank Fusion), semantic or lexical.

Search and reads are public. Changes (POST, PUT, DELETE, including signing in and out) need the
session cookie `refarch_session` and its CSRF token in the `X-CSRF-Token` header: `GET /api/session`
sets the cookie and returns the token. When an edit password is configured, changes to products also
need a signed-in session (`POST /api/session`), which the same cookie then carries.

Every error is JSON `{{"error": message, "fields": {{field: message}}, "request_id": id}}`; every
response carries the same id in `X-Request-Id` (quote it when reporting a problem). Text fields cannot
hold NUL characters or lone surrogates (Postgres cannot store them); a field over its length limit is
a 400 naming it. Searches rank to a depth of {MAX_DEPTH} results; pages (search or listing) go no deeper than
page {MAX_PAGE}, and a listing counts its total up to {MAX_RESULT_WINDOW:,}. Searches (this API and the page
together), changes (products, sign-in) and costly reads (listing, sync status) are rate limited per
client address and per session; over a limit the answer is 429 with `Retry-After`. The sync status is
computed at most every few seconds per server process.

Generated from the pydantic models in web/contract.py (`make openapi`); do not edit by hand.
"""

RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": {"description": "The input is invalid; `error` and `fields` say why"},
    "SignInRequired": {
        "description": "An edit password is configured and this session is not signed in (or the password is wrong)"
    },
    "CsrfRefused": {
        "description": "The session cookie or the X-CSRF-Token header is missing, or the token does not match it"
    },
    "NotFound": {"description": "No such product (it may have been deleted), or no such dead letter"},
    "Conflict": {"description": "A product with this SKU already exists, or the version is stale"},
    "TooLarge": {
        "description": f"The request body is over {MAX_REQUEST_BYTES:,} bytes (a field over its length limit is a 400)"
    },
    "TooManyRequests": {
        "description": "Too many requests from this client address or session (searches, changes and costly "
        "reads have separate limits); `Retry-After` says in how many seconds to try again",
        "headers": {
            "Retry-After": {
                "description": "Seconds until the window of the counter that was exceeded ends",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    },
    "Unavailable": {
        "description": "The database is unavailable or timed out, or (sign-in) its attempt counter cannot be "
        "checked; try again shortly (a search whose embedding service or vector index is unavailable is answered "
        "lexically instead, saying so in fallback_reason)"
    },
}
STATUS_RESPONSE = {
    "400": "BadRequest",
    "401": "SignInRequired",
    "403": "CsrfRefused",
    "404": "NotFound",
    "409": "Conflict",
    "413": "TooLarge",
    "429": "TooManyRequests",
    "503": "Unavailable",
}
# Changes need the session cookie and its CSRF token (and, with an edit password, a signed-in session).
CHANGE: list[dict[str, list[str]]] = [{"session": [], "csrf": []}]


def document(source: Source | None = None) -> dict[str, Any]:
    """The whole OpenAPI document: of products, or of another source (REFARCH_SOURCE, refarch/source), whose
    rows, request bodies, routes and filters are made from its definition."""
    source = source or load_source(Settings().source)
    rows = RowApi.of(source)
    bodies: list[type[BaseModel]] = [
        rows.new,
        rows.change,
        contract.SignIn,
        contract.RedriveRequest,
        contract.DiscardRequest,
    ]
    answers: list[type[BaseModel]] = [
        contract.Error,
        contract.Conflict,
        rows.row,
        rows.page,
        contract.SyncStatuses,
        contract.SyncStatus,
        contract.Session,
        contract.Health,
        contract.DeadLetters,
        contract.Redrive,
        contract.Discarded,
    ]
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [(model, "validation") for model in bodies]
    modes += [(model, "serialization") for model in answers]
    _, schemas = models_json_schema(
        modes,
        ref_template=REF,
    )
    responses = {
        name: {**spec, "content": _json(contract.Conflict if name == "Conflict" else contract.Error)}
        for name, spec in RESPONSES.items()
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": rows.title, "version": "1.0", "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "tags": [{"name": name} for name in ("search", rows.tag, "sync", "session", "operations")],
        "paths": _paths(rows),
        "components": {
            "securitySchemes": {
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "refarch_session",
                    "description": "Set by GET /api/session; holds the CSRF token and, once signed in, the sign-in",
                },
                "csrf": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-CSRF-Token",
                    "description": "The csrf_token from GET /api/session (a new one after signing in or out)",
                },
            },
            "responses": responses,
            "schemas": schemas["$defs"],
        },
    }


@dataclass(frozen=True)
class RowApi:
    """What the document says about the source's rows: products' own models, or ones made from a definition."""

    title: str
    tag: str
    path: str
    new: type[BaseModel]
    change: type[BaseModel]
    row: type[BaseModel]
    page: type[BaseModel]
    filters: list[dict[str, Any]]

    @classmethod
    def of(cls, source: Source) -> RowApi:
        if source.is_builtin_products:
            return cls("Product search API", "products", "/api/products", NewProduct, ProductChange,
                       contract.Product, contract.SearchPage, [])  # fmt: skip
        new, change = writes.input_models(source)
        kinds = {"text": "string", "number": "number", "integer": "integer", "boolean": "boolean"}
        filters = [
            {"name": c.name, "in": "query", "required": False, "description": f"Only rows whose {c.title} is this",
             "schema": {"type": kinds.get(c.type, "string")}}
            for c in source.columns if c.filter
        ]  # fmt: skip
        return cls(f"{source.name.capitalize()} search API", source.name, f"/api/{source.name}", new, change,
                   contract.row_model(source), contract.search_page_model(source), filters)  # fmt: skip


def _paths(rows: RowApi) -> dict[str, Any]:
    product_id = {
        "name": "product_id",
        "in": "path",
        "required": True,
        "schema": _schema_of(contract.ProductId),
    }
    paths: dict[str, Any] = {
        "/api/search": {
            "get": _operation(
                "search",
                "Products ranked for q, hybrid by default (empty q lists products by id)",
                parameters=_query_parameters(SearchRequest) + rows.filters,
                ok=("200", "One page of results, best first", rows.page),
                errors="400 429 503",
                description="When the embedding service or the vector index (Pinecone) is unavailable, a hybrid or "
                "semantic search answers from lexical search alone: `mode` is then `lexical` and `fallback_reason` "
                "says why.",
            )
        },
        "/api/products": {
            "get": _operation(
                "products",
                "Products by id, a page at a time",
                parameters=_query_parameters(ListingRequest),
                ok=("200", "One page of products (total is the number matching the filters)", rows.page),
                errors="400 429 503",
            ),
            "post": _operation(
                "products",
                "Add a product (pending until indexed)",
                body=rows.new,
                ok=("201", "Created; Location names the new product", rows.row),
                errors="400 401 403 409 413 429 503",
                ok_headers={"Location": {"required": True, "schema": {"type": "string"}}},
                security=CHANGE,
            ),
        },
        "/api/products/{product_id}": {
            "parameters": [product_id],
            "get": _operation(
                "products",
                "One product with its sync state",
                ok=("200", "The product", rows.row),
                errors="404 503",
            ),
            "put": _operation(
                "products",
                "Change some fields; send the version you saw (optimistic locking)",
                body=rows.change,
                ok=("200", "The saved product (sync pending when anything embedded changed)", rows.row),
                errors="400 401 403 404 409 413 429 503",
                security=CHANGE,
            ),
            "delete": _operation(
                "products",
                "Delete a product (its vector is removed by the sync pipeline)",
                parameters=_query_parameters(contract.DeleteQuery),
                ok=("204", "Deleted", None),
                errors="400 401 403 404 409 429 503",
                security=CHANGE,
            ),
        },
        "/api/sync/statuses": {
            "get": _operation(
                "sync",
                "Sync state of some products (what the page polls while rows are pending)",
                parameters=_query_parameters(contract.SyncStatusesQuery),
                ok=(
                    "200",
                    "States of the products that exist; deleted ones are listed as missing",
                    contract.SyncStatuses,
                ),
                errors="400 429 503",
            )
        },
        "/api/sync/status": {
            "get": _operation(
                "sync",
                "Totals, outbox backlog, oldest pending change, queue and DLQ depth",
                ok=(
                    "200",
                    "System sync status (queue fields are null when SQS cannot answer; at most a few seconds old)",
                    contract.SyncStatus,
                ),
                errors="429 503",
            )
        },
        "/api/dead-letters": {
            "get": _operation(
                "sync",
                "Dead-lettered sync messages of each lane, with the reason each failed (editors)",
                parameters=_query_parameters(contract.DeadLettersQuery),
                ok=("200", "Each lane's dead letters, oldest first; they stay in the queue", contract.DeadLetters),
                errors="400 401 503",
                description="SQS has no peek: each message is received and made visible again at once, which adds "
                "one to its receive count. The reason is the ledger's last error of each failed product the message "
                "names, or why Emu cannot read the message.",
            )
        },
        "/api/dead-letters/redrive": {
            "post": _operation(
                "sync",
                "Send the dead letters back to their lane's queue, for Emu to try again (fix the cause first)",
                body=contract.RedriveRequest,
                ok=("200", "What each lane's redrive did", contract.Redrive),
                errors="400 401 403 429 503",
                security=CHANGE,
            )
        },
        "/api/dead-letters/discard": {
            "post": _operation(
                "sync",
                "Delete dead letters; their products stay failed, their last_error saying why",
                body=contract.DiscardRequest,
                ok=("200", "The messages deleted, the products marked failed, the ids not found", contract.Discarded),
                errors="400 401 403 404 429 503",
                security=CHANGE,
            )
        },
        "/api/session": {
            "get": _operation(
                "session",
                "Whether editing needs a password, whether this session may edit, and its CSRF token",
                ok=("200", "Session state (sets the session cookie)", contract.Session),
                errors="503",
            ),
            "post": _operation(
                "session",
                "Sign in with the edit password (without one configured, editing is open and this just answers)",
                body=contract.SignIn,
                ok=("200", "Signed in; use the new CSRF token from now on", contract.Session),
                errors="400 401 403 413 429 503",
                security=CHANGE,
            ),
            "delete": _operation(
                "session",
                "Sign out",
                ok=(
                    "200",
                    "Signed out everywhere (a copy of the cookie is signed out too); a new CSRF token",
                    contract.Session,
                ),
                errors="403 503",
                security=CHANGE,
            ),
        },
        "/api/openapi.yaml": {
            "get": {
                "tags": ["operations"],
                "summary": "This description",
                "responses": {
                    "200": {
                        "description": "This OpenAPI 3.1 document, as YAML",
                        "content": {
                            "application/yaml": {"schema": {"type": "object", "required": ["openapi", "paths"]}}
                        },
                    }
                },
            }
        },
        "/healthz": {
            "get": _operation(
                "operations",
                "Health check for the load balancer (the database answers)",
                ok=("200", "Healthy", contract.Health),
                errors="503",
            )
        },
    }
    if rows.path == "/api/products":
        return paths
    # Another source: the same operations under its own name, on the rows its definition describes.
    paths[rows.path] = paths.pop("/api/products")
    paths[f"{rows.path}/{{product_id}}"] = paths.pop("/api/products/{product_id}")
    for operation in (*paths[rows.path].values(), *paths[f"{rows.path}/{{product_id}}"].values()):
        if isinstance(operation, dict) and "tags" in operation:
            operation["tags"] = [rows.tag]
    paths[rows.path]["get"]["parameters"] = paths[rows.path]["get"]["parameters"] + rows.filters
    return paths


def _operation(
    tag: str,
    summary: str,
    *,
    ok: tuple[str, str, type[BaseModel] | None],
    errors: str,
    parameters: list[dict[str, Any]] | None = None,
    body: type[BaseModel] | None = None,
    ok_headers: dict[str, Any] | None = None,
    description: str | None = None,
    security: list[dict[str, list[str]]] | None = None,
) -> dict[str, Any]:
    status, what, model = ok
    answer: dict[str, Any] = {"description": what}
    if ok_headers:
        answer["headers"] = ok_headers
    if model is not None:
        answer["content"] = _json(model)
    operation: dict[str, Any] = {"tags": [tag], "summary": summary}
    if description:
        operation["description"] = description
    if security:
        operation["security"] = security
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    operation["responses"] = {status: answer} | {
        code: {"$ref": f"#/components/responses/{STATUS_RESPONSE[code]}"} for code in errors.split()
    }
    return operation


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One query parameter per field: its alias as the name, its schema without the null an absent value takes."""
    schema = model.model_json_schema(ref_template=REF)
    parameters = []
    for name, field_schema in schema["properties"].items():
        field_schema = _not_null(copy.deepcopy(field_schema))
        field_schema.pop("title", None)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in schema.get("required", [])}
        if "description" in field_schema:
            parameter["description"] = field_schema.pop("description")
        parameter["schema"] = field_schema
        if field_schema.get("type") == "array":
            parameter |= {"style": "form", "explode": False}  # ids=1,2,3
        parameters.append(parameter)
    return parameters


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or has a value: drop the null branch of `X | None`."""
    branches = [branch for branch in schema.get("anyOf", []) if branch != {"type": "null"}]
    if len(branches) == 1 and len(schema["anyOf"]) == 2:
        del schema["anyOf"]
        schema = {**branches[0], **schema}
    if schema.get("default", "") is None:
        del schema["default"]
    return schema


def _schema_of(annotation: Any) -> dict[str, Any]:
    from pydantic import TypeAdapter

    return TypeAdapter(annotation).json_schema()


def render() -> str:
    """The document as YAML."""
    import yaml  # a dev dependency: the app serves the checked-in file

    class Dumper(yaml.SafeDumper):
        """Multi-line text as YAML blocks, so the document reads like prose."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    Dumper.ignore_aliases = lambda self, data: True  # type: ignore[method-assign]  # no &id001 anchors
    return yaml.dump(document(), Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
