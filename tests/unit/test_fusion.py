"""Reciprocal Rank Fusion as a pure function: table-driven."""

from __future__ import annotations

import pytest

from refarch.search.fusion import EXACT_SKU_BONUS, RRF_K, reciprocal_rank_fusion


def rrf(*ranks: int) -> float:
    return sum(1 / (RRF_K + r) for r in ranks)


@pytest.mark.parametrize(
    ("rankings", "exact_sku", "expected"),
    [
        # One list: its order, scores 1/(60 + rank).
        ({"semantic": [7, 3]}, None, [(7, rrf(1), {"semantic": 1}), (3, rrf(2), {"semantic": 2})]),
        # Found by both lists beats first place in one.
        (
            {"semantic": [1, 2], "lexical": [3, 2]},
            None,
            [(2, rrf(2, 2), {"semantic": 2, "lexical": 2}), (1, rrf(1), {"semantic": 1}), (3, rrf(1), {"lexical": 1})],
        ),
        # An empty list (no keyword matched) leaves the other ranking as it was.
        (
            {"semantic": [5, 4, 6], "lexical": []},
            None,
            [(5, rrf(1), {"semantic": 1}), (4, rrf(2), {"semantic": 2}), (6, rrf(3), {"semantic": 3})],
        ),
        # The exact SKU match comes first even when no list ranks it high, and says so.
        (
            {"semantic": [1, 2, 3], "lexical": [1]},
            3,
            [
                (3, EXACT_SKU_BONUS + rrf(3), {"semantic": 3, "sku": 1}),
                (1, rrf(1, 1), {"semantic": 1, "lexical": 1}),
                (2, rrf(2), {"semantic": 2}),
            ],
        ),
        # An exact SKU match no list returned is still first.
        ({"semantic": [1]}, 9, [(9, EXACT_SKU_BONUS, {"sku": 1}), (1, rrf(1), {"semantic": 1})]),
        # Equal scores: the lower id first (a stable order for paging).
        ({"semantic": [8], "lexical": [4]}, None, [(4, rrf(1), {"lexical": 1}), (8, rrf(1), {"semantic": 1})]),
        # A list naming a product twice counts it once, at its better rank.
        ({"semantic": [2, 2, 1]}, None, [(2, rrf(1), {"semantic": 1}), (1, rrf(3), {"semantic": 3})]),
    ],
)
def test_reciprocal_rank_fusion(rankings, exact_sku, expected):
    # Given ranked lists (and maybe an exact SKU match), When fused
    fused = reciprocal_rank_fusion(rankings, exact_sku=exact_sku)
    # Then ids, scores and per-list ranks are as RRF defines them, best first
    assert [(h.id, h.ranks) for h in fused] == [(pid, ranks) for pid, _, ranks in expected]
    assert [h.score for h in fused] == pytest.approx([score for _, score, _ in expected])
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)
