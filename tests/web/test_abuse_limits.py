"""Every anonymous endpoint that costs is limited (per address and per session) or cached; sign-in fails
closed when its counters cannot be checked, while search fails open."""

from __future__ import annotations

from urllib.parse import quote

import psycopg2
import pytest

from refarch import products
from tests.web.conftest import build_app, csrf_token, make_runtime


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


@pytest.fixture
def impatient_runtime(dsn, embedder, tmp_path):
    """The app's database connections give up on a lock after 300 ms (as a slow counter store would time out)."""
    options = quote("-c lock_timeout=300")
    url = f"{dsn}{'&' if '?' in dsn else '?'}options={options}"
    return make_runtime(embedder, database_url=url, home=tmp_path / "home")


def test_sign_in_fails_closed_and_search_fails_open_when_the_counters_cannot_answer(impatient_runtime, dsn, catalog):
    # Given an edit password, and the rate-limit counters locked by someone else (the store cannot answer)
    client = build_app(impatient_runtime, EDIT_PASSWORD="open sesame").test_client()
    token = csrf_token(client)
    blocker = psycopg2.connect(dsn)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE rate_limit_counters IN ACCESS EXCLUSIVE MODE")
        # When someone signs in, through the API and through the form
        api = client.post("/api/session", json={"password": "open sesame"}, headers={"X-CSRF-Token": token})
        form = client.post("/login", data={"password": "open sesame", "csrf_token": token})
        # Then both are refused with 503 and Retry-After: an attempt that cannot be counted is not made
        assert api.status_code == 503 and retry_after(api) >= 1
        assert "sign-in is unavailable" in api.get_json()["error"]
        assert form.status_code == 503 and "Sign-in is unavailable" in form.get_data(as_text=True)
        assert client.get("/api/session").get_json()["signed_in"] is False
        # And search goes on, unlimited for now (its cost is bounded by the WAF and the provider's quota)
        assert client.get("/api/search", query_string={"q": "tent", "mode": "lexical"}).status_code == 200
    finally:
        blocker.rollback()
        blocker.close()
    # And once the counters answer again, the same sign-in works
    again = client.post("/api/session", json={"password": "open sesame"}, headers={"X-CSRF-Token": token})
    assert again.status_code == 200 and again.get_json()["signed_in"] is True
