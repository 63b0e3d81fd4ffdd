"""Where one index generation's vectors live: a pgvector table, or a Pinecone index and namespace.

A tagged union of two frozen records, stored as JSON in `index_generations.target`. The one place
that reads that JSON is `target_from_json`; everything else matches on the type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class PgVectorTable:
    """A pgvector table in the same Postgres (one per generation)."""

    table: str

    def describe(self) -> str:
        """For people: where the vectors are."""
        return f"table {self.table}"


@dataclass(frozen=True, kw_only=True)
class PineconeNamespace:
    """A namespace in a Pinecone index, found by name or by host (Pinecone Local, a custom host)."""

    index_name: str | None
    host: str | None
    namespace: str
    # The re-index created this index for this generation alone (another dimension): gc may delete it.
    dedicated: bool = False

    def describe(self) -> str:
        """For people: where the vectors are."""
        return f"index {self.index_name or self.host}, namespace {self.namespace}"


VectorTarget = PgVectorTable | PineconeNamespace


def target_from_json(value: dict[str, Any] | None) -> VectorTarget | None:
    """The target recorded in `index_generations.target` (None before generation 1 is recorded).

    Bookkeeping kept beside it in the same JSON (`index_removed`) is not part of the target.
    """
    if not value or not ({"table", "namespace"} & value.keys()):
        return None
    if "table" in value:
        return PgVectorTable(table=value["table"])
    return PineconeNamespace(
        index_name=value.get("index_name"),
        host=value.get("host"),
        namespace=value["namespace"],
        dedicated=bool(value.get("dedicated", False)),
    )


def target_as_json(target: VectorTarget) -> dict[str, Any]:
    """The JSON recorded for a target (the shape `target_from_json` reads)."""
    recorded = asdict(target)
    if isinstance(target, PineconeNamespace) and not target.dedicated:
        recorded.pop("dedicated")
    return recorded
