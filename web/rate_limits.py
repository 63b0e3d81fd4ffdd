"""Rate limits per client address on the search and write endpoints (Flask-Limiter).

Counters live in Postgres by default (`refarch.rate_limits`, a `limits` storage registered as
`refarch+postgres://`), so one limit holds across gunicorn workers and Fargate tasks without
another datastore; REFARCH_RATE_LIMIT_STORAGE may name any Flask-Limiter storage URI instead.
The client address is `request.remote_addr`, which ProxyFix sets from X-Forwarded-For only as far
as REFARCH_PROXY_HOPS trusts it (web/__init__.py), so nobody can claim another address. An IPv6
client is counted by its /64 network, the block one subscriber gets, so that it cannot start
afresh by changing its address within it.
Over a limit: 429 with Retry-After, in the one error shape (web/errors.py); the pages a browser
loads (the search page, the sign-in form) answer the same message as a page.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from typing import Any

import psycopg2
from flask import Flask, Response, make_response, render_template, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits.storage import Storage

from refarch import rate_limits
from refarch.db import Database
from refarch.settings import ConfigurationError
from web.errors import error_response

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
)
# Of those, the ones a browser loads as a page (an HTML answer, not JSON).
PAGE_ENDPOINTS = ("views.index", "auth.login")


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

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count hits in the key's current window."""
        with self.database.transaction() as conn:
            return rate_limits.increment(conn, key, window_seconds=int(expiry), amount=amount)

    def get(self, key: str) -> int:
        """Hits in the key's current window."""
        with self.database.transaction() as conn:
            return rate_limits.hits(conn, key)

    def get_expiry(self, key: str) -> float:
        """When the key's window ends (now, when it has none)."""
        with self.database.transaction() as conn:
            end = rate_limits.window_end(conn, key)
        return end if end is not None else time.time()

    def check(self) -> bool:
        """Whether the database answers."""
        try:
            with self.database.transaction() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error:
            return False
        return True

    def reset(self) -> int | None:
        """Forget every counter."""
        with self.database.transaction() as conn:
            return rate_limits.clear(conn)

    def clear(self, key: str) -> None:
        """Forget one counter."""
        with self.database.transaction() as conn:
            rate_limits.clear(conn, key)


def _too_many_requests(limiter: Limiter, err: RateLimitExceeded) -> Response:
    """429 in the one error shape, with Retry-After: the seconds until the address's window ends."""
    window = limiter.current_limit
    retry_after = max(1, math.ceil(window.reset_at - time.time())) if window else 60
    message = f"too many requests from your address (limit {err.description}); try again in {retry_after} s"
    if request.endpoint in PAGE_ENDPOINTS:
        page = render_template("too_many_requests.html", message=message.capitalize(), retry_after=retry_after)
        response = make_response(page, 429)
    else:
        response = error_response(429, message)
    response.headers["Retry-After"] = str(retry_after)
    return response


def init_app(app: Flask) -> None:
    """Limit the search and write endpoints of this app (call after its blueprints are registered)."""
    runtime = app.config["REFARCH_RUNTIME"]
    storage = app.config["RATE_LIMIT_STORAGE"]
    options: dict[str, Any] = {}
    if storage == "postgres":
        storage, options = "refarch+postgres://", {"database": runtime.db}
    limiter = Limiter(
        key_func=client_key,
        app=app,
        storage_uri=storage,
        storage_options=options,
        strategy="fixed-window",
        headers_enabled=True,
        # A counter store that cannot answer must not take the site down with it.
        swallow_errors=True,
    )
    search = limiter.shared_limit(lambda: app.config["RATE_LIMIT_SEARCH"], scope="search")
    write = limiter.shared_limit(lambda: app.config["RATE_LIMIT_WRITE"], scope="write")
    for endpoints, limit in ((SEARCH_ENDPOINTS, search), (WRITE_ENDPOINTS, write)):
        for endpoint in endpoints:
            limited: Any = limit(app.view_functions[endpoint])  # the same view, checked first
            app.view_functions[endpoint] = limited
    app.register_error_handler(RateLimitExceeded, functools.partial(_too_many_requests, limiter))
