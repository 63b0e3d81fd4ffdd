"""BedrockEmbedder and the Rerank call against the Bedrock stand-in: the real boto3 clients over real HTTP."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from refarch.bedrock import BedrockEmbedder, BedrockServiceError, foundation_model_arn
from refarch.search.rerank import RERANK_TEXT_MAX_CHARS, BedrockReranker
from refarch.settings import ConfigurationError, Settings
from refarch_local.standins import BedrockStandIn, hashed_embedding

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-multilingual-v3"


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockStandIn]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    with BedrockStandIn(hang_seconds=3.0) as server:
        yield server


def settings_for(stand_in: BedrockStandIn, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "embedder": "bedrock",
        "bedrock_endpoint_url": stand_in.url,
        "bedrock_timeout_seconds": 1.0,
        "bedrock_max_attempts": 1,
        **overrides,
    }
    return Settings.model_validate(values)


def runtime_client(stand_in: BedrockStandIn) -> object:
    make = boto3.client  # any service by name
    return make("bedrock-runtime", region_name="us-east-1", endpoint_url=stand_in.url)


@pytest.mark.parametrize("dimensions", [256, 512, 1024])
def test_titan_returns_unit_vectors_of_the_chosen_size_in_order(stand_in, dimensions):
    embedder = BedrockEmbedder.from_settings(settings_for(stand_in, bedrock_dimensions=dimensions))
    texts = ["red running shoes", "cast iron skillet", "wireless earbuds"]
    vectors = embedder.embed(texts)
    assert [len(v) for v in vectors] == [dimensions] * 3
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-6) for v in vectors)
    # In order, and the stand-in's vectors are the OpenAI stand-in's hashed word vectors
    assert vectors == [hashed_embedding(t, dimensions) for t in texts]
    assert (stand_in.embed_calls, stand_in.texts, embedder.model_id) == (3, 3, f"bedrock:{TITAN}:{dimensions}")


def test_cohere_sends_at_most_96_texts_per_request(stand_in):
    embedder = BedrockEmbedder.from_settings(settings_for(stand_in, bedrock_model=COHERE, bedrock_dimensions=None))
    vectors = embedder.embed([f"product {n}" for n in range(200)])
    sizes = [len(r.body["texts"]) for route, r in stand_in.received if route == "invoke"]
    assert (len(vectors), sizes, embedder.batch_size) == (200, [96, 96, 8], 96)


@pytest.mark.parametrize(
    ("model", "dimensions"), [("amazon.titan-embed-text-v1", None), (TITAN, 384), ("cohere.embed-english-v3", 512)]
)
def test_an_unknown_model_or_size_is_a_configuration_error_naming_the_choices(stand_in, model, dimensions):
    with pytest.raises(ConfigurationError, match="REFARCH_BEDROCK"):
        BedrockEmbedder.from_settings(settings_for(stand_in, bedrock_model=model, bedrock_dimensions=dimensions))


def test_over_long_and_empty_texts_are_cut_or_padded_before_sending(stand_in):
    titan = BedrockEmbedder.from_settings(settings_for(stand_in))
    cohere = BedrockEmbedder.from_settings(settings_for(stand_in, bedrock_model=COHERE, bedrock_dimensions=None))
    # Texts the API would refuse (over its limits, or blank) are sent in a form it accepts
    for embedder in (titan, cohere):
        assert len(embedder.embed(["word " * 30_000, "", "é" * 40_000])) == 3


def test_errors_carry_bedrocks_code_and_say_whether_the_input_was_refused(stand_in):
    embedder = BedrockEmbedder.from_settings(settings_for(stand_in))
    stand_in.refuse("poison")
    with pytest.raises(BedrockServiceError) as refused:
        embedder.embed(["a poison pill"])
    stand_in.fail_next("rate_limit")
    with pytest.raises(BedrockServiceError) as throttled:
        embedder.embed(["fine"])
    stand_in.fail_next("timeout")
    with pytest.raises(BedrockServiceError) as hung:
        embedder.embed(["fine"])
    assert (refused.value.code, refused.value.status_code, refused.value.is_input_error) == (
        "ValidationException",
        400,
        True,
    )
    assert (throttled.value.code, throttled.value.status_code, throttled.value.is_input_error) == (
        "ThrottlingException",
        429,
        False,
    )
    assert hung.value.is_input_error is False and "timeout" in str(hung.value).lower()
    assert embedder.throttled == 1
    # And the throttle is handed out once to whoever reports it (Emu's EmbedThrottles), the total kept
    assert (embedder.take_throttles(), embedder.take_throttles(), embedder.throttled) == (1, 0, 1)


def test_the_stand_in_refuses_what_bedrock_refuses(stand_in):
    client = runtime_client(stand_in)

    def invoke(model: str, body: dict) -> str:
        try:
            client.invoke_model(modelId=model, body=json.dumps(body))  # type: ignore[attr-defined]
        except ClientError as err:
            return str(err.response["Error"]["Code"])
        return "ok"

    assert invoke(TITAN, {"inputText": "x", "dimensions": 384}) == "ValidationException"
    assert invoke(TITAN, {"inputText": "   "}) == "ValidationException"
    assert invoke(TITAN, {"inputText": "x", "unknown": 1}) == "ValidationException"
    assert invoke(COHERE, {"texts": ["x"] * 97, "input_type": "search_document"}) == "ValidationException"
    assert invoke(COHERE, {"texts": ["x" * 2049], "input_type": "search_document"}) == "ValidationException"
    assert invoke(COHERE, {"texts": ["x"]}) == "ValidationException"  # input_type is required
    assert invoke("amazon.nova-pro-v1:0", {"inputText": "x"}) == "ValidationException"
    assert invoke(TITAN, {"inputText": "fine"}) == "ok"
    # And an unsigned request is refused as AWS refuses it
    import httpx

    assert httpx.post(f"{stand_in.url}/model/{TITAN}/invoke", json={"inputText": "x"}).status_code == 403


def test_rerank_orders_documents_by_shared_words_under_the_models_arn(stand_in):
    reranker = BedrockReranker.from_settings(settings_for(stand_in, rerank_model="cohere.rerank-v3-5:0"))
    order = reranker.rank("cast iron pan", ["wireless earbuds", "cast iron skillet pan", "iron man poster"])
    assert [i for i, _ in order] == [1, 2, 0]
    assert order[0][1] > order[1][1] > order[2][1]
    (request,) = [r for route, r in stand_in.received if route == "rerank"]
    model_config = request.body["rerankingConfiguration"]["bedrockRerankingConfiguration"]["modelConfiguration"]
    assert model_config["modelArn"] == "arn:aws:bedrock:us-east-1::foundation-model/cohere.rerank-v3-5:0"
    stand_in.fail_next("server_error")
    with pytest.raises(BedrockServiceError, match="InternalServerException"):
        reranker.rank("q", ["a", "b"])


def test_a_document_longer_than_the_rerank_api_takes_is_cut_not_refused(stand_in):
    # Given the Rerank API's limit on a document's text, which the stand-in enforces as Bedrock does
    client = boto3.client("bedrock-agent-runtime", region_name="us-east-1", endpoint_url=stand_in.url)
    long_text = "cast iron pan " + "filler words " * 3_000  # ~39,000 characters: a long description
    with pytest.raises(ClientError, match="ValidationException"):
        client.rerank(  # type: ignore[attr-defined]
            queries=[{"type": "TEXT", "textQuery": {"text": "pan"}}],
            sources=[{"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": long_text}}}],
            rerankingConfiguration={
                "type": "BEDROCK_RERANKING_MODEL",
                "bedrockRerankingConfiguration": {
                    "numberOfResults": 1,
                    "modelConfiguration": {"modelArn": foundation_model_arn("us-east-1", "amazon.rerank-v1:0")},
                },
            },
        )
    # When the reranker is given that document among others
    reranker = BedrockReranker.from_settings(settings_for(stand_in, rerank_model="amazon.rerank-v1:0"))
    order = reranker.rank("cast iron pan", ["wireless earbuds", long_text])
    # Then it is sent cut to the limit and ranked, not refused (which would drop every such search's rerank)
    assert [i for i, _ in order] == [1, 0]
    request = [r for route, r in stand_in.received if route == "rerank"][-1]
    sent = request.body["sources"][1]["inlineDocumentSource"]["textDocument"]["text"]
    assert sent == long_text[:RERANK_TEXT_MAX_CHARS]
