"""Local HTTP stand-ins for the two paid APIs: OpenAI embeddings and a Pinecone index.

The real `openai` and `pinecone` SDKs talk to these over HTTP exactly as they talk to the
services (point OPENAI_BASE_URL at `OpenAIStandIn.base_url`, PINECONE_HOST at
`PineconeStandIn.url`); nothing in the SDKs is patched. Each one checks the shape of every
request, counts what it answered, and injects faults on demand (429 with Retry-After, 500, or
a hang past the client's timeout), so tests, the demo and the chaos harness exercise the
failure paths without an account or a network.

From a shell: `python -m refarch_local.standins openai --port 8081 --fault-rate 0.3`
or `python -m refarch_local.standins pinecone --port 8082 --dimension 384`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

FAULT_KINDS = ("rate_limit", "server_error", "timeout")
MAX_BODY_BYTES = 2 * 1024 * 1024


class ApiError(Exception):
    """An HTTP error answer: status code, a message for the caller, optional extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


@dataclass(frozen=True)
class Request:
    """One request as a route sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


Route = Callable[[Request], dict[str, Any]]


class StandInServer:
    """A JSON API on 127.0.0.1 in a background thread, with call counters and fault injection.

    Faults: `fail_next(kind, times)` scripts the next answers; `fault_rate` fails that share of
    the remaining requests at random (seeded), with a kind drawn from `fault_kinds`. Every
    answer can be delayed by up to `latency_seconds`, and `delay_next` slows chosen calls (a
    slow provider widens race windows).
    `received` keeps every authorised request (faulted ones too); `calls` counts answered ones.
    """

    name = "stand-in"

    def __init__(
        self,
        *,
        port: int = 0,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        retry_after_seconds: float = 1.0,
        hang_seconds: float = 30.0,
        latency_seconds: float = 0.0,
        seed: int | None = None,
    ) -> None:
        kinds = tuple(fault_kinds)
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"fault kinds must be some of {FAULT_KINDS}, got {kinds}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
        self.port = port
        self.fault_rate = fault_rate
        self.fault_kinds = kinds
        self.retry_after_seconds = retry_after_seconds
        self.hang_seconds = hang_seconds
        self.latency_seconds = latency_seconds
        self.requests = 0
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.received: deque[tuple[str, Request]] = deque(maxlen=1000)
        self.routes: dict[tuple[str, str], tuple[str, Route]] = {}
        self._scripted: deque[str] = deque()
        self._delays: deque[float] = deque()
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT (the port is chosen at start when 0 was asked for)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Listen and serve in a daemon thread; returns self."""
        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"{self.name}-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (hanging requests are released and dropped)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults and counters ---------------------------------------------------------------

    def fail_next(self, kind: str, times: int = 1) -> None:
        """Answer the next `times` requests with this fault (rate_limit, server_error or timeout)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose from {FAULT_KINDS}")
        with self._lock:
            self._scripted.extend([kind] * times)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Answer the next `times` requests only after `seconds` (a slow call, not a failure)."""
        with self._lock:
            self._delays.extend([seconds] * times)

    @property
    def delays_pending(self) -> int:
        """How many `delay_next` delays no request has taken yet."""
        with self._lock:
            return len(self._delays)

    def cancel_delays(self) -> None:
        """Drop the delays no request has taken yet."""
        with self._lock:
            self._delays.clear()

    def reset(self) -> None:
        """Forget counters, received requests and scripted faults."""
        with self._lock:
            self.requests = 0
            self.calls.clear()
            self.faults.clear()
            self.received.clear()
            self._scripted.clear()
            self._delays.clear()

    def _next_fault(self) -> str | None:
        with self._lock:
            if self._scripted:
                return self._scripted.popleft()
            if self.fault_rate and self._random.random() < self.fault_rate:
                return self._random.choice(self.fault_kinds)
            return None

    # -- what subclasses provide -----------------------------------------------------------

    def route_for(self, request: Request) -> tuple[str, Route] | None:
        """The (name, route) that serves this request, or None: by default the exact (method, path) key."""
        return self.routes.get((request.method, request.path))

    def authorize(self, request: Request) -> None:
        """Raise ApiError(401) unless the request carries valid credentials."""

    def error_body(self, error: ApiError) -> dict[str, Any]:
        """The API's error JSON."""
        return {"message": error.message}

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """Route one request: (status, JSON body or None to drop the connection, headers)."""
        with self._lock:
            self.requests += 1
        entry = self.route_for(request)
        try:
            if entry is None:
                raise ApiError(404, f"{self.name}: no route for {request.method} {request.path}")
            route_name, route = entry
            self.authorize(request)
            with self._lock:
                self.received.append((route_name, request))
                delay = self._random.uniform(0, self.latency_seconds) if self.latency_seconds else 0.0
                if self._delays:
                    delay += self._delays.popleft()
            if delay:
                self._stopping.wait(delay)
            fault = self._next_fault()
            if fault is not None:
                with self._lock:
                    self.faults[fault] += 1
                if fault == "timeout":
                    # Hold the request past the client's timeout, then drop it unanswered.
                    self._stopping.wait(self.hang_seconds)
                    return 0, None, {}
                if fault == "rate_limit":
                    raise ApiError(
                        429,
                        f"{self.name}: rate limit reached (injected)",
                        code="rate_limit_exceeded",
                        headers={"Retry-After": _seconds(self.retry_after_seconds)},
                    )
                raise ApiError(500, f"{self.name}: internal error (injected)", code="server_error")
            if isinstance(request.body, _BadJson):
                raise ApiError(400, f"request body is not valid JSON: {request.body.reason}")
            answer = route(request)
            with self._lock:
                self.calls[route_name] += 1
            return 200, answer, {}
        except ApiError as err:
            return err.status, self.error_body(err), err.headers


@dataclass(frozen=True)
class _BadJson:
    reason: str


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def _handler_for(stand_in: StandInServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms per answer.
        disable_nagle_algorithm = True
        server_version = stand_in.name

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            """Stay quiet: tests and the demo read counters, not access logs."""

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                # The body is left unread, so this connection cannot carry another request.
                self.close_connection = True
                too_large = f"request of {length} bytes exceeds the maximum of {MAX_BODY_BYTES} bytes"
                self._reply(413, stand_in.error_body(ApiError(413, too_large)), {})
                return
            raw = self.rfile.read(length) if length else b""
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError as err:
                    body = _BadJson(str(err))
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            status, payload, headers = stand_in.handle(request)
            if payload is None:
                self.close_connection = True
                return
            self._reply(status, payload, headers)

        def _reply(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_POST = do_DELETE = _serve  # noqa: N815 - http.server's naming

    return Handler


# ---------------------------------------------------------------------------------------------
# OpenAI embeddings
# ---------------------------------------------------------------------------------------------

OPENAI_MODELS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def hashed_embedding(text: str, dimension: int) -> list[float]:
    """A deterministic unit vector: each word hashed to a signed bucket, so texts sharing words are close."""
    vector = [0.0] * dimension
    for word in re.findall(r"\w+", text.lower()) or [text]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "big") % dimension] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:  # every word cancelled out: still a valid unit vector
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


def estimated_tokens(text: str) -> int:
    """Tokens roughly as OpenAI's tokenizer counts them: a run of up to 4 ASCII letters or digits
    is one token, and so is every other visible character (punctuation, each non-ASCII letter).
    """
    return max(1, len(_TOKEN.findall(text)))


_TOKEN = re.compile(r"[A-Za-z0-9]{1,4}|[^\sA-Za-z0-9]")


class OpenAIStandIn(StandInServer):
    """`POST /v1/embeddings` as the OpenAI API answers it, with deterministic vectors.

    Checks what a careful client must send: a known model, a list of non-empty strings within
    the provider's limits (2048 inputs, 8191 tokens each, 300k per request), `encoding_format`
    "float" and `dimensions` within the model's size. `embed_calls` counts answered calls,
    `texts` the inputs embedded.
    """

    name = "openai-standin"
    MAX_INPUTS = 2048
    MAX_INPUT_TOKENS = 8191
    MAX_REQUEST_TOKENS = 300_000
    ALLOWED_FIELDS = {"model", "input", "encoding_format", "dimensions", "user"}

    def __init__(
        self,
        *,
        api_key: str | None = None,
        embed_fn: Callable[[list[str], int], list[list[float]]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.embed_fn = embed_fn or (lambda texts, dimension: [hashed_embedding(t, dimension) for t in texts])
        self.texts = 0
        self.routes[("POST", "/v1/embeddings")] = ("embeddings", self._embeddings)

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL must be set to."""
        return f"{self.url}/v1"

    @property
    def embed_calls(self) -> int:
        """Embedding requests answered with vectors."""
        return self.calls["embeddings"]

    def reset(self) -> None:
        """Forget counters, received requests and scripted faults."""
        super().reset()
        self.texts = 0

    def authorize(self, request: Request) -> None:
        """A bearer token is required (and must match, when the stand-in was given one)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not token or (self.api_key is not None and token != self.api_key):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def error_body(self, error: ApiError) -> dict[str, Any]:
        """OpenAI's error envelope."""
        kind = {
            401: "invalid_request_error",
            404: "invalid_request_error",
            429: "requests",
            500: "server_error",
        }.get(error.status, "invalid_request_error")
        return {"error": {"message": error.message, "type": kind, "param": None, "code": error.code}}

    def _embeddings(self, request: Request) -> dict[str, Any]:
        body = request.body
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        unknown = set(body) - self.ALLOWED_FIELDS
        if unknown:
            raise ApiError(400, f"Unrecognized request argument supplied: {', '.join(sorted(unknown))}")
        model = body.get("model")
        if model not in OPENAI_MODELS:
            raise ApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "'input' must be a string or a non-empty list of strings")
        if len(texts) > self.MAX_INPUTS:
            raise ApiError(400, f"'input' has {len(texts)} items; at most {self.MAX_INPUTS} per request")
        if any(t == "" for t in texts):
            raise ApiError(400, "'input' must not contain empty strings")
        tokens = [estimated_tokens(t) for t in texts]
        if max(tokens) > self.MAX_INPUT_TOKENS:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.MAX_INPUT_TOKENS} tokens, "
                f"however you requested {max(tokens)} tokens. Please reduce your prompt.",
            )
        if sum(tokens) > self.MAX_REQUEST_TOKENS:
            raise ApiError(400, f"Requested {sum(tokens)} tokens, max {self.MAX_REQUEST_TOKENS} tokens per request")
        if body.get("encoding_format") != "float":
            raise ApiError(
                400,
                f"encoding_format must be 'float' (got {body.get('encoding_format')!r}): this "
                "stand-in only returns float vectors and clients must ask for them explicitly",
            )
        native = OPENAI_MODELS[model]
        dimension = body.get("dimensions", native)
        if "dimensions" in body and model == "text-embedding-ada-002":
            raise ApiError(400, "This model does not support specifying dimensions.")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= native:
            raise ApiError(
                400, f"'dimensions' must be an integer between 1 and {native} for {model}, got {dimension!r}"
            )
        vectors = self.embed_fn(texts, dimension)
        with self._lock:
            self.texts += len(texts)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "model": model,
            "usage": {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)},
        }


# ---------------------------------------------------------------------------------------------
# Pinecone control plane and data plane
# ---------------------------------------------------------------------------------------------

DEFAULT_NAMESPACE = "__default__"
# An index created with a dimension and a metric (no schema of named fields) declares exactly this
# one field; the vectors API (upsert/query) serves only such indexes.
DENSE_FIELD = "_values"
INDEX_METRICS = ("cosine", "euclidean", "dotproduct")
MAX_INDEX_DIMENSION = 20_000
# Where Pinecone serverless runs, per cloud (the regions the SDK v10 knows).
SERVERLESS_REGIONS = {
    "aws": ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"),
    "gcp": ("us-central1", "europe-west4"),
    "azure": ("eastus2", "germanywestcentral"),
}
_INDEX_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,43}[a-z0-9])?")
_INDEX_PATH = re.compile(r"/indexes/[^/]+")


class _ControlPlaneError(ApiError):
    """An error from the control plane, which answers in another envelope than the data plane."""

    def __init__(self, status: int, message: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(status, message, code=code)


@dataclass
class _StoredVector:
    values: list[float]
    metadata: dict[str, Any] | None


class PineconeStandIn(StandInServer):
    """A serverless Pinecone index's data plane (dense, cosine), in memory, and a control plane.

    Speaks what the SDK v10 sends for upsert, query (metadata filters with $eq/$ne/$gt/$gte/
    $lt/$lte/$in/$nin/$exists/$and/$or), fetch, delete, update, describe_index_stats and list;
    requires the Api-Key and API version headers; rejects vectors of the wrong dimension.

    The control plane (point PINECONE_CONTROLLER_HOST or `Pinecone(host=...)` at `url`) lists,
    creates (dense serverless indexes, validated as the API does, 409 when the name is taken),
    describes (404 when missing) and deletes indexes. A new index is ready at once, or after
    `initializing_describes` describes that find it still initializing. `indexes` holds each one
    as a ready describe answers it. Every index's host is this stand-in's `url`: they share the
    one data plane above, which checks vectors against `dimension`.
    """

    name = "pinecone-standin"
    MAX_UPSERT = 1000
    MAX_FETCH = 1000
    MAX_DELETE = 1000
    MAX_TOP_K = 10_000
    MAX_TOP_K_WITH_DATA = 1000
    LIST_LIMIT_MAX = 100
    MAX_METADATA_BYTES = 40 * 1024
    MAX_UPSERT_BYTES = 2 * 1024 * 1024

    def __init__(
        self,
        *,
        dimension: int,
        api_key: str = "local-pinecone-key",
        initializing_describes: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dimension = dimension
        self.api_key = api_key
        self.namespaces: dict[str, dict[str, _StoredVector]] = {}
        self.indexes: dict[str, dict[str, Any]] = {}
        self.initializing_describes = initializing_describes
        self._initializing: Counter[str] = Counter()
        for method, path, name, route in (
            ("GET", "/indexes", "list_indexes", self._list_indexes),
            ("POST", "/indexes", "create_index", self._create_index),
            ("GET", "/indexes/{name}", "describe_index", self._describe_index),
            ("DELETE", "/indexes/{name}", "delete_index", self._delete_index),
            ("POST", "/vectors/upsert", "upsert", self._upsert),
            ("POST", "/query", "query", self._query),
            ("GET", "/vectors/fetch", "fetch", self._fetch),
            ("POST", "/vectors/delete", "delete", self._delete),
            ("POST", "/vectors/update", "update", self._update),
            ("POST", "/describe_index_stats", "describe_index_stats", self._stats),
            ("GET", "/vectors/list", "list", self._list),
        ):
            self.routes[(method, path)] = (name, route)

    def vectors(self, namespace: str = "") -> dict[str, _StoredVector]:
        """A copy of one namespace's vectors (for assertions)."""
        with self._lock:
            return dict(self.namespaces.get(namespace or DEFAULT_NAMESPACE, {}))

    def route_for(self, request: Request) -> tuple[str, Route] | None:
        """Exact paths first; `/indexes/<name>` goes to the `/indexes/{name}` routes, which read the name."""
        entry = super().route_for(request)
        if entry is None and _INDEX_PATH.fullmatch(request.path):
            return self.routes.get((request.method, "/indexes/{name}"))
        return entry

    def authorize(self, request: Request) -> None:
        """The Api-Key header must match; the API version header must be present."""
        if request.headers.get("api-key") != self.api_key:
            raise ApiError(401, "Invalid API Key", code=16)
        if not request.headers.get("x-pinecone-api-version"):
            raise ApiError(400, "missing X-Pinecone-Api-Version header", code=3)

    def error_body(self, error: ApiError) -> dict[str, Any]:
        """Pinecone's error envelope (the control plane's, or the data plane's gRPC-style one)."""
        if isinstance(error, _ControlPlaneError):
            return {"error": {"code": error.code, "message": error.message}, "status": error.status}
        code = (
            error.code
            if isinstance(error.code, int)
            else {400: 3, 401: 16, 404: 5, 413: 3, 429: 8}.get(error.status, 13)
        )
        return {"code": code, "message": error.message, "details": []}

    # -- validation helpers -----------------------------------------------------------------

    def _object(self, request: Request, allowed: set[str]) -> dict[str, Any]:
        body = request.body if request.body is not None else {}
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        unknown = set(body) - allowed
        if unknown:
            raise ApiError(400, f"unknown field(s) in request: {', '.join(sorted(unknown))}")
        return body

    @staticmethod
    def _namespace(value: Any) -> str:
        if value is None:
            return DEFAULT_NAMESPACE
        if not isinstance(value, str):
            raise ApiError(400, "namespace must be a string")
        return value or DEFAULT_NAMESPACE

    @staticmethod
    def _id(value: Any, where: str) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= 512 or not value.isascii() or "\x00" in value:
            raise ApiError(400, f"{where}: vector id must be an ASCII string of 1-512 characters, got {value!r}")
        return value

    def _values(self, values: Any, where: str) -> list[float]:
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            raise ApiError(400, f"{where}: values must be a list of finite numbers")
        if len(values) != self.dimension:
            raise ApiError(
                400,
                f"{where}: Vector dimension {len(values)} does not match the dimension of the index {self.dimension}",
            )
        if not any(values):
            raise ApiError(400, f"{where}: Dense vectors must contain at least one non-zero value")
        return [float(v) for v in values]

    def _metadata(self, metadata: Any, where: str) -> dict[str, Any]:
        if not isinstance(metadata, dict):
            raise ApiError(400, f"{where}: metadata must be an object")
        for key, value in metadata.items():
            ok = (
                isinstance(value, str | bool)
                or (isinstance(value, int | float) and math.isfinite(value))
                or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            )
            if not ok:
                raise ApiError(
                    400,
                    f"{where}: metadata field {key!r} has an unsupported value {value!r}: use a "
                    "string, number, boolean or list of strings",
                )
        if len(json.dumps(metadata).encode()) > self.MAX_METADATA_BYTES:
            raise ApiError(400, f"{where}: metadata exceeds {self.MAX_METADATA_BYTES} bytes")
        # Pinecone stores every number as a float64: a stored 3 comes back as 3.0.
        return {key: float(v) if _is_number(v) else v for key, v in metadata.items()}

    # -- control plane ---------------------------------------------------------------------

    def _list_indexes(self, request: Request) -> dict[str, Any]:
        with self._lock:
            return {"indexes": list(self.indexes.values())}

    def _create_index(self, request: Request) -> dict[str, Any]:
        body = request.body if request.body is not None else {}
        if not isinstance(body, dict):
            raise _ControlPlaneError(400, "request body must be a JSON object")
        unsupported = set(body) - {"name", "schema", "deployment", "deletion_protection", "tags"}
        if unsupported:
            raise _ControlPlaneError(400, f"field(s) this stand-in does not support: {', '.join(sorted(unsupported))}")
        name = body.get("name")
        if not isinstance(name, str) or not _INDEX_NAME.fullmatch(name):
            raise _ControlPlaneError(
                400,
                f"Invalid index name {name!r}: 1-45 lower case alphanumeric characters or '-', starting and "
                "ending with an alphanumeric character (this stand-in does not generate names)",
            )
        protection = body.get("deletion_protection", "disabled")
        if protection not in ("enabled", "disabled"):
            raise _ControlPlaneError(400, f"deletion_protection must be 'enabled' or 'disabled', got {protection!r}")
        tags = body.get("tags")
        if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
            raise _ControlPlaneError(400, "tags must be an object of string values")
        model = {
            "name": name,
            "host": self.url,
            "status": {"ready": True, "state": "Ready"},
            "schema": {"fields": {DENSE_FIELD: self._dense_field(body.get("schema"))}},
            "deployment": self._managed_deployment(body.get("deployment")),
            "deletion_protection": protection,
            "tags": tags,
        }
        with self._lock:
            if name in self.indexes:
                raise _ControlPlaneError(409, f"Resource {name} already exists", code="ALREADY_EXISTS")
            self.indexes[name] = model
            self._initializing[name] = self.initializing_describes
        # Like the API, the create answer shows the index still initializing; a describe finds it ready.
        return {**model, "status": {"ready": False, "state": "Initializing"}}

    def _describe_index(self, request: Request) -> dict[str, Any]:
        name = unquote(request.path.removeprefix("/indexes/"))
        with self._lock:
            model = self.indexes.get(name)
            initializing = self._initializing[name] > 0
            if initializing:
                self._initializing[name] -= 1
        if model is None:
            raise _ControlPlaneError(404, f"Resource {name} not found", code="NOT_FOUND")
        return {**model, "status": {"ready": False, "state": "Initializing"}} if initializing else model

    def _delete_index(self, request: Request) -> dict[str, Any]:
        name = unquote(request.path.removeprefix("/indexes/"))
        with self._lock:
            model = self.indexes.get(name)
            if model is None:
                raise _ControlPlaneError(404, f"Resource {name} not found", code="NOT_FOUND")
            if model["deletion_protection"] == "enabled":
                raise _ControlPlaneError(
                    403, f"Deletion protection is enabled for index {name}: disable it first", code="FORBIDDEN"
                )
            del self.indexes[name]
            self._initializing.pop(name, None)
        return {}

    @staticmethod
    def _dense_field(schema: Any) -> dict[str, Any]:
        fields = schema.get("fields") if isinstance(schema, dict) else None
        if not isinstance(fields, dict) or set(fields) != {DENSE_FIELD}:
            raise _ControlPlaneError(
                400,
                f"this stand-in serves dense vector indexes only: schema.fields must declare exactly "
                f"{DENSE_FIELD!r} (a dimension and a metric), got {schema!r}",
            )
        field = fields[DENSE_FIELD]
        if not isinstance(field, dict) or field.get("type") != "dense_vector":
            raise _ControlPlaneError(400, f"schema.fields.{DENSE_FIELD} must have type 'dense_vector', got {field!r}")
        dimension = field.get("dimension")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= MAX_INDEX_DIMENSION:
            raise _ControlPlaneError(
                400, f"dimension must be an integer between 1 and {MAX_INDEX_DIMENSION}, got {dimension!r}"
            )
        metric = field.get("metric", "cosine")
        if metric not in INDEX_METRICS:
            raise _ControlPlaneError(400, f"metric must be one of {', '.join(INDEX_METRICS)}, got {metric!r}")
        return {"type": "dense_vector", "dimension": dimension, "metric": metric}

    @staticmethod
    def _managed_deployment(deployment: Any) -> dict[str, Any]:
        if deployment is None:  # the API's default deployment
            return {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
        if not isinstance(deployment, dict) or deployment.get("deployment_type") != "managed":
            raise _ControlPlaneError(
                400, f"this stand-in serves serverless indexes only: deployment_type must be 'managed': {deployment!r}"
            )
        cloud, region = deployment.get("cloud"), deployment.get("region")
        if cloud not in SERVERLESS_REGIONS:
            raise _ControlPlaneError(400, f"cloud must be one of {', '.join(SERVERLESS_REGIONS)}, got {cloud!r}")
        if region not in SERVERLESS_REGIONS[cloud]:
            raise _ControlPlaneError(
                400,
                f"Pinecone serverless does not run in {cloud} region {region!r}; "
                f"choose one of {', '.join(SERVERLESS_REGIONS[cloud])}",
            )
        return {"deployment_type": "managed", "cloud": cloud, "region": region}

    # -- data plane ------------------------------------------------------------------------

    def _upsert(self, request: Request) -> dict[str, Any]:
        body = self._object(request, {"vectors", "namespace"})
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise ApiError(400, "vectors must be a non-empty list")
        if len(vectors) > self.MAX_UPSERT:
            raise ApiError(400, f"{len(vectors)} vectors in one upsert; the maximum is {self.MAX_UPSERT}")
        size = len(json.dumps(body).encode())
        if size > self.MAX_UPSERT_BYTES:
            raise ApiError(400, f"upsert request of {size} bytes exceeds the {self.MAX_UPSERT_BYTES}-byte limit")
        parsed: dict[str, _StoredVector] = {}
        for i, vector in enumerate(vectors):
            where = f"vectors[{i}]"
            if not isinstance(vector, dict) or set(vector) - {"id", "values", "metadata", "sparseValues"}:
                raise ApiError(400, f"{where}: expected an object with id, values and optional metadata")
            if "sparseValues" in vector:
                raise ApiError(400, f"{where}: this index is dense; sparse values are not supported")
            metadata = self._metadata(vector["metadata"], where) if vector.get("metadata") is not None else None
            parsed[self._id(vector.get("id"), where)] = _StoredVector(
                self._values(vector.get("values"), where), metadata
            )
        namespace = self._namespace(body.get("namespace"))
        with self._lock:
            self.namespaces.setdefault(namespace, {}).update(parsed)
        return {"upsertedCount": len(vectors)}

    def _query(self, request: Request) -> dict[str, Any]:
        body = self._object(
            request,
            {
                "topK",
                "vector",
                "id",
                "namespace",
                "filter",
                "includeValues",
                "includeMetadata",
                "sparseVector",
                "scanFactor",
                "maxCandidates",
            },
        )
        top_k = body.get("topK")
        include_values = bool(body.get("includeValues", False))
        include_metadata = bool(body.get("includeMetadata", False))
        limit = self.MAX_TOP_K_WITH_DATA if (include_values or include_metadata) else self.MAX_TOP_K
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= limit:
            raise ApiError(400, f"topK must be an integer between 1 and {limit}, got {top_k!r}")
        if ("vector" in body) == ("id" in body):
            raise ApiError(400, "give exactly one of vector or id")
        if "sparseVector" in body:
            raise ApiError(400, "this index is dense; sparse queries are not supported")
        namespace = self._namespace(body.get("namespace"))
        query_filter = body.get("filter") or {}
        _check_filter(query_filter)
        with self._lock:
            stored = dict(self.namespaces.get(namespace, {}))
        if "id" in body:
            anchor = stored.get(self._id(body["id"], "id"))
            if anchor is None:
                return {"matches": [], "namespace": namespace, "usage": {"readUnits": 1}}
            query = anchor.values
        else:
            query = self._values(body["vector"], "vector")
        scored = sorted(
            (
                (_cosine(query, v.values), vid, v)
                for vid, v in stored.items()
                if _matches(query_filter, v.metadata or {})
            ),
            key=lambda item: (-item[0], item[1]),
        )[:top_k]
        matches = []
        for score, vid, vector in scored:
            match: dict[str, Any] = {
                "id": vid,
                "score": score,
                "values": vector.values if include_values else [],
            }
            if include_metadata and vector.metadata is not None:
                match["metadata"] = vector.metadata
            matches.append(match)
        return {"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}}

    def _fetch(self, request: Request) -> dict[str, Any]:
        ids = request.query.get("ids", [])
        if not ids:
            raise ApiError(400, "ids: at least one id is required")
        if len(ids) > self.MAX_FETCH:
            raise ApiError(400, f"{len(ids)} ids in one fetch; the maximum is {self.MAX_FETCH}")
        namespace = self._namespace(request.query.get("namespace", [""])[0])
        for vid in ids:
            self._id(vid, "ids")
        with self._lock:
            stored = self.namespaces.get(namespace, {})
            found = {vid: stored[vid] for vid in ids if vid in stored}
        vectors: dict[str, dict[str, Any]] = {}
        for vid, vector in found.items():
            vectors[vid] = {"id": vid, "values": vector.values}
            if vector.metadata is not None:
                vectors[vid]["metadata"] = vector.metadata
        return {"vectors": vectors, "namespace": namespace, "usage": {"readUnits": 1}}

    def _delete(self, request: Request) -> dict[str, Any]:
        body = self._object(request, {"ids", "deleteAll", "filter", "namespace"})
        selectors = [key for key in ("ids", "deleteAll", "filter") if body.get(key) not in (None, False)]
        if len(selectors) != 1:
            raise ApiError(400, f"give exactly one of ids, deleteAll or filter (got {selectors or 'none'})")
        namespace = self._namespace(body.get("namespace"))
        with self._lock:
            stored = self.namespaces.setdefault(namespace, {})
            if "ids" in selectors:
                ids = body["ids"]
                if not isinstance(ids, list) or not ids or len(ids) > self.MAX_DELETE:
                    raise ApiError(400, f"ids must be a list of 1-{self.MAX_DELETE} vector ids")
                for vid in ids:
                    stored.pop(self._id(vid, "ids"), None)
            elif "deleteAll" in selectors:
                stored.clear()
            else:
                _check_filter(body["filter"], require_condition=True)
                for vid in [vid for vid, v in stored.items() if _matches(body["filter"], v.metadata or {})]:
                    del stored[vid]
            if not stored:
                del self.namespaces[namespace]
        return {}

    def _update(self, request: Request) -> dict[str, Any]:
        body = self._object(request, {"id", "values", "sparseValues", "setMetadata", "namespace", "filter", "dryRun"})
        if ("id" in body) == ("filter" in body):
            raise ApiError(400, "give exactly one of id or filter")
        if "sparseValues" in body:
            raise ApiError(400, "this index is dense; sparse values are not supported")
        namespace = self._namespace(body.get("namespace"))
        set_metadata = self._metadata(body["setMetadata"], "setMetadata") if "setMetadata" in body else None
        if "id" in body:
            vid = self._id(body["id"], "id")
            values = self._values(body["values"], "values") if "values" in body else None
            if values is None and set_metadata is None:
                raise ApiError(400, "nothing to update: give values and/or setMetadata")
            with self._lock:
                vector = self.namespaces.get(namespace, {}).get(vid)
                # As Pinecone: an id that is not stored is no error, and nothing is created.
                if vector is not None:
                    if values is not None:
                        vector.values = values
                    if set_metadata is not None:
                        vector.metadata = {**(vector.metadata or {}), **set_metadata}
            return {}
        if "values" in body or set_metadata is None:
            raise ApiError(400, "an update by filter changes metadata only: give setMetadata and no values")
        _check_filter(body["filter"], require_condition=True)
        with self._lock:
            hits = [
                v for v in self.namespaces.get(namespace, {}).values() if _matches(body["filter"], v.metadata or {})
            ]
            if not body.get("dryRun"):
                for vector in hits:
                    vector.metadata = {**(vector.metadata or {}), **set_metadata}
        return {"matchedRecords": len(hits)}

    def _stats(self, request: Request) -> dict[str, Any]:
        body = self._object(request, {"filter"})
        if body.get("filter"):
            raise ApiError(400, "describe_index_stats does not support a filter on serverless indexes")
        with self._lock:
            counts = {ns: len(vectors) for ns, vectors in self.namespaces.items() if vectors}
        return {
            "namespaces": {ns: {"vectorCount": n} for ns, n in counts.items()},
            "dimension": self.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(counts.values()),
            "metric": "cosine",
            "vectorType": "dense",
        }

    def _list(self, request: Request) -> dict[str, Any]:
        query = {key: values[0] for key, values in request.query.items()}
        unknown = set(query) - {"namespace", "prefix", "limit", "paginationToken"}
        if unknown:
            raise ApiError(400, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        try:
            limit = int(query.get("limit", self.LIST_LIMIT_MAX))
        except ValueError:
            raise ApiError(400, f"limit must be an integer, got {query['limit']!r}") from None
        if not 1 <= limit <= self.LIST_LIMIT_MAX:
            raise ApiError(400, f"limit must be between 1 and {self.LIST_LIMIT_MAX}, got {limit}")
        after = ""
        if "paginationToken" in query:
            try:
                after = base64.urlsafe_b64decode(query["paginationToken"].encode()).decode()
            except ValueError:
                raise ApiError(400, "invalid paginationToken") from None
        namespace = self._namespace(query.get("namespace"))
        prefix = query.get("prefix", "")
        with self._lock:
            ids = sorted(vid for vid in self.namespaces.get(namespace, {}) if vid.startswith(prefix) and vid > after)
        page = ids[:limit]
        answer: dict[str, Any] = {
            "vectors": [{"id": vid} for vid in page],
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if len(ids) > limit:
            answer["pagination"] = {"next": base64.urlsafe_b64encode(page[-1].encode()).decode()}
        return answer


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _check_filter(query_filter: Any, *, require_condition: bool = False) -> None:
    """Raise ApiError(400) for a filter Pinecone would reject."""
    if not isinstance(query_filter, dict):
        raise ApiError(400, f"filter must be an object, got {query_filter!r}")
    if require_condition and not query_filter:
        raise ApiError(400, "filter must contain at least one condition")
    for key, condition in query_filter.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise ApiError(400, f"{key} takes a non-empty list of filters")
            for part in condition:
                _check_filter(part, require_condition=True)
        elif key.startswith("$"):
            raise ApiError(400, f"unknown top-level filter operator {key}")
        elif isinstance(condition, dict):
            if not condition:
                raise ApiError(400, f"filter on {key!r} has no operator")
            for op, operand in condition.items():
                if op in ("$eq", "$ne") and not _is_scalar(operand):
                    raise ApiError(400, f"{op} on {key!r} takes a string, number or boolean")
                elif op in _COMPARISONS and not _is_number(operand):
                    raise ApiError(400, f"{op} on {key!r} takes a number, got {operand!r}")
                elif op in ("$in", "$nin") and not (
                    isinstance(operand, list) and operand and all(_is_scalar(v) for v in operand)
                ):
                    raise ApiError(400, f"{op} on {key!r} takes a non-empty list of values")
                elif op == "$exists" and not isinstance(operand, bool):
                    raise ApiError(400, f"$exists on {key!r} takes true or false")
                elif op not in ("$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISONS):
                    raise ApiError(400, f"unknown filter operator {op} on {key!r}")
        elif not _is_scalar(condition):
            raise ApiError(400, f"filter on {key!r} must be a value or an operator object")


def _matches(query_filter: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Does a (checked) filter admit this metadata?"""
    for key, condition in query_filter.items():
        if key == "$and":
            ok = all(_matches(part, metadata) for part in condition)
        elif key == "$or":
            ok = any(_matches(part, metadata) for part in condition)
        else:
            ops = condition if isinstance(condition, dict) else {"$eq": condition}
            ok = all(_field_matches(op, operand, key in metadata, metadata.get(key)) for op, operand in ops.items())
        if not ok:
            return False
    return True


def _field_matches(op: str, operand: Any, present: bool, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    if op == "$exists":
        return present == operand
    if op == "$eq":
        return present and any(_same(v, operand) for v in values)
    if op == "$ne":
        return not (present and any(_same(v, operand) for v in values))
    if op == "$in":
        return present and any(_same(v, o) for v in values for o in operand)
    if op == "$nin":
        return not (present and any(_same(v, o) for v in values for o in operand))
    return present and _is_number(value) and _COMPARISONS[op](value, operand)


def _same(a: Any, b: Any) -> bool:
    # JSON has one number type, but true is not 1.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def serve(
    port: int,
    fault_rate: float = 0.0,
    *,
    api: str = "openai",
    dimension: int = 384,
    fault_kinds: Iterable[str] = FAULT_KINDS,
    retry_after_seconds: float = 1.0,
    hang_seconds: float = 30.0,
    latency_seconds: float = 0.0,
    seed: int | None = None,
    api_key: str | None = None,
) -> None:
    """Run one stand-in (api "openai" or "pinecone") on 127.0.0.1:port until Ctrl-C."""
    common: dict[str, Any] = {
        "port": port,
        "fault_rate": fault_rate,
        "fault_kinds": fault_kinds,
        "retry_after_seconds": retry_after_seconds,
        "hang_seconds": hang_seconds,
        "latency_seconds": latency_seconds,
        "seed": seed,
    }
    stand_in: OpenAIStandIn | PineconeStandIn
    if api == "openai":
        stand_in = OpenAIStandIn(api_key=api_key, **common).start()
        where = f"OPENAI_BASE_URL={stand_in.base_url}"
    elif api == "pinecone":
        stand_in = PineconeStandIn(dimension=dimension, api_key=api_key or "local-pinecone-key", **common).start()
        where = f"PINECONE_HOST={stand_in.url} PINECONE_API_KEY={stand_in.api_key}"
    else:
        raise ValueError(f"api must be 'openai' or 'pinecone', got {api!r}")
    print(f"{stand_in.name} listening; use {where} (fault rate {fault_rate:.0%}). Ctrl-C stops.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stand_in.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m refarch_local.standins {openai|pinecone} --port N --fault-rate F`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m refarch_local.standins", description=main.__doc__)
    parser.add_argument("api", choices=["openai", "pinecone"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail, 0-1")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated kinds to inject")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on injected 429s")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long an injected timeout hangs")
    parser.add_argument("--latency", type=float, default=0.0, help="delay every answer by up to this many seconds")
    parser.add_argument("--dimension", type=int, default=384, help="Pinecone index dimension")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    serve(
        args.port,
        args.fault_rate,
        api=args.api,
        dimension=args.dimension,
        fault_kinds=args.faults.split(","),
        retry_after_seconds=args.retry_after,
        hang_seconds=args.hang_seconds,
        latency_seconds=args.latency,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
