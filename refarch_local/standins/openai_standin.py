"""`POST /v1/embeddings` as the OpenAI API answers it, with deterministic vectors."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from typing import Any

from refarch_local.standins.server import ApiError, Request, StandInServer

OPENAI_MODELS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def hashed_embedding(text: str, dimension: int) -> list[float]:
    """A deterministic unit vector: each word hashed to a signed bucket, so texts sharing words are close."""
    vector = [0.0] * dimension
    for word in re.findall(r"\w+", text.lower()) or [text]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "big") % dimension] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:  # every word cancelled out: still a valid unit vector
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


def estimated_tokens(text: str) -> int:
    """Tokens roughly as OpenAI's tokenizer counts them: a run of up to 4 ASCII letters or digits
    is one token, and so is every other visible character (punctuation, each non-ASCII letter).
    """
    return max(1, len(_TOKEN.findall(text)))


_TOKEN = re.compile(r"[A-Za-z0-9]{1,4}|[^\sA-Za-z0-9]")


class OpenAIStandIn(StandInServer):
    """`POST /v1/embeddings` as the OpenAI API answers it, with deterministic vectors.

    Checks what a careful client must send: a known model, a list of non-empty strings within
    the provider's limits (2048 inputs, 8191 tokens each, 300k per request), `encoding_format`
    "float" and `dimensions` within the model's size. `embed_calls` counts answered calls,
    `texts` the inputs embedded.
    """

    name = "openai-standin"
    MAX_INPUTS = 2048
    MAX_INPUT_TOKENS = 8191
    MAX_REQUEST_TOKENS = 300_000
    ALLOWED_FIELDS = {"model", "input", "encoding_format", "dimensions", "user"}

    def __init__(
        self,
        *,
        api_key: str | None = None,
        embed_fn: Callable[[list[str], int], list[list[float]]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.embed_fn = embed_fn or (lambda texts, dimension: [hashed_embedding(t, dimension) for t in texts])
        self.texts = 0
        self.routes[("POST", "/v1/embeddings")] = ("embeddings", self._embeddings)

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL must be set to."""
        return f"{self.url}/v1"

    @property
    def embed_calls(self) -> int:
        """Embedding requests answered with vectors."""
        return self.calls["embeddings"]

    def reset(self) -> None:
        """Forget counters, received requests and scripted faults."""
        super().reset()
        self.texts = 0

    def authorize(self, request: Request) -> None:
        """A bearer token is required (and must match, when the stand-in was given one)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not token or (self.api_key is not None and token != self.api_key):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def error_body(self, error: ApiError) -> dict[str, Any]:
        """OpenAI's error envelope."""
        kind = {
            401: "invalid_request_error",
            404: "invalid_request_error",
            429: "requests",
            500: "server_error",
        }.get(error.status, "invalid_request_error")
        return {"error": {"message": error.message, "type": kind, "param": None, "code": error.code}}

    def _embeddings(self, request: Request) -> dict[str, Any]:
        body = request.body
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        unknown = set(body) - self.ALLOWED_FIELDS
        if unknown:
            raise ApiError(400, f"Unrecognized request argument supplied: {', '.join(sorted(unknown))}")
        model = body.get("model")
        if model not in OPENAI_MODELS:
            raise ApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "'input' must be a string or a non-empty list of strings")
        if len(texts) > self.MAX_INPUTS:
            raise ApiError(400, f"'input' has {len(texts)} items; at most {self.MAX_INPUTS} per request")
        if any(t == "" for t in texts):
            raise ApiError(400, "'input' must not contain empty strings")
        tokens = [estimated_tokens(t) for t in texts]
        if max(tokens) > self.MAX_INPUT_TOKENS:
            raise ApiError(
                400,
                f"This model's maximum context length is {self.MAX_INPUT_TOKENS} tokens, "
                f"however you requested {max(tokens)} tokens. Please reduce your prompt.",
            )
        if sum(tokens) > self.MAX_REQUEST_TOKENS:
            raise ApiError(400, f"Requested {sum(tokens)} tokens, max {self.MAX_REQUEST_TOKENS} tokens per request")
        if body.get("encoding_format") != "float":
            raise ApiError(
                400,
                f"encoding_format must be 'float' (got {body.get('encoding_format')!r}): this "
                "stand-in only returns float vectors and clients must ask for them explicitly",
            )
        native = OPENAI_MODELS[model]
        dimension = body.get("dimensions", native)
        if "dimensions" in body and model == "text-embedding-ada-002":
            raise ApiError(400, "This model does not support specifying dimensions.")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= native:
            raise ApiError(
                400, f"'dimensions' must be an integer between 1 and {native} for {model}, got {dimension!r}"
            )
        vectors = self.embed_fn(texts, dimension)
        with self._lock:
            self.texts += len(texts)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "model": model,
            "usage": {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)},
        }


# ---------------------------------------------------------------------------------------------
# Pinecone control plane and data plane
# ---------------------------------------------------------------------------------------------
