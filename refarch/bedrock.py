"""Amazon Bedrock: an Embedder adapter (Titan Text Embeddings V2, Cohere Embed) and the shared client setup.

On AWS there is no key: the runtime's IAM role is granted `bedrock:InvokeModel` on the model's ARN
(cdk_app), and the calls can stay inside the VPC through an interface endpoint. Locally
REFARCH_BEDROCK_ENDPOINT_URL points the real boto3 client at a stand-in (refarch_local.standins).

Retries are botocore's own ("standard" mode: exponential backoff with jitter on throttling, 5xx and
timeouts); each throttled answer is counted on the embedder (`throttled`), logged, and published by
Emu as its `EmbedThrottles` metric (`take_throttles`), so a lane whose concurrency outgrows the
account's quota shows up (docs/scaling.md has the quota arithmetic).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from refarch.observability import logger
from refarch.settings import ConfigurationError, Settings
from refarch.source.chunking import EstimatedTokens

THROTTLING_CODES = frozenset({"ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException"})
# Codes Bedrock answers for what a request contained: the same texts would be refused again.
INPUT_ERROR_CODES = frozenset({"ValidationException"})


@dataclass(frozen=True)
class BedrockEmbeddingModel:
    """What the adapter needs to know about one Bedrock embedding model."""

    family: Literal["titan", "cohere"]
    # Accepted output sizes; the first is the model's default.
    dimensions: tuple[int, ...]
    # Texts per InvokeModel request.
    max_texts: int
    # Characters per text the API accepts (cut before sending; the start carries the meaning).
    max_chars: int
    # Tokens the model reads per text (its window: longer texts are chunked).
    max_tokens: int


EMBEDDING_MODELS: dict[str, BedrockEmbeddingModel] = {
    # One text per request, up to 8,192 tokens or 50,000 characters; output normalised on request.
    "amazon.titan-embed-text-v2:0": BedrockEmbeddingModel("titan", (1024, 512, 256), 1, 50_000, 8192),
    # Up to 96 texts per request, 2,048 characters each; always 1,024 dimensions.
    "cohere.embed-english-v3": BedrockEmbeddingModel("cohere", (1024,), 96, 2048, 512),
    "cohere.embed-multilingual-v3": BedrockEmbeddingModel("cohere", (1024,), 96, 2048, 512),
}

# Rerank models (Rerank API of bedrock-agent-runtime; refarch.search.rerank) and the regions that offer
# them, as AWS lists them ("Supported Regions and models for reranking in Amazon Bedrock"): Amazon
# Rerank is not offered in us-east-1. The first one a region offers is what `-c rerank=true` picks.
RERANK_MODEL_REGIONS: dict[str, tuple[str, ...]] = {
    "amazon.rerank-v1:0": ("ap-northeast-1", "ca-central-1", "eu-central-1", "us-west-2"),
    "cohere.rerank-v3-5:0": ("ap-northeast-1", "ca-central-1", "eu-central-1", "us-east-1", "us-west-2"),
}
RERANK_MODELS = tuple(RERANK_MODEL_REGIONS)


def rerank_model_for(region: str) -> str:
    """The rerank model `-c rerank=true` picks in `region`; ValueError when Bedrock offers none there."""
    for model, regions in RERANK_MODEL_REGIONS.items():
        if region in regions:
            return model
    offered = sorted({r for regions in RERANK_MODEL_REGIONS.values() for r in regions})
    raise ValueError(f"Bedrock offers no rerank model in {region}; reranking runs in {', '.join(offered)}")


class BedrockServiceError(Exception):
    """Bedrock refused or did not answer (after botocore's retries): its error code and HTTP status.

    `status_code` follows the convention Emu reads (refarch.emu.worker.is_input_error): 400 means
    the request's content was refused (a ValidationException), so a chunk is split to find the text.
    """

    def __init__(self, code: str, message: str, status_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status_code = status_code

    @property
    def is_input_error(self) -> bool:
        """Whether the texts were refused (not the service being busy, slow or down)."""
        return self.code in INPUT_ERROR_CODES


def foundation_model_arn(region: str, model_id: str) -> str:
    """The ARN IAM grants on and the Rerank API names a model by."""
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def make_client(settings: Settings, service: Literal["bedrock-runtime", "bedrock-agent-runtime"], **config: Any) -> Any:
    """A boto3 client for Bedrock with standard retries, the configured timeouts and connection pool."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "retries": {"mode": "standard", "total_max_attempts": settings.bedrock_max_attempts},
        "read_timeout": settings.bedrock_timeout_seconds,
        "connect_timeout": min(settings.bedrock_timeout_seconds, 5.0),
        "max_pool_connections": max(10, settings.bedrock_concurrency),
    }
    options.update(config)
    return boto3.client(
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.bedrock_endpoint_url,
        config=Config(**options),
    )


def service_error(err: Exception) -> BedrockServiceError:
    """botocore's error (an answer, or no answer at all) as a BedrockServiceError."""
    from botocore.exceptions import ClientError

    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return BedrockServiceError(error.get("Code") or "Unknown", error.get("Message") or str(err), status)
    return BedrockServiceError(type(err).__name__, str(err))


class ThrottleCounter:
    """Counts the throttled answers a client saw, retried or not (botocore's `needs-retry` event).

    `count` is every one so far; `take()` hands out those not yet reported, once each (Emu publishes
    them per invocation: with several invocations in one process, as locally, none is reported twice).
    """

    def __init__(self, client: Any, operation: str) -> None:
        self.count = 0
        self._reported = 0
        self._lock = threading.Lock()
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"needs-retry.{service}.{operation}", self._seen)

    def _seen(self, response: Any = None, attempts: int = 0, **_: Any) -> None:
        if response is None:
            return
        code = response[1].get("Error", {}).get("Code")
        if code in THROTTLING_CODES:
            with self._lock:
                self.count += 1
            logger.warning("bedrock throttled", extra={"attempt": attempts, "code": code})

    def take(self) -> int:
        """The throttled answers seen since the last `take` (0 when none)."""
        with self._lock:
            new, self._reported = self.count - self._reported, self.count
        return new


class BedrockEmbedder:
    """Embeddings from a Bedrock model through InvokeModel (Titan Text Embeddings V2 or Cohere Embed).

    Titan takes one text per request, so one `embed` call sends its texts concurrently (up to
    `concurrency` requests in flight); Cohere takes up to 96 texts per request and embeds rows as
    `search_document` and queries as `search_query`.
    """

    # Emu's chunk for Titan: 64 single-text requests, `concurrency` at a time (at 2 in flight and ~0.1 s
    # each, a chunk's product locks are held ~3 s; a live batch of 10 texts, ~0.5 s).
    TITAN_BATCH_SIZE = 64

    def __init__(
        self,
        client: Any,
        *,
        model: str,
        dimensions: int | None = None,
        concurrency: int = 2,
    ) -> None:
        spec = EMBEDDING_MODELS.get(model)
        if spec is None:
            raise ConfigurationError(
                f"REFARCH_BEDROCK_MODEL={model!r} is not a supported embedding model; choose one of "
                f"{', '.join(EMBEDDING_MODELS)}"
            )
        dimension = dimensions or spec.dimensions[0]
        if dimension not in spec.dimensions:
            raise ConfigurationError(
                f"{model} embeds in {', '.join(map(str, spec.dimensions))} dimensions, not {dimension} "
                "(REFARCH_BEDROCK_DIMENSIONS)"
            )
        self._client = client
        self.spec = spec
        self.model = model
        self.dimension = dimension
        self.model_id = f"bedrock:{model}:{dimension}"
        self.batch_size = spec.max_texts if spec.max_texts > 1 else self.TITAN_BATCH_SIZE
        # No public tokenizer: long texts are chunked by a conservative estimate (refarch.source.chunking).
        self.max_input_tokens = spec.max_tokens
        self.tokens = EstimatedTokens()
        self.concurrency = concurrency
        self._throttles = ThrottleCounter(client, "InvokeModel")
        self._pool = (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bedrock") if spec.max_texts == 1 else None
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> BedrockEmbedder:
        """The embedder REFARCH_BEDROCK_* configure."""
        return cls(
            make_client(settings, "bedrock-runtime"),
            model=settings.bedrock_model,
            dimensions=settings.bedrock_dimensions,
            concurrency=settings.bedrock_concurrency,
        )

    @property
    def throttled(self) -> int:
        """Throttled answers so far (each one retried by botocore until its attempts ran out)."""
        return self._throttles.count

    def take_throttles(self) -> int:
        """Throttled answers not yet reported (refarch.embeddings.take_throttles: Emu's `EmbedThrottles`)."""
        return self._throttles.take()

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors for rows (Cohere: `search_document`); raises BedrockServiceError once retries are spent."""
        return self._embed(texts, "search_document")

    def embed_query(self, text: str) -> list[float]:
        """The vector for a search query (Cohere: `search_query`; Titan makes no difference)."""
        return self._embed([text], "search_query")[0]

    def _embed(self, texts: list[str], input_type: str) -> list[list[float]]:
        cut = [self._cut(t) for t in texts]
        if self._pool is None:
            size = self.spec.max_texts
            return [
                v for start in range(0, len(cut), size) for v in self._cohere(cut[start : start + size], input_type)
            ]
        if len(cut) == 1:
            return [self._titan(cut[0])]
        return list(self._pool.map(self._titan, cut))

    def _cut(self, text: str) -> str:
        """Within the model's character limit, never empty; Titan's token limit (8,192) is also kept:
        non-ASCII text is cut to that many UTF-8 bytes (a token covers at least one), ASCII to 2.5 chars a token.
        """
        text = text[: self.spec.max_chars]
        if self.spec.family == "titan":
            text = text[:20_480] if text.isascii() else text.encode()[:8192].decode(errors="ignore")
        # Bedrock refuses blank input; a row always has a name, so this only keeps a batch from failing.
        return text if text.strip() else "(no text)"

    def _invoke(self, body: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.invoke_model(
                modelId=self.model, body=json.dumps(body), contentType="application/json", accept="application/json"
            )
            answer: dict[str, Any] = json.loads(response["body"].read())
        except (ClientError, BotoCoreError) as err:
            raise service_error(err) from err
        return answer

    def _titan(self, text: str) -> list[float]:
        answer = self._invoke({"inputText": text, "dimensions": self.dimension, "normalize": True})
        return [float(v) for v in answer["embedding"]]

    def _cohere(self, texts: list[str], input_type: str) -> list[list[float]]:
        answer = self._invoke(
            {"texts": texts, "input_type": input_type, "truncate": "END", "embedding_types": ["float"]}
        )
        vectors = answer["embeddings"]["float"]
        if len(vectors) != len(texts):
            raise BedrockServiceError("InvalidResponse", f"{len(vectors)} vectors for {len(texts)} texts", 502)
        return [[float(v) for v in vector] for vector in vectors]
