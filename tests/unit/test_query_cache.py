"""The query-vector cache: compact float32 vectors, bounded by what they weigh in bytes."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from refarch.search.query_embeddings import QueryEmbeddings
from refarch_local.standins import hashed_embedding

DIMENSION = 1536


class HashedEmbedder:
    """The OpenAI stand-in's deterministic vectors, computed in this process; counts its calls."""

    model_id = f"hashed:{DIMENSION}"
    dimension = DIMENSION
    batch_size = 64

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One call per request, as a provider counts them."""
        self.calls += 1
        return [hashed_embedding(t, DIMENSION) for t in texts]


def test_a_cached_vector_is_the_stored_one_within_float32_precision() -> None:
    # Given a query embedded once
    embedder = HashedEmbedder()
    cache = QueryEmbeddings(embedder)
    first = cache.vector("waterproof tent for family camping")
    # When it is asked for again
    again = cache.vector("waterproof tent for family camping")
    # Then no second request was made, and the vector is the provider's to float32 precision
    assert embedder.calls == 1
    exact = hashed_embedding("waterproof tent for family camping", DIMENSION)
    assert again == first and len(again) == DIMENSION
    assert again == pytest.approx(exact, rel=1e-6, abs=1e-7)


def test_the_cache_evicts_the_least_recently_used_entries_by_bytes() -> None:
    # Given a cache with room for about 20 vectors of 1,536 dimensions (~7 KB each as float32)
    embedder = HashedEmbedder()
    cache = QueryEmbeddings(embedder, max_bytes=20 * 7_000)
    # When 60 distinct queries are asked, the first one again after every ten
    for n in range(60):
        cache.vector(f"query number {n}")
        if n % 10 == 9:
            cache.vector("query number 0")
    # Then the cache weighs no more than its budget, and holds about as many vectors as fit
    assert 0 < cache.current_bytes <= cache.max_bytes
    assert 15 <= len(cache) <= 20
    # And the oldest untouched query was evicted, while the recent and the recently used ones were kept
    calls = embedder.calls
    cache.vector("query number 59")
    cache.vector("query number 0")
    assert embedder.calls == calls
    cache.vector("query number 1")
    assert embedder.calls == calls + 1


def test_a_cache_too_small_for_one_vector_keeps_none_and_still_answers() -> None:
    embedder = HashedEmbedder()
    cache = QueryEmbeddings(embedder, max_bytes=1_000)
    assert len(cache.vector("tent")) == DIMENSION
    assert len(cache) == 0


def test_what_the_cache_counts_covers_what_its_entries_take_in_memory() -> None:
    # Given a cache with room for every entry
    embedder = HashedEmbedder()
    cache = QueryEmbeddings(embedder, max_bytes=2**30)
    queries = [f"a distinct query of ordinary length, number {n}" for n in range(300)]
    # When 300 queries are cached, measuring what the process allocated and kept
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for query in queries:
        cache.vector(query)
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # Then the cache's own count is at least what the entries take, and not wildly more
    assert kept <= cache.current_bytes <= 2 * kept
    # And a float32 entry is a small fraction of a list of Python floats (~49.6 KB at 1,536-d)
    assert cache.current_bytes / len(queries) < 8_000
