"""Rate limits per client address on search and writes: 429 with Retry-After in the one error shape,
counted in Postgres so that every worker and task shares them; a flood of searches cannot starve Emu."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from werkzeug.serving import make_server

from refarch import products
from refarch_local.standins import OpenAIStandIn
from tests.conftest import free_port
from tests.web.conftest import Api, build_app, index_now, make_runtime


def test_searches_over_the_limit_are_a_429_with_retry_after(runtime, catalog):
    # Given a limit of 3 searches a minute per address
    client = build_app(runtime, RATE_LIMIT_SEARCH="3 per minute").test_client()
    # When one address searches four times (the page's searches count too)
    first = [client.get("/api/search", query_string={"q": f"tent {n}", "mode": "lexical"}) for n in range(2)]
    first.append(client.get("/", query_string={"q": "tent", "mode": "lexical"}))
    refused = client.get("/api/search", query_string={"q": "tent", "mode": "lexical"})
    # Then the first three are answered and the fourth is refused in the one error shape, saying when to retry
    assert [r.status_code for r in first] == [200, 200, 200]
    assert refused.status_code == 429
    body = refused.get_json()
    assert set(body) == {"error", "fields", "request_id"} and body["fields"] == {}
    assert body["request_id"] == refused.headers["X-Request-Id"]
    assert "too many requests from your address" in body["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # And another address still has its own budget, and reads that are not searches are not limited
    other = client.get("/api/search", query_string={"q": "tent"}, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 200
    assert client.get("/api/sync/status").status_code == 200


def test_an_ipv6_client_is_counted_by_its_64_network_not_its_changing_address(runtime, catalog):
    # Given a limit of 2 searches a minute per client
    client = build_app(runtime, RATE_LIMIT_SEARCH="2 per minute").test_client()

    def search_from(address: str) -> int:
        query = {"q": "tent", "mode": "lexical"}
        return client.get("/api/search", query_string=query, environ_base={"REMOTE_ADDR": address}).status_code

    # When one IPv6 subscriber searches from three addresses of its /64 (any host part it likes)
    answers = [search_from(f"2001:db8:aa:bb::{n}") for n in (1, 2, 3)]
    # Then they share one budget: the third is refused
    assert answers == [200, 200, 429]
    # And another /64, and an IPv4 client, have budgets of their own
    assert search_from("2001:db8:aa:cc::1") == 200
    assert search_from("192.0.2.9") == 200


def test_the_search_page_over_the_limit_is_a_429_page_saying_when_to_retry(runtime, catalog):
    # Given a limit of 1 search a minute per address, used up by the page
    client = build_app(runtime, RATE_LIMIT_SEARCH="1 per minute").test_client()
    assert client.get("/", query_string={"q": "tent", "mode": "lexical"}).status_code == 200
    # When the browser loads the search page again
    refused = client.get("/", query_string={"q": "tent", "mode": "lexical"})
    # Then it gets a page (not JSON) with the message and a Retry-After header
    assert refused.status_code == 429 and refused.mimetype == "text/html"
    html = refused.get_data(as_text=True)
    assert 'id="rate-limited"' in html and "Too many requests from your address" in html
    said = int(re.search(r"in (\d+) seconds", html).group(1))  # computed a moment before the header
    assert 1 <= said <= 61 and abs(said - int(refused.headers["Retry-After"])) <= 1


def test_every_worker_counts_in_the_same_database(runtime, catalog):
    # Given two app processes (gunicorn workers, Fargate tasks) on one database, limit 3 a minute
    worker_a = build_app(runtime, RATE_LIMIT_SEARCH="3 per minute").test_client()
    worker_b = build_app(runtime, RATE_LIMIT_SEARCH="3 per minute").test_client()
    # When one address spreads its searches over both
    statuses = [
        w.get("/api/search", query_string={"q": "skillet", "mode": "lexical"}).status_code
        for w in (worker_a, worker_b, worker_a, worker_b)
    ]
    # Then the limit holds for the service as a whole, not per worker
    assert statuses == [200, 200, 200, 429]


def test_writes_over_the_limit_are_a_429_and_do_not_use_the_search_budget(runtime):
    # Given a limit of 2 writes a minute per address
    api = Api(build_app(runtime, RATE_LIMIT_WRITE="2 per minute", RATE_LIMIT_SEARCH="2 per minute").test_client())
    new = [{"sku": f"GA-{n}", "name": f"Rake {n}", "category": "garden", "price": "12.50"} for n in range(3)]
    # When it adds three products
    statuses = [api.post("/api/products", json=product).status_code for product in new]
    # Then the third is refused and not stored, and searching still has its own budget
    assert statuses == [201, 201, 429]
    with runtime.db.transaction() as conn:
        assert products.list_page(conn, limit=10, offset=0)[1] == 2
    assert api.get("/api/search", query_string={"q": "rake", "mode": "lexical"}).status_code == 200


@pytest.fixture
def openai_standin() -> Iterator[OpenAIStandIn]:
    """One OpenAI account for the web app and Emu (the stand-in counts every request it receives)."""
    with OpenAIStandIn() as stand_in:
        yield stand_in


def test_a_flood_of_searches_does_not_starve_emu(dsn, tmp_path, catalog, openai_standin):
    # Given the web app and Emu embedding through the same OpenAI account, searches limited to 10 a minute
    def openai_runtime():
        return make_runtime(
            None,
            database_url=dsn,
            home=tmp_path / "home",
            embedder="openai",
            openai_api_key="sk-local-test",
            openai_base_url=openai_standin.base_url,
            openai_dimensions=64,
            openai_max_retries=0,
        )

    web_runtime, emu_runtime = openai_runtime(), openai_runtime()
    app = build_app(web_runtime, RATE_LIMIT_SEARCH="10 per minute")
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/search"
    statuses: list[int] = []
    retry_after: list[str] = []
    # The mode of each answered search: hybrid, or lexical when every semantic slot was taken (refarch.serving)
    modes: list[str] = []
    flooding, refused_once = threading.Event(), threading.Event()
    flooding.set()

    def flood(worker: int) -> None:
        with httpx.Client(timeout=10) as http:
            n = 0
            while flooding.is_set():
                response = http.get(url, params={"q": f"flood {worker} {n}"})  # every query new: no cache hit
                statuses.append(response.status_code)
                if response.status_code == 200:
                    modes.append(response.json()["mode"])
                if response.status_code == 429:
                    retry_after.append(response.headers.get("Retry-After", ""))
                    refused_once.set()
                n += 1

    floods = [threading.Thread(target=flood, args=(w,), daemon=True) for w in range(4)]
    try:
        for thread in floods:
            thread.start()
        assert refused_once.wait(30), "the flood was never limited"
        # When Emu indexes the catalog while the search endpoint is being flooded
        index_now(emu_runtime, [p.id for p in catalog])  # insists every message succeeded
        flood_still_running = all(thread.is_alive() for thread in floods)
        # (and the flood goes on until it has been refused at least 10 times: on a loaded machine the four
        # flooders may have sent only a few requests while Emu indexed)
        deadline = time.monotonic() + 20
        while statuses.count(429) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        flooding.clear()
        for thread in floods:
            thread.join(timeout=30)
        server.shutdown()
    # Then the flood was held back at the limit: 10 searches answered, everything else refused with Retry-After
    assert flood_still_running
    assert statuses.count(200) == 10 and statuses.count(429) == len(statuses) - 10 >= 10
    assert all(value.isdigit() for value in retry_after)
    # And the provider saw only the embeddings of those 10 (one per search that did not find every semantic slot
    # taken and answer lexically at once), while every one of Emu's requests was answered
    inputs = [
        text for route, request in openai_standin.received if route == "embeddings" for text in request.body["input"]
    ]
    assert set(modes) <= {"hybrid", "lexical"} and modes.count("hybrid") >= 1
    assert sum(text.startswith("flood") for text in inputs) == modes.count("hybrid")
    emu_texts = [text for text in inputs if not text.startswith("flood")]
    assert len(emu_texts) == len(catalog)
    assert openai_standin.embed_calls == len(openai_standin.received)  # nothing failed or was refused
    with emu_runtime.db.transaction() as conn:
        assert {s["status"] for s in products.sync_statuses(conn, [p.id for p in catalog]).values()} == {"indexed"}
