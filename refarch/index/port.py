"""The VectorIndex port, and the records and filters every index shares.

The adapters: `refarch.index.pgvector_index` (a table in the same Postgres) and
`refarch.index.pinecone_index` (SDK v10); `refarch.index.factory` picks one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from refarch.settings import ConfigurationError


class DimensionMismatchError(ConfigurationError):
    """The index was built for vectors of another size than the embedder produces."""


# A long text's chunk carries these in its metadata besides the row's (refarch.source.chunking): its
# number, the row's number of chunks, the hash of its own text and its characters' place in the row's
# text. A row of one chunk (a text that fits the window) has none of them: its vector is as it always was.
CHUNK_KEYS = ("chunk", "chunks", "chunk_hash", "chunk_start", "chunk_end")


@dataclass(frozen=True)
class VectorRecord:
    """A vector with its metadata; `id` is the row's id (the Postgres product id), `chunk` its chunk's number."""

    id: int
    values: list[float]
    metadata: dict[str, Any]
    chunk: int = 0


@dataclass(frozen=True)
class Match:
    """One query result: row id, cosine similarity, stored metadata, and which chunk of the row matched."""

    id: int
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    chunk: int = 0


@dataclass(frozen=True)
class StoredChunk:
    """A stored vector of one chunk, with its metadata (what Emu reuses when a chunk's text did not change)."""

    values: list[float]
    metadata: dict[str, Any]


def vector_id(row_id: int, chunk: int = 0) -> str:
    """The id of a row's chunk in an index that keys vectors by text (Pinecone): "17" for a row's first
    (or only) chunk, "17#3" for its fourth. Every chunk's id starts with the row's: listing by prefix finds them."""
    return str(row_id) if chunk == 0 else f"{row_id}#{chunk}"


def parse_vector_id(text: str) -> tuple[int, int]:
    """(row id, chunk number) of a vector id made by `vector_id`."""
    row, _, chunk = text.partition("#")
    return int(row), int(chunk or 0)


@dataclass
class HeldRow:
    """What an index holds for one row: each chunk's metadata by chunk number."""

    chunks: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def first(self) -> dict[str, Any]:
        """The metadata of the row's first chunk (its only one for most rows), or of its lowest if that is gone."""
        return self.chunks[min(self.chunks)]

    @property
    def complete(self) -> bool:
        """Every chunk of the row is there and no other, all written for the same version of the same text."""
        count = int(self.first.get("chunks", 1))
        same = {(m.get("version"), m.get("content_hash")) for m in self.chunks.values()}
        return set(self.chunks) == set(range(count)) and len(same) == 1


def held_rows(scanned: Iterator[tuple[int, dict[str, Any]]]) -> dict[int, HeldRow]:
    """An index's `scan` grouped by row."""
    rows: dict[int, HeldRow] = {}
    for pid, metadata in scanned:
        rows.setdefault(pid, HeldRow()).chunks[int(metadata.get("chunk", 0))] = metadata
    return rows


def best_per_row(matches: list[Match]) -> list[Match]:
    """One match per row, its best chunk's, in score order: search ranks rows, not chunks."""
    best: dict[int, Match] = {}
    for match in matches:
        if match.id not in best or match.score > best[match.id].score:
            best[match.id] = match
    return sorted(best.values(), key=lambda m: -m.score)


@dataclass(frozen=True)
class SearchFilter:
    """Metadata filters every index supports: the products' category and price range, and equality on
    any other filter column of the source definition (`fields`: (column, value) pairs, e.g. author)."""

    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    fields: tuple[tuple[str, Any], ...] = ()

    def sql_conditions(self) -> tuple[list[str], list[object]]:
        """The filters as SQL conditions on the columns they name, with their parameters.

        The one translation to SQL, shared by pgvector's product columns, full-text search and listings.
        Prices go in as exact decimals, so 19.99 compares equal to the numeric column's 19.99. Column
        names in `fields` come from the source definition (checked identifiers), quoted all the same.
        """
        conditions: list[str] = []
        params: list[object] = []
        if self.category is not None:
            conditions.append("category = %s")
            params.append(self.category)
        if self.min_price is not None:
            conditions.append("price >= %s")
            params.append(Decimal(str(self.min_price)))
        if self.max_price is not None:
            conditions.append("price <= %s")
            params.append(Decimal(str(self.max_price)))
        for column, value in self.fields:
            conditions.append(f'"{column}" = %s')
            params.append(value)
        return conditions, params

    def metadata_equals(self) -> dict[str, Any]:
        """`fields` as the metadata they must equal (a jsonb containment, a Pinecone $eq each)."""
        return dict(self.fields)


class VectorIndex(Protocol):
    """Where vectors live, one per chunk of a row (most rows: one). Every method is idempotent."""

    dimension: int

    def upsert(self, records: list[VectorRecord]) -> None:
        """Insert or replace vectors with their metadata."""

    def update_metadata(self, updates: dict[int, dict[str, Any]]) -> None:
        """Replace the row's metadata on every chunk of these rows without touching vectors or chunk keys
        (`chunks` in the metadata: how many the row has)."""

    def delete(self, ids: list[int]) -> None:
        """Remove every chunk of these rows (absent ids are fine)."""

    def delete_chunks_from(self, first_unused: dict[int, int]) -> None:
        """Remove each row's chunks numbered from the given one on (a text that shrank: no orphan chunk)."""

    def fetch_chunks(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], StoredChunk]:
        """The stored vectors and metadata of these (row id, chunk) keys (absent keys are left out)."""
        ...

    def query(self, vector: list[float], *, top_k: int, filter: SearchFilter | None = None) -> list[Match]:
        """The top_k nearest vectors (cosine), best first: chunks, several of one row possibly (`best_per_row`)."""
        ...

    def count(self) -> int:
        """How many vectors the index holds."""
        ...

    def scan(self, prefix: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
        """Every (row id, metadata) in the index whose row's decimal id starts with `prefix`, for
        reconciliation: one per vector, so a row of several chunks comes once per chunk (`chunk` in metadata)."""
        ...

    def fetch_metadata(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """The metadata of these rows' first chunks (absent ids are left out)."""
        ...

    def fetch_vectors(self, ids: list[int]) -> dict[int, list[float]]:
        """The stored vectors of these rows' first chunks (absent ids are left out), to check them against a
        re-embedding."""
        ...

    def drop(self) -> None:
        """Remove every vector and the place that held them (a dropped index generation)."""
