"""Slices of the product id space that Postgres and every vector index can read on their own.

Reconcile fans out over them (one Step Functions Map item per shard), so its time and memory are
bounded per shard, not by the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A shard holds ids with one decimal prefix: at most ~10**SHARD_DIGITS * 1.11 of them (memory and
# the Lambda's 15 minutes bound a shard, not the catalog).
SHARD_DIGITS = 5
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class Shard:
    """A slice of the id space that both sides can read on their own.

    By decimal prefix (Pinecone lists ids by prefix; in Postgres a prefix is a few id ranges), or,
    for the few ids too short to have the shards' prefix length, every id below `below`.
    """

    prefix: str = ""
    below: int | None = None

    def ranges(self) -> list[tuple[int, int]]:
        """The id ranges this shard covers, inclusive."""
        if self.below is not None:
            return [(1, self.below - 1)]
        if not self.prefix:
            return [(1, MAX_ID)]
        start, out, scale = int(self.prefix), [], 1
        while start * scale <= MAX_ID:
            out.append((start * scale, min((start + 1) * scale - 1, MAX_ID)))
            scale *= 10
        return out

    def as_item(self) -> dict[str, Any]:
        """A Map item."""
        return {"prefix": self.prefix} if self.below is None else {"below": self.below}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Shard:
        """The shard a Map item names."""
        return cls(below=int(item["below"])) if item.get("below") is not None else cls(prefix=str(item["prefix"]))
