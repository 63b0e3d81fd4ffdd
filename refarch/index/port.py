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


@dataclass(frozen=True)
class VectorRecord:
    """A vector with its metadata; `id` is the Postgres product id."""

    id: int
    values: list[float]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Match:
    """One query result: product id, cosine similarity, stored metadata."""

    id: int
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


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
    """Where vectors live. Every method is idempotent."""

    dimension: int

    def upsert(self, records: list[VectorRecord]) -> None:
        """Insert or replace vectors with their metadata."""

    def update_metadata(self, updates: dict[int, dict[str, Any]]) -> None:
        """Replace metadata of existing vectors without touching the vectors."""

    def delete(self, ids: list[int]) -> None:
        """Remove vectors (absent ids are fine)."""

    def query(self, vector: list[float], *, top_k: int, filter: SearchFilter | None = None) -> list[Match]:
        """The top_k nearest vectors (cosine), best first."""
        ...

    def count(self) -> int:
        """How many vectors the index holds."""
        ...

    def scan(self, prefix: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
        """Every (id, metadata) in the index whose decimal id starts with `prefix`, for reconciliation."""
        ...

    def fetch_metadata(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """The metadata of these ids (absent ids are left out)."""
        ...

    def fetch_vectors(self, ids: list[int]) -> dict[int, list[float]]:
        """The stored vectors of these ids (absent ids are left out), to check them against a re-embedding."""
        ...

    def drop(self) -> None:
        """Remove every vector and the place that held them (a dropped index generation)."""
