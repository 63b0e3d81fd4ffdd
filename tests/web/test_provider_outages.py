"""A search provider that fails (OpenAI embeddings, Pinecone queries) is a 503 with a message, not a 500.

The real SDKs talk over HTTP to the local stand-ins, which inject the failures (refarch_local/standins.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refarch.embeddings import LocalEmbedder
from refarch.runtime import Runtime
from refarch_local.standins import OpenAIStandIn, PineconeStandIn
from tests.web.conftest import build_app, make_runtime


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


@pytest.mark.parametrize("fault", ["server_error", "rate_limit", "timeout"])
def test_an_embedding_outage_is_a_503_on_the_api_and_the_page(openai_runtime, openai_standin, fault):
    # Given search works through the OpenAI API
    client = build_app(openai_runtime).test_client()
    assert client.get("/api/search", query_string={"q": "tent"}).status_code == 200
    # When the provider answers with an error (500, 429) or not in time
    openai_standin.fail_next(fault, times=2)
    api = client.get("/api/search", query_string={"q": "tent"})
    page = client.get("/", query_string={"q": "tent"})
    # Then the API says the embedding service is unavailable (503), and the page shows it as a message
    assert api.status_code == 503, api.get_json()
    assert "embedding service is unavailable" in api.get_json()["error"]
    assert page.status_code == 503
    assert 'role="alert"' in page.get_data(as_text=True)
    assert "embedding service is unavailable" in page.get_data(as_text=True)


@pytest.fixture
def pinecone_standin(embedder: LocalEmbedder) -> Iterator[PineconeStandIn]:
    """A Pinecone index stand-in of the local model's dimension."""
    with PineconeStandIn(dimension=embedder.dimension, retry_after_seconds=0.1) as stand_in:
        yield stand_in


@pytest.mark.parametrize("fault", ["server_error", "rate_limit"])
def test_a_vector_index_outage_is_a_503(dsn, tmp_path, embedder, pinecone_standin, fault):
    # Given search queries Pinecone
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
    # When every query attempt (the SDK retries) fails
    pinecone_standin.fail_next(fault, times=10)
    response = client.get("/api/search", query_string={"q": "tent"})
    # Then it is a 503 saying the vector index is unavailable
    assert response.status_code == 503, response.get_json()
    assert "vector index is unavailable" in response.get_json()["error"]
