"""Rate limits per client address and per session on every endpoint that costs (Flask-Limiter).

Three budgets: search (the page and /api/search: an embedding request and a vector query each),
write (product changes and sign-in) and read (listing, sync status: aggregates, SQS and CloudWatch
calls). Each counts twice: per client address, and per session (the signed-in session's id, or the
cookie session's CSRF token), so neither many addresses sharing one stolen cookie nor one address
cycling cookies gets more than one budget.

Counters live in Postgres by default (`refarch.rate_limits`, a `limits` storage registered as
`refarch+postgres://`), so one limit holds across gunicorn workers and Fargate tasks without
another datastore; REFARCH_RATE_LIMIT_STORAGE may name any Flask-Limiter storage URI instead.
The client address is `request.remote_addr`, which ProxyFix sets from X-Forwarded-For only as far
as REFARCH_PROXY_HOPS trusts it (web/app.py), so nobody can claim another address. An IPv6
client is counted by its /64 network, the block one subscriber gets, so that it cannot start
afresh by changing its address within it.
Over a limit: 429 with Retry-After, in the one error shape (web/errors.py); the pages a browser
loads (the search page, the sign-in form) answer the same message as a page.
When the counter store cannot answer, requests go through (fail open: a limiter outage must not
take search down, and search's cost is still bounded by the WAF and the provider's own quota),
except sign-in, which is refused with 503 (fail closed: an unlimited password guesser is what the
limit exists to stop, and a refused sign-in costs a visitor nothing that waiting does not fix).
A slow store is one that cannot answer: each of its transactions gives up on a lock and on a
statement after refarch.serving's COUNTER_STORE_* timeouts, so it costs a request a fraction of a second.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
from flask import Flask, Response, make_response, render_template, request, session
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits.storage import Storage

from refarch import rate_limits
from refarch.db import Connection, Database
from refarch.observability import logger
from refarch.serving import COUNTER_STORE_LOCK_TIMEOUT_SECONDS, COUNTER_STORE_STATEMENT_TIMEOUT_SECONDS
from refarch.settings import ConfigurationError
from web.auth import SESSION_ID
from web.errors import error_response, request_id
from web.security import CSRF_FORM_FIELD

# Endpoints that cost an embedding request and a vector query (the page searches too).
SEARCH_ENDPOINTS = ("api.search", "views.index")
# Endpoints that change something, or try a password.
WRITE_ENDPOINTS = (
    "api.create_product",
    "api.update_product",
    "api.delete_product",
    "auth.login",
    "auth.api_login",
    "dead_letters.redrive",
    "dead_letters.discard",
    # Another source's rows (web.api.register_source_routes), when the app serves one.
    "rows_create",
    "rows_update",
    "rows_delete",
)
# Reads that cost more than one indexed row: a listing page (a count and an offset), the sync status
# (whole-table aggregates, SQS and CloudWatch calls), the pending rows' states the page polls.
READ_ENDPOINTS = ("api.list_products", "api.sync_status", "api.sync_statuses", "rows_list")
# Of those, the ones a browser loads as a page (an HTML answer, not JSON).
PAGE_ENDPOINTS = ("views.index", "auth.login")
# Sign-in is refused, not let through, when its counter cannot be checked (fail closed).
SIGN_IN_ENDPOINTS = ("auth.login", "auth.api_login")
# Seconds a refused sign-in is told to wait for the counter store.
COUNTER_STORE_RETRY_SECONDS = 5


class CounterStoreUnavailableError(Exception):
    """The rate-limit counters cannot be read, and the endpoint may not go unlimited (sign-in)."""


def client_key() -> str:
    """Whose counter a request counts on: the client's IPv4 address, or its IPv6 /64 network."""
    address = get_remote_address()
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is that IPv4 client
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def session_key() -> str:
    """Whose per-session counter a request counts on: its signed-in session, else its cookie session."""
    marker = str(session.get(SESSION_ID) or session.get(CSRF_FORM_FIELD))
    # Hashed: the counter table would otherwise hold live CSRF tokens and session ids.
    return "session:" + hashlib.sha256(marker.encode()).hexdigest()[:32]


def has_no_session() -> bool:
    """True for a request without a session cookie: only its address is counted."""
    return not (session.get(SESSION_ID) or session.get(CSRF_FORM_FIELD))


class SiteLimiter(Limiter):
    """Flask-Limiter that fails open when its counter store cannot answer, except on sign-in."""

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        try:
            super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)
        except RateLimitExceeded:
            raise
        except Exception as err:
            context = {"request_id": request_id(), "endpoint": request.endpoint, "error": repr(err)}
            if request.endpoint in SIGN_IN_ENDPOINTS:
                logger.warning("rate-limit counters unavailable: sign-in refused", extra=context)
                raise CounterStoreUnavailableError(str(err)) from err
            logger.warning("rate-limit counters unavailable: request let through", extra=context)


class PostgresCounterStorage(Storage):
    """A `limits` storage for fixed windows in the `rate_limit_counters` table."""

    STORAGE_SCHEME = ["refarch+postgres"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        database = options.pop("database", None)
        super().__init__(uri, wrap_exceptions, **options)
        if not isinstance(database, Database):
            raise ConfigurationError("the Postgres rate-limit storage needs the app's Database (storage option)")
        self.database = database

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """What a database failure raises."""
        return psycopg2.Error

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction that gives up on a lock, and on a statement, after the counter store's timeouts
        (a psycopg2 error then: the store is unavailable, and SiteLimiter decides what the request gets)."""
        with self.database.transaction() as conn:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                    (
                        _milliseconds(COUNTER_STORE_LOCK_TIMEOUT_SECONDS),
                        _milliseconds(COUNTER_STORE_STATEMENT_TIMEOUT_SECONDS),
                    ),
                )
            yield conn

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count hits in the key's current window."""
        with self._transaction() as conn:
            return rate_limits.increment(conn, key, window_seconds=int(expiry), amount=amount)

    def get(self, key: str) -> int:
        """Hits in the key's current window."""
        with self._transaction() as conn:
            return rate_limits.hits(conn, key)

    def get_expiry(self, key: str) -> float:
        """When the key's window ends (now, when it has none)."""
        with self._transaction() as conn:
            end = rate_limits.window_end(conn, key)
        return end if end is not None else time.time()

    def check(self) -> bool:
        """Whether the database answers."""
        try:
            with self._transaction() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error:
            return False
        return True

    def reset(self) -> int | None:
        """Forget every counter."""
        with self._transaction() as conn:
            return rate_limits.clear(conn)

    def clear(self, key: str) -> None:
        """Forget one counter."""
        with self._transaction() as conn:
            rate_limits.clear(conn, key)


def _milliseconds(seconds: float) -> str:
    """A Postgres duration setting: whole milliseconds, at least 1 (0 would mean no timeout)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _too_many_requests(limiter: Limiter, err: RateLimitExceeded) -> Response:
    """429 in the one error shape, with Retry-After: the seconds until the breached counter's window ends."""
    breached = err.limit
    scope = str(breached.scope)
    reset_at = limiter.limiter.get_window_stats(breached.limit, breached.key_func(), scope).reset_time
    retry_after = max(1, math.ceil(reset_at - time.time()))
    whose = "your session" if scope.endswith("-session") else "your address"
    message = f"too many requests from {whose} (limit {err.description}); try again in {retry_after} s"
    if request.endpoint in PAGE_ENDPOINTS:
        page = render_template("too_many_requests.html", message=message.capitalize(), retry_after=retry_after)
        response = make_response(page, 429)
    else:
        response = error_response(429, message)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _sign_in_unavailable(err: CounterStoreUnavailableError) -> Response:
    """503 with Retry-After: sign-in waits until its attempts can be counted again."""
    message = "sign-in is unavailable for a moment (its attempt counter cannot be checked); try again shortly"
    if request.endpoint in PAGE_ENDPOINTS:
        response = make_response(render_template("login.html", error=message.capitalize() + "."), 503)
    else:
        response = error_response(503, message)
    response.headers["Retry-After"] = str(COUNTER_STORE_RETRY_SECONDS)
    return response


def init_app(app: Flask) -> None:
    """Limit the search, write and costly read endpoints of this app (call after its blueprints are registered)."""
    runtime = app.config["REFARCH_RUNTIME"]
    storage = app.config["RATE_LIMIT_STORAGE"]
    options: dict[str, Any] = {}
    if storage == "postgres":
        storage, options = "refarch+postgres://", {"database": runtime.db}
    limiter = SiteLimiter(
        key_func=client_key,
        app=app,
        storage_uri=storage,
        storage_options=options,
        strategy="fixed-window",
        # No X-RateLimit-* headers: each would cost another counter read per response; a 429 says Retry-After.
        headers_enabled=False,
        # Errors reach SiteLimiter, which lets the request through (or refuses a sign-in).
        swallow_errors=False,
    )
    budgets = (("search", SEARCH_ENDPOINTS), ("write", WRITE_ENDPOINTS), ("read", READ_ENDPOINTS))
    for budget, endpoints in budgets:
        setting = f"RATE_LIMIT_{budget.upper()}"
        per_address = limiter.shared_limit(functools.partial(_setting, app, setting), scope=budget)
        per_session = limiter.shared_limit(
            functools.partial(_setting, app, setting),
            scope=f"{budget}-session",
            key_func=session_key,
            exempt_when=has_no_session,
        )
        # The rows_* endpoints exist only when the app serves a source other than products.
        for endpoint in (e for e in endpoints if e in app.view_functions or not e.startswith("rows_")):
            limited: Any = per_session(per_address(app.view_functions[endpoint]))  # the same view, checked first
            app.view_functions[endpoint] = limited
    app.register_error_handler(RateLimitExceeded, functools.partial(_too_many_requests, limiter))
    app.register_error_handler(CounterStoreUnavailableError, _sign_in_unavailable)


def _setting(app: Flask, name: str) -> str:
    """A limit as configured now (tests change it per app)."""
    return str(app.config[name])
