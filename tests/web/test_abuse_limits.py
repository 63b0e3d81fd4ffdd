"""Every anonymous endpoint that costs is limited (per address and per session) or cached; sign-in fails
closed when its counters cannot be checked, while search fails open."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg2

from refarch import products
from refarch.serving import COUNTER_STORE_STATEMENT_TIMEOUT_SECONDS
from tests.web.conftest import build_app, csrf_token

# What a request may take while its counters cannot answer: the store's statement timeout (its lock timeout
# is shorter) plus a loaded machine's slack; the lock's holder keeps it 20 s.
STORE_BOUND_SECONDS = COUNTER_STORE_STATEMENT_TIMEOUT_SECONDS + 1.5


def timed(call: Any) -> tuple[float, Any]:
    """(seconds the call took, what it returned)."""
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def retry_after(response) -> int:
    """The Retry-After seconds of a 429/503 (fails when the header is missing)."""
    return int(response.headers["Retry-After"])


def test_a_flood_of_sync_status_requests_gets_429_with_retry_after(runtime, catalog):
    # Given a read limit of 5 a minute per client
    client = build_app(runtime, RATE_LIMIT_READ="5 per minute").test_client()
    # When one address asks for the sync status ten times
    statuses = [client.get("/api/sync/status").status_code for _ in range(10)]
    # Then five are answered and the rest refused with 429, saying when to retry
    assert statuses == [200] * 5 + [429] * 5
    refused = client.get("/api/sync/status")
    assert refused.status_code == 429 and 1 <= retry_after(refused) <= 60
    assert "too many requests from your address" in refused.get_json()["error"]


def test_a_flood_of_deep_listings_gets_429_with_retry_after(runtime, catalog):
    # Given a read limit of 3 a minute per client
    client = build_app(runtime, RATE_LIMIT_READ="3 per minute").test_client()
    # When one address walks listing pages as deep as allowed
    deep = [client.get("/api/products", query_string={"page": str(page), "k": "100"}) for page in (100, 99, 98, 97)]
    # Then the fourth is refused with Retry-After, before any query runs
    assert [r.status_code for r in deep] == [200, 200, 200, 429]
    assert 1 <= retry_after(deep[-1]) <= 60
    # And searches have a budget of their own
    assert client.get("/api/search", query_string={"q": "tent", "mode": "lexical"}).status_code == 200


def test_one_session_spread_over_many_addresses_shares_one_budget(runtime, catalog):
    # Given a search limit of 3 a minute, and one cookie session (the page's, or a copied one)
    client = build_app(runtime, RATE_LIMIT_SEARCH="3 per minute").test_client()
    csrf_token(client)  # GET /api/session sets the session cookie

    def search_from(address: str):
        query = {"q": "tent", "mode": "lexical"}
        return client.get("/api/search", query_string=query, environ_base={"REMOTE_ADDR": address})

    # When it searches from four addresses, one request each
    answers = [search_from(f"192.0.2.{n}") for n in (1, 2, 3, 4)]
    # Then the session's budget is spent after three: the fourth address is refused for the session
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert "too many requests from your session" in answers[-1].get_json()["error"]
    # And a client without that cookie, from a fifth address, still searches
    fresh = build_app(runtime, RATE_LIMIT_SEARCH="3 per minute").test_client()
    assert (
        fresh.get("/api/search", query_string={"q": "tent"}, environ_base={"REMOTE_ADDR": "192.0.2.5"}).status_code
        == 200
    )


def test_the_sync_status_is_computed_at_most_once_per_period_per_process(runtime, dsn, catalog):
    # Given an app that keeps the status for a minute, and one that keeps it for no time
    cached = build_app(runtime, SYNC_STATUS_CACHE_SECONDS=60).test_client()
    uncached = build_app(runtime, SYNC_STATUS_CACHE_SECONDS=0).test_client()
    before = cached.get("/api/sync/status").get_json()["products"]
    assert uncached.get("/api/sync/status").get_json()["products"] == before
    # When a product is added
    with psycopg2.connect(dsn) as conn:
        products.create(conn, {"sku": "NEW-1", "name": "Lamp", "description": "", "category": "home", "price": 5})
    # Then the caching app still answers what it computed (no new aggregates, SQS or CloudWatch calls) ...
    assert cached.get("/api/sync/status").get_json()["products"] == before
    # ... and the page header shares that answer
    assert f'data-key="products">{before}<' in cached.get("/").get_data(as_text=True)
    # ... while an app without the cache sees the new row at once
    assert uncached.get("/api/sync/status").get_json()["products"] == before + 1


def test_sign_in_fails_closed_and_search_fails_open_when_the_counters_cannot_answer(runtime, dsn, catalog):
    # Given an edit password, and the rate-limit counters locked by someone else (the store cannot answer),
    # with the app's own database settings: its counter store's timeouts are the only ones in play
    client = build_app(runtime, EDIT_PASSWORD="open sesame").test_client()
    token = csrf_token(client)
    blocker = psycopg2.connect(dsn)
    try:
        with blocker.cursor() as cur:
            # Released after 20 s at the latest, so that a store without its own timeouts fails slowly, not hangs
            cur.execute("SET idle_in_transaction_session_timeout = '20s'")
            cur.execute("LOCK TABLE rate_limit_counters IN ACCESS EXCLUSIVE MODE")
        # When someone signs in, through the API and through the form
        took_api, api = timed(
            lambda: client.post("/api/session", json={"password": "open sesame"}, headers={"X-CSRF-Token": token})
        )
        took_form, form = timed(lambda: client.post("/login", data={"password": "open sesame", "csrf_token": token}))
        # Then both are refused with 503 and Retry-After: an attempt that cannot be counted is not made
        assert api.status_code == 503 and retry_after(api) >= 1
        assert "sign-in is unavailable" in api.get_json()["error"]
        assert form.status_code == 503 and "Sign-in is unavailable" in form.get_data(as_text=True)
        assert client.get("/api/session").get_json()["signed_in"] is False
        # And search goes on, unlimited for now (its cost is bounded by the WAF and the provider's quota)
        took_search, search = timed(lambda: client.get("/api/search", query_string={"q": "tent", "mode": "lexical"}))
        assert search.status_code == 200
        # And each waited for the store only as long as its timeouts allow, not for the lock's holder
        assert max(took_api, took_form, took_search) < STORE_BOUND_SECONDS
    finally:
        with contextlib.suppress(psycopg2.Error):  # its session may have timed out (a store that waited)
            blocker.rollback()
        blocker.close()
    # And once the counters answer again, the same sign-in works
    again = client.post("/api/session", json={"password": "open sesame"}, headers={"X-CSRF-Token": token})
    assert again.status_code == 200 and again.get_json()["signed_in"] is True
