"""Reciprocal Rank Fusion as a pure function: table-driven."""

from __future__ import annotations

import pytest

from refarch.search.fusion import EXACT_SKU_BONUS, RRF_K, FusionSettings, reciprocal_rank_fusion


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


@pytest.mark.parametrize(
    ("settings", "expected_order"),
    [
        # Equal weights: found by both beats first place in one; ties by id.
        (FusionSettings(), [2, 1, 3]),
        # Lexical weighs more: its first place beats semantic's first place.
        (FusionSettings(lexical=1.5), [2, 3, 1]),
    ],
)
def test_each_list_counts_with_its_weight(settings, expected_order):
    # Given a semantic and a lexical list, When fused with weights per list
    fused = reciprocal_rank_fusion({"semantic": [1, 2], "lexical": [3, 2]}, settings=settings)
    # Then each list adds weight / (k + rank)
    assert [h.id for h in fused] == expected_order
    assert fused[0].score == pytest.approx(settings.semantic / (RRF_K + 2) + settings.lexical / (RRF_K + 2))


def test_products_that_lead_come_first_in_their_order_after_the_exact_sku():
    # Given semantic noise ranking other products high, an exact SKU match and two leaders
    rankings = {"semantic": [5, 6, 7, 8], "lexical": [8, 7]}
    # When fused
    fused = reciprocal_rank_fusion(rankings, exact_sku=9, first=[8, 7, 9])
    # Then the SKU match, then the leaders in order, then the rest by RRF
    assert [h.id for h in fused] == [9, 8, 7, 5, 6]
    assert fused[0].ranks == {"sku": 1}


@pytest.mark.parametrize(
    ("confident_lexical", "lexical", "leading"),
    [
        (0, [4], []),  # the rule off
        (3, [], []),  # nothing matched: nothing to lead
        (3, [4, 5, 6], [4, 5, 6]),  # few matches: the query's words are rare, the matches are sure
        (3, [4, 5, 6, 7], []),  # many matches: common words, let fusion decide
    ],
)
def test_a_short_lexical_list_leads(confident_lexical, lexical, leading):
    assert FusionSettings(confident_lexical=confident_lexical).leading(lexical) == leading
