"""A search provider that fails: embeddings or Pinecone down -> lexical results that say so.

The real SDKs talk over HTTP to the local stand-ins, which inject the failures (refarch_local/standins.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refarch.embeddings import LocalEmbedder
from refarch.runtime import Runtime
from refarch.search.fallbacks import NOT_CONFIGURED_MESSAGE
from refarch.settings import ConfigurationError
from refarch_local.standins import OpenAIStandIn, PineconeStandIn
from tests.web.conftest import build_app, index_now, make_runtime


@pytest.fixture
def openai_standin() -> Iterator[OpenAIStandIn]:
    """An OpenAI stand-in whose hangs outlast the 1 s client timeout below."""
    with OpenAIStandIn(retry_after_seconds=0.1, hang_seconds=3.0) as stand_in:
        yield stand_in


@pytest.fixture
def openai_runtime(dsn: str, tmp_path, openai_standin: OpenAIStandIn) -> Runtime:
    """The OpenAI embedder at the stand-in, without retries (each injected fault reaches the app)."""
    return make_runtime(
        None,
        database_url=dsn,
        home=tmp_path / "home",
        embedder="openai",
        openai_api_key="sk-local-test",
        openai_base_url=openai_standin.base_url,
        openai_dimensions=64,
        openai_timeout_seconds=1.0,
        openai_max_retries=0,
    )


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("server_error", "embedding service is unavailable"),
        ("rate_limit", "embedding service is unavailable"),
        ("timeout", "embedding service was too slow"),
    ],
)
def test_an_embedding_outage_answers_in_lexical_mode_and_says_so(
    openai_runtime, openai_standin, catalog, fault, reason
):
    # Given search works through the OpenAI API
    client = build_app(openai_runtime).test_client()
    assert client.get("/api/search", query_string={"q": "tent"}).get_json()["mode"] == "hybrid"
    # When the provider answers with an error (500, 429) or not in time, for a query not asked before,
    # twice in a row (search retries once within its budget)
    openai_standin.fail_next(fault, times=2)
    api = client.get("/api/search", query_string={"q": "camping tent"})
    openai_standin.fail_next(fault, times=2)
    page = client.get("/", query_string={"q": "camping tent"})
    # Then the API still answers (200), from keyword search, and says why
    assert api.status_code == 200, api.get_json()
    body = api.get_json()
    assert (body["mode"], body["requested_mode"]) == ("lexical", "hybrid")
    assert reason in body["fallback_reason"]
    assert [r["name"] for r in body["results"]] == ["Alpine Camping Tent"]
    assert body["results"][0]["ranks"] == {"lexical": 1}
    # And the page shows the results with the same notice
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'id="search-fallback"' in html and reason in html
    assert "Alpine Camping Tent" in html
    # When the provider is back, Then the next search is hybrid again
    assert client.get("/api/search", query_string={"q": "tent for rain"}).get_json()["fallback_reason"] is None


def test_semantic_mode_also_falls_back_to_lexical_during_an_outage(openai_runtime, openai_standin, catalog):
    client = build_app(openai_runtime).test_client()
    openai_standin.fail_next("server_error", times=2)
    body = client.get("/api/search", query_string={"q": "skillet", "mode": "semantic"}).get_json()
    assert (body["mode"], body["requested_mode"]) == ("lexical", "semantic")
    assert [r["sku"] for r in body["results"]] == ["KI-1"]


def test_a_repeated_query_costs_no_embedding_request(openai_runtime, openai_standin, catalog):
    # Given a search for a query
    client = build_app(openai_runtime).test_client()
    client.get("/api/search", query_string={"q": "waterproof tent"})
    calls = openai_standin.embed_calls
    # When the same query is searched again, on another page, in semantic mode and from the page
    client.get("/api/search", query_string={"q": "waterproof tent", "page": 2, "k": 1})
    client.get("/api/search", query_string={"q": "waterproof tent", "mode": "semantic"})
    client.get("/", query_string={"q": "waterproof tent"})
    # Then the provider was not asked again; a new query is one request
    assert openai_standin.embed_calls == calls
    client.get("/api/search", query_string={"q": "dry tent"})
    assert openai_standin.embed_calls == calls + 1


@pytest.fixture
def pinecone_standin(embedder: LocalEmbedder) -> Iterator[PineconeStandIn]:
    """A Pinecone index stand-in of the local model's dimension."""
    with PineconeStandIn(dimension=embedder.dimension, retry_after_seconds=0.1, hang_seconds=3.0) as stand_in:
        yield stand_in


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("server_error", "vector index is unavailable"),
        ("rate_limit", "vector index is unavailable"),
        ("timeout", "vector index was too slow"),
    ],
)
def test_a_vector_index_outage_answers_in_lexical_mode_and_says_so(
    dsn, tmp_path, embedder, pinecone_standin, catalog, fault, reason
):
    # Given search queries Pinecone, and the catalog (not indexed: only lexical search can find it)
    runtime = make_runtime(
        embedder,
        database_url=dsn,
        home=tmp_path / "home",
        vector_backend="pinecone",
        pinecone_api_key=pinecone_standin.api_key,
        pinecone_host=pinecone_standin.url,
    )
    client = build_app(runtime).test_client()
    assert client.get("/api/search", query_string={"q": "tent"}).status_code == 200
    # When every query attempt (search retries once) fails, in hybrid and in semantic mode
    for mode in ("hybrid", "semantic"):
        pinecone_standin.fail_next(fault, times=2)
        response = client.get("/api/search", query_string={"q": "tent", "mode": mode})
        # Then the answer is a 200 ranked by text, saying why
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert (body["mode"], body["requested_mode"]) == ("lexical", mode)
        assert reason in body["fallback_reason"]
        assert body["results"] and all(set(r["ranks"]) == {"lexical"} for r in body["results"])
        assert any("tent" in (r["name"] + r["description"]).lower() for r in body["results"])
    # And once Pinecone answers again, so does semantic ranking
    assert client.get("/api/search", query_string={"q": "tent"}).get_json()["fallback_reason"] is None


def test_a_runtime_without_the_active_generations_key_answers_lexically_and_says_so(
    dsn, tmp_path, openai_runtime, catalog, caplog, monkeypatch
):
    # Given the catalog indexed by OpenAI (generation 1, active), as before a move to Bedrock
    index_now(openai_runtime, [p.id for p in catalog])
    # And a web runtime configured for Bedrock with no OpenAI key: the move deployed without keep_openai_access
    moved = make_runtime(
        None,
        database_url=dsn,
        home=tmp_path / "moved",
        embedder="bedrock",
        openai_api_key=None,
        openai_secret_arn=None,
    )
    client = build_app(moved).test_client()
    # When semantic and hybrid searches come in (twice each), and the page asks too, each trying the active
    # generation again (no pause between tries: normally a few seconds)
    monkeypatch.setattr("refarch.search.service.NOT_CONFIGURED_RECHECK_SECONDS", 0.0)
    bodies = {}
    for mode in ("semantic", "hybrid", "semantic", "hybrid"):
        response = client.get("/api/search", query_string={"q": "camping tent", "mode": mode})
        # Then each answers 200 from keyword search, saying the server is not configured for the active index
        assert response.status_code == 200, response.get_json()
        bodies[mode] = response.get_json()
    page = client.get("/", query_string={"q": "camping tent"})
    for mode, body in bodies.items():
        assert (body["mode"], body["requested_mode"]) == ("lexical", mode)
        assert body["fallback_reason"] == NOT_CONFIGURED_MESSAGE
        assert [(r["name"], r["ranks"]) for r in body["results"]] == [("Alpine Camping Tent", {"lexical": 1})]
    assert page.status_code == 200
    assert 'id="search-fallback"' in page.get_data(as_text=True) and "Alpine Camping Tent" in page.get_data(
        as_text=True
    )
    # And the configuration error is logged once, as an error naming the missing key, not once per search
    logged = [r for r in caplog.records if "cannot be built with these settings" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelname == "ERROR"
    assert "OPENAI_API_KEY" in str(logged[0].__dict__["error"])
    # But Emu, which must write every live generation, still fails loudly on a change rather than skip it
    with pytest.raises(ConfigurationError, match="no OPENAI_API_KEY"):
        index_now(moved, [catalog[0].id])
