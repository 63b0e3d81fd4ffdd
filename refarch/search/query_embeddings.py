"""Query vectors for search, cached: a repeated query costs no embedding request.

Bounded in bytes (least recently used entries go first) and keyed by the embedder's model id as
well as the text, so vectors of one model are never answered for another. Vectors are kept as
float32 (`array('f')`, 4 bytes a dimension: ~6 KB at 1,536-d, not the ~49.6 KB of a list of Python
floats) and handed back as floats: float32 keeps ~7 significant digits, far more than a cosine
ranking needs. The cache belongs to one process (the web app's Runtime); it holds vectors of public
queries only, nothing from the database. Sizing: docs/web.md, "Memory".
"""

from __future__ import annotations

import sys
import threading
from array import array
from dataclasses import dataclass

from cachetools import LRUCache

from refarch.embeddings import Embedder, embed_query
from refarch.search.budget import BudgetSpentError, Deadline

# The settings' default (Settings.query_cache_bytes): 32 MiB, ~4,900 queries at 1,536-d, ~14,000 at 384-d.
DEFAULT_MAX_BYTES = 32 * 2**20
# What an entry costs besides its vector and key objects: its slot in the cache's dict and in its LRU
# order, and the entry object (measured with tracemalloc: tests/unit/test_query_cache.py).
ENTRY_OVERHEAD_BYTES = 400


class EmbeddingUnavailableError(Exception):
    """The embedding service failed, timed out or refused the request; `slow` when it ran out of time."""

    def __init__(self, message: str, *, slow: bool = False) -> None:
        super().__init__(message)
        self.slow = slow


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


def is_embedding_timeout(err: Exception) -> bool:
    """Whether `err` is the embedding service not answering in time."""
    from refarch.bedrock import BedrockServiceError

    if isinstance(err, BedrockServiceError):
        return "Timeout" in err.code  # botocore's ReadTimeoutError / ConnectTimeoutError
    try:
        import openai
    except ImportError:
        return False
    return isinstance(err, openai.APITimeoutError)


@dataclass(frozen=True, slots=True)
class CachedVector:
    """A query vector as float32, with what its entry weighs in the cache."""

    values: array[float]
    nbytes: int

    @classmethod
    def of(cls, key: tuple[str, str], vector: list[float]) -> CachedVector:
        """The compact form of `vector`, weighed with its key."""
        values = array("f", vector)
        weight = sys.getsizeof(values) + sum(map(sys.getsizeof, key)) + sys.getsizeof(key) + ENTRY_OVERHEAD_BYTES
        return cls(values, weight)


def entry_bytes(entry: CachedVector) -> int:
    """What one entry weighs (the cache's `getsizeof`)."""
    return entry.nbytes


class QueryEmbeddings:
    """The embedder behind a cache of at most `max_bytes` per (model id, query text)."""

    def __init__(self, embedder: Embedder | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.embedder = embedder
        self._cache: LRUCache[tuple[str, str], CachedVector] = LRUCache(maxsize=max_bytes, getsizeof=entry_bytes)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def max_bytes(self) -> int:
        """The cache's size limit in bytes."""
        return int(self._cache.maxsize)

    @property
    def current_bytes(self) -> int:
        """What the cached entries weigh now."""
        with self._lock:
            return int(self._cache.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def vector(self, query: str, embedder: Embedder | None = None, *, deadline: Deadline | None = None) -> list[float]:
        """The query's vector, from the cache or an embedding request; EmbeddingUnavailableError on an outage.

        `embedder` (the active index generation's) overrides the one given at construction. With a
        `deadline`, the request is retried within it (EmbeddingUnavailableError(slow=True) once it is spent).
        """
        embedder = embedder or self.embedder
        if embedder is None:
            raise ValueError("no embedder: pass one to QueryEmbeddings or to vector()")
        key = (embedder.model_id, query)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self.hits += 1
                return cached.values.tolist()
            self.misses += 1
        vector = self._embed(embedder, query, deadline)
        entry = CachedVector.of(key, vector)
        with self._lock:
            if entry.nbytes <= self._cache.maxsize:  # a cache too small for any entry keeps none
                self._cache[key] = entry
        return entry.values.tolist()

    def _embed(self, embedder: Embedder, query: str, deadline: Deadline | None) -> list[float]:
        """One embedding (within the deadline, when there is one), with failures as EmbeddingUnavailableError."""
        try:
            if deadline is None:
                return embed_query(embedder, query)
            return deadline.call(lambda: embed_query(embedder, query), retryable=is_embedding_outage, what="embedding")
        except BudgetSpentError as err:
            raise EmbeddingUnavailableError(str(err), slow=True) from err
        except Exception as err:
            if is_embedding_outage(err):
                raise EmbeddingUnavailableError(f"{type(err).__name__}: {err}", slow=is_embedding_timeout(err)) from err
            raise

    def clear(self) -> None:
        """Forget every cached vector (benchmarks measure the embedding cost this way)."""
        with self._lock:
            self._cache.clear()
