"""Search on Amazon Bedrock: Titan query vectors, and hybrid's candidates reranked by a Bedrock rerank model.

The real boto3 clients (bedrock-runtime, bedrock-agent-runtime) talk to the Bedrock stand-in, which
scores a document by the words it shares with the query (plumbing, not a model's judgement).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refarch.runtime import Runtime
from refarch_local.standins import BedrockStandIn
from tests.web.conftest import build_app, index_now, make_runtime


@pytest.fixture
def bedrock_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockStandIn]:
    """A Bedrock stand-in whose hangs outlast the rerank timeout below (boto3 signs with any credentials)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    with BedrockStandIn(hang_seconds=3.0) as stand_in:
        yield stand_in


def bedrock_runtime(dsn: str, home, stand_in: BedrockStandIn, *, rerank_model: str | None) -> Runtime:
    """Titan (256-d) at the stand-in, reranking with `rerank_model` within a 0.5 s budget."""
    return make_runtime(
        None,
        database_url=dsn,
        home=home,
        embedder="bedrock",
        bedrock_endpoint_url=stand_in.url,
        bedrock_dimensions=256,
        rerank_model=rerank_model,
        rerank_timeout_seconds=0.5,
        bedrock_max_attempts=1,
        bedrock_timeout_seconds=1.0,
    )


@pytest.fixture
def reranking(dsn, tmp_path, bedrock_standin, catalog) -> Runtime:
    """The small catalog indexed with Titan, search reranking with Amazon Rerank."""
    runtime = bedrock_runtime(dsn, tmp_path / "home", bedrock_standin, rerank_model="amazon.rerank-v1:0")
    index_now(runtime, [p.id for p in catalog])
    return runtime


def test_hybrid_results_are_reranked_and_say_so(reranking, bedrock_standin):
    # Given search with a rerank model
    client = build_app(reranking).test_client()
    # When a hybrid search runs
    body = client.get("/api/search", query_string={"q": "machine learning books"}).get_json()
    # Then one rerank call reordered the candidates, and every result says its reranked place
    assert bedrock_standin.rerank_calls == 1
    ranks = [r["ranks"]["rerank"] for r in body["results"]]
    assert ranks == list(range(1, len(ranks) + 1))
    # And the candidates went to the model by their text, with the query, under the model's ARN
    (request,) = [r for route, r in bedrock_standin.received if route == "rerank"]
    assert request.body["queries"][0]["textQuery"]["text"] == "machine learning books"
    config = request.body["rerankingConfiguration"]["bedrockRerankingConfiguration"]
    assert config["modelConfiguration"]["modelArn"] == "arn:aws:bedrock:us-east-1::foundation-model/amazon.rerank-v1:0"
    texts = [s["inlineDocumentSource"]["textDocument"]["text"] for s in request.body["sources"]]
    assert any("Deep Learning Handbook" in text for text in texts)
    # And the scores follow the new order (the model's relevance)
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_an_exact_sku_keeps_its_lead_and_other_modes_and_later_pages_are_not_reranked(reranking, bedrock_standin):
    client = build_app(reranking).test_client()
    # When the query is a product's SKU, Then that product stays first, not reranked
    first = client.get("/api/search", query_string={"q": "KI-1"}).get_json()["results"][0]
    assert first["sku"] == "KI-1" and "rerank" not in first["ranks"]
    calls = bedrock_standin.rerank_calls
    # When searching in semantic or lexical mode, Then no rerank call is made
    for mode in ("semantic", "lexical"):
        results = client.get("/api/search", query_string={"q": "tent", "mode": mode}).get_json()["results"]
        assert results and all("rerank" not in r["ranks"] for r in results)
    assert bedrock_standin.rerank_calls == calls
    # When a page lies wholly past the reranked candidates, Then it costs no rerank call either
    reranking.search.rerank_candidates = 2
    assert reranking.search.search("tent", k=2, page=2).page == 2
    assert bedrock_standin.rerank_calls == calls


def fused_order(runtime: Runtime, query: str) -> list[int]:
    """The fused order of a query's first page: the same search with reranking turned off."""
    reranker, runtime.search.reranker = runtime.search.reranker, None
    try:
        return [hit.product.id for hit in runtime.search.search(query, k=5).hits]
    finally:
        runtime.search.reranker = reranker


@pytest.mark.parametrize("fault", ["timeout", "rate_limit", "server_error"])
def test_a_slow_or_failing_rerank_serves_the_fused_order(reranking, bedrock_standin, fault):
    # Given a query's fused order (reranking off)
    query = "camping tent for rain"
    fused = fused_order(reranking, query)
    # When the rerank model hangs past the 0.5 s budget, throttles or fails
    bedrock_standin.fail_next(fault)
    page = reranking.search.search(query, k=5)
    # Then the page is served at once in the fused order, in hybrid mode, and says it was not reranked
    assert bedrock_standin.faults[fault] == 1
    assert page.mode == "hybrid" and page.fallback_reason is None
    assert all("rerank" not in hit.ranks for hit in page.hits)
    assert [hit.product.id for hit in page.hits] == fused
    # And the next search is reranked again
    assert all("rerank" in hit.ranks for hit in reranking.search.search(query, k=5).hits)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("rate_limit", "embedding service is unavailable"), ("timeout", "embedding service was too slow")],
)
def test_a_bedrock_outage_answers_in_lexical_mode_and_says_so(reranking, bedrock_standin, fault, reason):
    # Given search on Titan, When Bedrock throttles or hangs past the timeout for a query not asked before,
    # on the first attempt and on the one retry the search budget allows
    client = build_app(reranking).test_client()
    # (a first search builds the query path's Bedrock client, which on a busy machine could take much of
    # the budget the two attempts below need)
    assert client.get("/api/search", query_string={"q": "reading lamp"}).get_json()["fallback_reason"] is None
    reranked_before = bedrock_standin.rerank_calls
    bedrock_standin.fail_next(fault, times=2)
    body = client.get("/api/search", query_string={"q": "camping tent"}).get_json()
    # Then both were tried, and the API answers from keyword search, says why, and nothing is reranked
    assert bedrock_standin.faults[fault] == 2
    assert (body["mode"], body["requested_mode"]) == ("lexical", "hybrid")
    assert reason in body["fallback_reason"]
    assert [r["name"] for r in body["results"]] == ["Alpine Camping Tent"]
    assert bedrock_standin.rerank_calls == reranked_before
