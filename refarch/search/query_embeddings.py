"""Query vectors for search, cached: a repeated query costs no embedding request.

Bounded (least recently used entries go first) and keyed by the embedder's model id as well as the
text, so vectors of one model are never answered for another. The cache belongs to one process
(the web app's Runtime); it holds vectors of public queries only, nothing from the database.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache

from refarch.embeddings import Embedder, embed_query

# 4,096 cached 1,536-d vectors (OpenAI's default size) take ~50 MB as Python floats; 384-d ~13 MB.
DEFAULT_MAX_ENTRIES = 4096


class EmbeddingUnavailableError(Exception):
    """The embedding service failed, timed out or refused the request (after its SDK's retries)."""


def is_embedding_outage(err: Exception) -> bool:
    """Whether `err` is the embedding service being unavailable (not a bug in our request or code)."""
    from refarch.bedrock import BedrockServiceError

    if isinstance(err, BedrockServiceError):
        return True
    try:
        import openai
    except ImportError:  # without the SDK there is no OpenAI embedder to fail
        return False
    return isinstance(err, openai.APIError)


class QueryEmbeddings:
    """The embedder behind a bounded cache per (model id, query text)."""

    def __init__(self, embedder: Embedder | None = None, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.embedder = embedder
        self._cache: LRUCache[tuple[str, str], list[float]] = LRUCache(maxsize=max_entries)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def vector(self, query: str, embedder: Embedder | None = None) -> list[float]:
        """The query's vector, from the cache or one embedding request; EmbeddingUnavailableError on an outage.

        `embedder` (the active index generation's) overrides the one given at construction.
        """
        embedder = embedder or self.embedder
        if embedder is None:
            raise ValueError("no embedder: pass one to QueryEmbeddings or to vector()")
        key = (embedder.model_id, query)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self.hits += 1
                return cached
            self.misses += 1
        try:
            vector = embed_query(embedder, query)
        except Exception as err:
            if is_embedding_outage(err):
                raise EmbeddingUnavailableError(f"{type(err).__name__}: {err}") from err
            raise
        with self._lock:
            self._cache[key] = vector
        return vector

    def clear(self) -> None:
        """Forget every cached vector (benchmarks measure the embedding cost this way)."""
        with self._lock:
            self._cache.clear()
