"""PineconeIndex: the VectorIndex adapter for a Pinecone serverless index (SDK v10), and its upsert batching."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from refarch.index.port import (
    DimensionMismatchError,
    Match,
    SearchFilter,
    StoredChunk,
    VectorRecord,
    parse_vector_id,
    vector_id,
)
from refarch.settings import ConfigurationError


class PineconeIndex:
    """A Pinecone serverless index through the `pinecone` SDK v10 (a custom host works with Pinecone Local)."""

    # Pinecone caps an upsert at 2 MB and 1000 vectors, and recommends batches of <= 100. The SDK
    # sends JSON: a 1536-d float vector is ~30 KB of it, so 100 of them would be ~3 MB. Batches are
    # cut at 100 vectors or at this many bytes of JSON, whichever comes first (~55 at 1536-d).
    UPSERT_BATCH = 100
    MAX_REQUEST_BYTES = 1_900_000
    DELETE_BATCH = 1000

    def __init__(
        self,
        *,
        api_key: str,
        dimension: int,
        index_name: str | None = None,
        host: str | None = None,
        namespace: str = "products",
        timeout_seconds: float = 30.0,
        max_retries: int = 3,
    ) -> None:
        from pinecone import Pinecone

        if host:
            target = {"host": host}
        elif index_name:
            target = {"name": index_name}
        else:
            raise ConfigurationError("Pinecone chosen but neither PINECONE_INDEX_NAME nor PINECONE_HOST is set")
        # Every request's timeout and retries (the SDK's defaults unless given): search's client waits
        # at most its budget's attempt and retries nothing itself (refarch.serving.SEARCH_BUDGET).
        self._pc = Pinecone(api_key=api_key, timeout=timeout_seconds)
        self.index_name = index_name
        self._index = self._pc.Index(**target)
        limit_retries(self._index, max_retries)
        self.namespace = namespace
        self.dimension = dimension

    def ensure(self) -> None:
        """Check the index dimension against the embedder's."""
        stats = self._index.describe_index_stats()
        existing = int(stats.dimension) if stats.dimension else None
        if existing is not None and existing != self.dimension:
            raise DimensionMismatchError(
                f"Pinecone index {self.index_name or self._index.host} has dimension {existing} but the embedder "
                f"produces {self.dimension}-d vectors: create a new index or change the embedder"
            )

    def drop(self) -> None:
        """Delete every vector of this namespace (a retired generation past its grace period); a
        namespace already gone is dropped."""
        from pinecone import NotFoundError

        try:
            self._index.delete(delete_all=True, namespace=self.namespace)
        except NotFoundError:
            return

    def upsert(self, records: list[VectorRecord]) -> None:
        """Upsert in request-sized batches (<= UPSERT_BATCH vectors and <= MAX_REQUEST_BYTES each)."""
        for batch in upsert_batches(
            [{"id": vector_id(r.id, r.chunk), "values": r.values, "metadata": r.metadata} for r in records],
            max_vectors=self.UPSERT_BATCH,
            max_bytes=self.MAX_REQUEST_BYTES,
        ):
            self._index.upsert(vectors=batch, namespace=self.namespace)

    def update_metadata(self, updates: dict[int, dict[str, Any]]) -> None:
        """One call per row: by id for a row of one vector, by a filter on the row's id for one of several
        chunks (set_metadata merges: each chunk keeps its own keys)."""
        for pid, metadata in updates.items():
            if int(metadata.get("chunks", 1)) > 1:
                self._index.update(filter={"product_id": {"$eq": pid}}, set_metadata=metadata, namespace=self.namespace)
            else:
                self._index.update(id=str(pid), set_metadata=metadata, namespace=self.namespace)

    def delete(self, ids: list[int]) -> None:
        """Delete each row's first vector by id, and its other chunks by a filter on the row's id."""
        for start in range(0, len(ids), self.DELETE_BATCH):
            batch = ids[start : start + self.DELETE_BATCH]
            self._index.delete(ids=[str(i) for i in batch], namespace=self.namespace)
            self._index.delete(filter={"product_id": {"$in": batch}, "chunk": {"$gte": 1}}, namespace=self.namespace)

    def delete_chunks_from(self, first_unused: dict[int, int]) -> None:
        """One delete by filter per distinct first unused chunk number (rows of one chunk: one call)."""
        by_first: dict[int, list[int]] = {}
        for pid, first in first_unused.items():
            by_first.setdefault(max(1, first), []).append(pid)
        for first, pids in sorted(by_first.items()):
            for start in range(0, len(pids), self.DELETE_BATCH):
                self._index.delete(
                    filter={"product_id": {"$in": pids[start : start + self.DELETE_BATCH]}, "chunk": {"$gte": first}},
                    namespace=self.namespace,
                )

    def fetch_chunks(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], StoredChunk]:
        """Stored chunks by (row id, chunk), fetched 100 at a time."""
        found: dict[tuple[int, int], StoredChunk] = {}
        ids = [vector_id(*key) for key in keys]
        for start in range(0, len(ids), self.UPSERT_BATCH):
            fetched = self._index.fetch(ids=ids[start : start + self.UPSERT_BATCH], namespace=self.namespace)
            for vid, vec in fetched.vectors.items():
                found[parse_vector_id(vid)] = StoredChunk(list(vec.values), dict(vec.metadata or {}))
        return found

    def query(self, vector: list[float], *, top_k: int, filter: SearchFilter | None = None) -> list[Match]:
        """Top-k with a Pinecone metadata filter."""
        pinecone_filter: dict[str, Any] = {}
        if filter and filter.category is not None:
            pinecone_filter["category"] = {"$eq": filter.category}
        price: dict[str, float] = {}
        if filter and filter.min_price is not None:
            price["$gte"] = filter.min_price
        if filter and filter.max_price is not None:
            price["$lte"] = filter.max_price
        if price:
            pinecone_filter["price"] = price
        for column, value in filter.metadata_equals().items() if filter else ():
            pinecone_filter[column] = {"$eq": value}
        result = self._index.query(
            vector=vector,
            top_k=top_k,
            namespace=self.namespace,
            include_metadata=True,
            filter=pinecone_filter or None,
        )
        matches = []
        for m in result.matches:
            row, chunk = parse_vector_id(m.id)
            matches.append(Match(id=row, score=float(m.score), metadata=dict(m.metadata or {}), chunk=chunk))
        return matches

    def count(self) -> int:
        """Vectors in our namespace."""
        stats = self._index.describe_index_stats()
        ns = (stats.namespaces or {}).get(self.namespace)
        return int(ns.vector_count) if ns else 0

    def scan(self, prefix: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
        """List ids (by prefix) page by page, fetching their metadata."""
        # SDK v10 yields one ListResponse per page; its items carry only an id.
        pages = (
            self._index.list(prefix=prefix, namespace=self.namespace)
            if prefix
            else self._index.list(namespace=self.namespace)
        )
        for page in pages:
            ids = [item.id for item in page.vectors if item.id]
            fetched = self._index.fetch(ids=ids, namespace=self.namespace)
            for vid, vec in fetched.vectors.items():
                yield parse_vector_id(vid)[0], dict(vec.metadata or {})

    def fetch_metadata(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Metadata by id (fetched 100 at a time)."""
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), self.UPSERT_BATCH):
            chunk = [str(i) for i in ids[start : start + self.UPSERT_BATCH]]
            fetched = self._index.fetch(ids=chunk, namespace=self.namespace)
            found.update({int(vid): dict(vec.metadata or {}) for vid, vec in fetched.vectors.items()})
        return found

    def fetch_vectors(self, ids: list[int]) -> dict[int, list[float]]:
        """Stored vectors by id (fetched 100 at a time)."""
        found: dict[int, list[float]] = {}
        for start in range(0, len(ids), self.UPSERT_BATCH):
            chunk = [str(i) for i in ids[start : start + self.UPSERT_BATCH]]
            fetched = self._index.fetch(ids=chunk, namespace=self.namespace)
            found.update({int(vid): list(vec.values) for vid, vec in fetched.vectors.items()})
        return found


def limit_retries(index: Any, max_retries: int) -> None:
    """Set the data-plane client's retries (the SDK's HTTP Index takes no retry setting of its own).

    The SDK retries 429 and 5xx answers and timeouts 3 times, honouring a Retry-After of up to 60 s:
    right for Emu, far past a search's budget. Its retry transport reads its RetryConfig per request,
    so a replaced config applies from the next request on. A change in the SDK's layout is refused
    loudly rather than leaving search with retries it cannot afford.
    """
    from dataclasses import replace

    from pinecone import RetryConfig

    transport = getattr(getattr(getattr(index, "_http", None), "_client", None), "_transport", None)
    config = getattr(transport, "_config", None)
    if not isinstance(config, RetryConfig):
        raise ConfigurationError(
            "cannot set the Pinecone SDK's retries: its HTTP client changed (refarch pins pinecone 10.x); "
            "see refarch.index.pinecone_index.limit_retries"
        )
    if config.max_retries != max_retries:
        transport._config = replace(config, max_retries=max_retries)  # type: ignore[union-attr]


def upsert_batches(vectors: list[dict[str, Any]], *, max_vectors: int, max_bytes: int) -> list[list[dict[str, Any]]]:
    """Split upsert payloads into consecutive batches within a vector count and a JSON size."""
    batches: list[list[dict[str, Any]]] = []
    size = 0
    for vector in vectors:
        cost = len(json.dumps(vector)) + 2  # the separator, and some slack for the SDK's own encoding
        if not batches or len(batches[-1]) >= max_vectors or size + cost > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(vector)
        size += cost
    return batches
