"""OpenAIEmbedder against the OpenAI stand-in: the real `openai` SDK over real HTTP, faults included."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import openai
import pytest

from refarch.embeddings import OpenAIEmbedder
from refarch_local.standins import OpenAIStandIn, hashed_embedding

DIMENSIONS = 32


@pytest.fixture
def stand_in() -> Iterator[OpenAIStandIn]:
    with OpenAIStandIn(retry_after_seconds=0.5, hang_seconds=3.0) as server:
        yield server


def embedder_for(stand_in: OpenAIStandIn, *, max_retries: int = 2, timeout: float = 1.0) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        api_key="sk-test",
        model="text-embedding-3-small",
        dimensions=DIMENSIONS,
        base_url=stand_in.base_url,
        timeout=timeout,
        max_retries=max_retries,
    )


def post(stand_in: OpenAIStandIn, body: dict, *, key: str | None = "sk-test") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{stand_in.base_url}/embeddings", json=body, headers=headers, timeout=5)


def test_one_call_returns_unit_vectors_of_the_requested_size_in_order(stand_in):
    # Given the embedder pointed at the stand-in
    embedder = embedder_for(stand_in)
    texts = ["red running shoes", "a blue kettle", "red running shoes"]
    # When it embeds three texts
    vectors = embedder.embed(texts)
    # Then one request carried them all, asking for floats of the configured size
    assert stand_in.embed_calls == 1
    ((route, request),) = stand_in.received
    assert route == "embeddings"
    assert request.body == {
        "model": "text-embedding-3-small",
        "input": texts,
        "dimensions": DIMENSIONS,
        "encoding_format": "float",
    }
    # And the vectors are unit length, in input order, deterministic per text
    assert embedder.dimension == DIMENSIONS
    assert [len(v) for v in vectors] == [DIMENSIONS] * 3
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-6) for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert vectors[1] == pytest.approx(hashed_embedding("a blue kettle", DIMENSIONS))


def test_texts_sharing_words_are_closer_than_unrelated_texts():
    # The stand-in's vectors are good enough for a demo search to rank sensibly.
    def cos(a: str, b: str) -> float:
        return sum(x * y for x, y in zip(hashed_embedding(a, 256), hashed_embedding(b, 256), strict=True))

    assert cos("wireless noise cancelling headphones", "noise cancelling headphones") > cos(
        "wireless noise cancelling headphones", "cast iron frying pan"
    )


def test_a_429_is_retried_after_the_retry_after_it_names(stand_in):
    # Given the provider will rate-limit the next request, asking for 0.5 s
    stand_in.fail_next("rate_limit")
    # When the embedder calls it
    vectors = embedder_for(stand_in).embed(["a lamp"])
    # Then the SDK waited at least Retry-After, retried, and got the vectors
    assert len(vectors) == 1
    first, second = (request.at for _, request in stand_in.received)
    assert second - first >= 0.5
    assert stand_in.faults["rate_limit"] == 1
    assert stand_in.embed_calls == 1


@pytest.mark.parametrize("fault", ["server_error", "timeout"])
def test_a_500_or_a_hang_is_retried_by_the_sdk(stand_in, fault):
    # Given one failing answer (a 500, or no answer within the 1 s client timeout)
    stand_in.fail_next(fault)
    # When embedding
    vectors = embedder_for(stand_in).embed(["a lamp", "a desk"])
    # Then the retry succeeded: two requests, one answered with vectors
    assert len(vectors) == 2
    assert len(stand_in.received) == 2
    assert stand_in.faults[fault] == 1
    assert stand_in.embed_calls == 1


def test_when_retries_are_exhausted_the_error_reaches_the_caller(stand_in):
    # Given the provider fails more often than the embedder retries (1 try + 2 retries)
    stand_in.fail_next("server_error", times=3)
    # When embedding, Then the SDK's error surfaces for Emu to record
    with pytest.raises(openai.InternalServerError, match="internal error"):
        embedder_for(stand_in, max_retries=2).embed(["a lamp"])
    assert len(stand_in.received) == 3
    assert stand_in.embed_calls == 0


def test_a_random_fault_rate_fails_about_that_share_of_requests():
    # Given a stand-in failing 30% of requests with 500s (seeded, so the count is reproducible)
    with OpenAIStandIn(fault_rate=0.3, fault_kinds=["server_error"], seed=3) as stand_in:
        client = httpx.Client(timeout=5)
        statuses = [
            client.post(
                f"{stand_in.base_url}/embeddings",
                headers={"Authorization": "Bearer k"},
                json={"model": "text-embedding-3-small", "input": ["x"], "encoding_format": "float"},
            ).status_code
            for _ in range(200)
        ]
    # Then roughly 30% failed, and the counters agree with what clients saw
    assert 40 <= statuses.count(500) <= 80
    assert statuses.count(500) == stand_in.faults["server_error"]
    assert statuses.count(200) == stand_in.embed_calls


def test_over_long_text_is_truncated_to_the_model_limit(stand_in):
    # Given a text far over 8191 tokens (the stand-in rejects such inputs, as OpenAI does)
    huge = "word " * 20_000
    assert (
        post(stand_in, {"model": "text-embedding-3-small", "input": [huge], "encoding_format": "float"}).status_code
        == 400
    )
    # When the embedder embeds it
    vectors = embedder_for(stand_in).embed([huge, "short"])
    # Then it was cut to the limit before sending, and both texts were embedded
    assert len(vectors) == 2
    sent = stand_in.received[-1][1].body["input"]
    assert len(sent[0]) == int(OpenAIEmbedder.MAX_INPUT_TOKENS * OpenAIEmbedder.CHARS_PER_TOKEN)
    assert sent[1] == "short"


def test_non_ascii_text_is_cut_by_its_bytes_not_by_english_characters_per_token(stand_in):
    # Given a long description in Japanese (one token or more per character, as OpenAI counts it)
    japanese = "機械学習で需要を予測する在庫管理ソフトウェア。" * 800
    assert len(japanese) > OpenAIEmbedder.MAX_INPUT_TOKENS
    # When the embedder embeds it in a batch
    vectors = embedder_for(stand_in).embed([japanese, "short"])
    # Then one request carried a prefix within the limit, and both texts were embedded
    assert len(vectors) == 2 and len(stand_in.received) == 1
    sent = stand_in.received[0][1].body["input"][0]
    assert japanese.startswith(sent) and len(sent.encode()) <= OpenAIEmbedder.MAX_INPUT_TOKENS


def test_a_text_the_estimate_gets_wrong_is_cut_further_and_fails_nothing_else(stand_in):
    # Given punctuation-dense text: short enough by the character estimate, over the limit in real tokens
    dense = "!?" * 10_000
    assert len(dense) <= OpenAIEmbedder.MAX_INPUT_TOKENS * OpenAIEmbedder.CHARS_PER_TOKEN
    # When it is embedded in a batch with an ordinary text
    vectors = embedder_for(stand_in).embed(["a reading lamp", dense])
    # Then the provider refused the batch and the dense text alone; it answered the lamp alone and the
    # dense text cut to the byte limit
    inputs = [request.body["input"] for _, request in stand_in.received]
    cut = dense[: OpenAIEmbedder.MAX_INPUT_TOKENS]
    assert inputs == [["a reading lamp", dense], ["a reading lamp"], [dense], [cut]]
    assert stand_in.embed_calls == 2
    # And both vectors came back in order
    assert vectors[0] == pytest.approx(hashed_embedding("a reading lamp", DIMENSIONS)) and len(vectors) == 2


def test_more_inputs_than_one_request_allows_are_split(stand_in):
    # Given more texts than OpenAI accepts in one request (2048)
    texts = [f"item {i}" for i in range(2049)]
    # When embedding
    vectors = embedder_for(stand_in).embed(texts)
    # Then two requests were needed, and order survived the split
    assert [len(r.body["input"]) for _, r in stand_in.received] == [2048, 1]
    assert len(vectors) == 2049
    assert vectors[2048] == pytest.approx(hashed_embedding("item 2048", DIMENSIONS))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "text-embedding-3-small", "input": ["x"]}, 400, "encoding_format must be 'float'"),
        ({"model": "text-embedding-3-small", "input": ["x"], "encoding_format": "base64"}, 400, "float"),
        ({"model": "text-embedding-3-small", "input": [], "encoding_format": "float"}, 400, "non-empty list"),
        ({"model": "text-embedding-3-small", "input": [""], "encoding_format": "float"}, 400, "empty strings"),
        ({"model": "text-embedding-3-small", "input": [1, 2], "encoding_format": "float"}, 400, "list of strings"),
        ({"model": "text-embedding-3-small", "input": ["x"] * 2049, "encoding_format": "float"}, 400, "at most 2048"),
        (
            {"model": "text-embedding-3-small", "input": ["x"], "encoding_format": "float", "dimensions": 4096},
            400,
            "between 1 and 1536",
        ),
        (
            {"model": "text-embedding-ada-002", "input": ["x"], "encoding_format": "float", "dimensions": 8},
            400,
            "does not support specifying dimensions",
        ),
        ({"model": "text-embedding-9", "input": ["x"], "encoding_format": "float"}, 404, "does not exist"),
        (
            {"model": "text-embedding-3-small", "input": ["x"], "encoding_format": "float", "temperature": 1},
            400,
            "Unrecognized request argument",
        ),
    ],
)
def test_requests_a_careful_client_would_not_send_are_refused(stand_in, body, status, message):
    response = post(stand_in, body)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]
    assert stand_in.embed_calls == 0


def test_a_request_without_a_bearer_key_is_unauthorised(stand_in):
    response = post(stand_in, {"model": "text-embedding-3-small", "input": ["x"], "encoding_format": "float"}, key=None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_the_sdk_reports_a_refused_request_as_a_client_error(stand_in):
    # Given an embedder configured for more dimensions than the model has
    embedder = OpenAIEmbedder(
        api_key="sk-test",
        model="text-embedding-3-small",
        dimensions=4096,
        base_url=stand_in.base_url,
        timeout=1.0,
        max_retries=2,
    )
    # When embedding, Then the 400 is not retried and names the problem
    with pytest.raises(openai.BadRequestError, match="between 1 and 1536"):
        embedder.embed(["x"])
    assert len(stand_in.received) == 1
