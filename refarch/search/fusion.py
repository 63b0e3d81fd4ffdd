"""Reciprocal Rank Fusion with weights per list, and the products that lead it (Cormack, Clarke & Büttcher, 2009).

Each list contributes weight / (k + rank) for every product it ranks (rank 1 is best). Scores of
different kinds (cosine similarity, ts_rank) never need to be made comparable, which is why RRF is
what Pinecone's and pgvector's hybrid-search guides use.

Equal-weight RRF lets a few loosely related semantic neighbours outvote one confident lexical match.
So some products lead the fused ranking whatever the lists say (`first`, in order): an exact SKU or
code match, and the lexical list itself when it is short (`FusionSettings.confident_lexical`: a
query whose words only a handful of products hold names them, and the vector index cannot know
that). Every weight lives in `FUSION`; `refarch bench relevance` reports what each setting does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RRF_K = 60
# What a product that leads the ranking scores on top of its RRF sum: more than fusion can give.
EXACT_SKU_BONUS = 1.0


@dataclass(frozen=True)
class FusionSettings:
    """How hybrid search fuses its lists: the weight of each, and when the lexical list is sure of itself."""

    semantic: float = 1.0
    lexical: float = 1.0
    k: int = RRF_K
    # A lexical list of at most this many products leads the ranking (0: never).
    confident_lexical: int = 0

    def weight(self, name: str) -> float:
        """The weight of the list called `name` (1 for a list with no weight of its own)."""
        return {"semantic": self.semantic, "lexical": self.lexical}.get(name, 1.0)

    def leading(self, lexical: Sequence[int]) -> list[int]:
        """The lexical matches that lead the ranking: all of them when there are few enough, else none."""
        return list(lexical) if 0 < len(lexical) <= self.confident_lexical else []


# Chosen with `refarch bench relevance` (docs/web.md, "How ranking works"), over whole query classes.
FUSION = FusionSettings(semantic=1.0, lexical=1.5, confident_lexical=20)
EQUAL_RRF = FusionSettings()


@dataclass(frozen=True)
class FusedHit:
    """A product in the fused ranking: its fused score and its 1-based rank in every list it came from."""

    id: int
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    # For a long text, where in it the chunk the vector index matched lies (the result's snippet).
    passage: tuple[int, int] | None = None


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[int]],
    *,
    exact_sku: int | None = None,
    first: Sequence[int] = (),
    settings: FusionSettings = EQUAL_RRF,
) -> list[FusedHit]:
    """The fused ranking, best first (ties by id); the exact SKU match, then `first`, lead it in that order.

    The SKU match is reported as a list of its own (`ranks["sku"] == 1`).
    """
    scores: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for name, ids in rankings.items():
        weight = settings.weight(name)
        for position, pid in enumerate(ids, start=1):
            if name in ranks.get(pid, {}):
                continue  # a list names a product once; a repeat is ignored, not counted twice
            scores[pid] = scores.get(pid, 0.0) + weight / (settings.k + position)
            ranks.setdefault(pid, {})[name] = position
    leaders = ([exact_sku] if exact_sku is not None else []) + [pid for pid in first if pid != exact_sku]
    for place, pid in enumerate(leaders):
        # Leaders keep their order: each one's bonus is a little larger than the next one's.
        scores[pid] = scores.get(pid, 0.0) + EXACT_SKU_BONUS * (1 + (len(leaders) - 1 - place) / len(leaders))
        ranks.setdefault(pid, {})
    if exact_sku is not None:
        ranks[exact_sku]["sku"] = 1
    ordered = sorted(scores, key=lambda pid: (-scores[pid], pid))
    return [FusedHit(pid, scores[pid], ranks[pid]) for pid in ordered]
