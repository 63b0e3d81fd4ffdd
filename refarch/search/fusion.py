"""Reciprocal Rank Fusion: one ranking from several, by rank alone (Cormack, Clarke & Büttcher, 2009).

Each list contributes 1 / (RRF_K + rank) for every product it ranks (rank 1 is best). Scores of
different kinds (cosine similarity, ts_rank) never need to be made comparable, which is why RRF is
what Pinecone's and pgvector's hybrid-search guides use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RRF_K = 60
# An exact SKU match outranks anything fusion can give (at most one 1/(RRF_K + 1) per list).
EXACT_SKU_BONUS = 1.0


@dataclass(frozen=True)
class FusedHit:
    """A product in the fused ranking: its fused score and its 1-based rank in every list it came from."""

    id: int
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[int]], *, exact_sku: int | None = None, k: int = RRF_K
) -> list[FusedHit]:
    """The fused ranking, best first (ties by id); an exact SKU match, when given, comes first.

    The SKU match is reported as a list of its own (`ranks["sku"] == 1`).
    """
    scores: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for name, ids in rankings.items():
        for position, pid in enumerate(ids, start=1):
            if name in ranks.get(pid, {}):
                continue  # a list names a product once; a repeat is ignored, not counted twice
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (k + position)
            ranks.setdefault(pid, {})[name] = position
    if exact_sku is not None:
        scores[exact_sku] = scores.get(exact_sku, 0.0) + EXACT_SKU_BONUS
        ranks.setdefault(exact_sku, {})["sku"] = 1
    ordered = sorted(scores, key=lambda pid: (-scores[pid], pid))
    return [FusedHit(pid, scores[pid], ranks[pid]) for pid in ordered]
