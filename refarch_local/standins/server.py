"""What both stand-ins share: a threaded HTTP server that checks, counts and fails requests on demand."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

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
    `received` keeps every authorised request (faulted ones too); `calls` counts answered ones;
    `max_in_flight` is the most requests it was answering at once (how concurrent a client really is).
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
        self.in_flight = 0
        self.max_in_flight = 0
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
            self.max_in_flight = self.in_flight
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
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._handle(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handle(self, request: Request) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
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
