"""Which hits a rerank reorders, what it leaves in place, and when the fused order is kept (pure: no service)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from refarch.bedrock import BedrockServiceError
from refarch.search.fusion import FusedHit
from refarch.search.rerank import rerank, rerank_or_keep


class ReverseReranker:
    """Ranks documents in reverse order, relevance falling from 0.9 (or fails as asked)."""

    model_id = "test:reverse"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.seen: list[list[str]] = []

    def rank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        self.seen.append(list(documents))
        if self.error is not None:
            raise self.error
        return [(i, 0.9 - n * 0.1) for n, i in enumerate(reversed(range(len(documents))))]


def hits(*ranks: dict[str, int]) -> list[FusedHit]:
    return [FusedHit(n, 1.0 / n, r) for n, r in enumerate(ranks, start=1)]


def texts(ids: list[int]) -> dict[int, str]:
    return {pid: f"text {pid}" for pid in ids if pid != 99}


def test_the_top_candidates_are_reordered_and_marked_the_rest_keep_their_place():
    ranked = hits(*[{"semantic": n} for n in range(1, 7)])
    result = rerank(ReverseReranker(), "q", ranked, texts, candidates=4)
    assert [h.id for h in result] == [4, 3, 2, 1, 5, 6]
    assert [h.ranks.get("rerank") for h in result] == [1, 2, 3, 4, None, None]
    assert [h.score for h in result[:4]] == pytest.approx([0.9, 0.8, 0.7, 0.6])


def test_exact_identifier_matches_keep_their_lead_and_are_not_sent():
    ranked = hits({"sku": 1}, {"code": 1}, {"semantic": 1}, {"lexical": 1})
    reranker = ReverseReranker()
    result = rerank(reranker, "q", ranked, texts, candidates=10)
    assert [h.id for h in result] == [1, 2, 4, 3]
    assert reranker.seen == [["text 3", "text 4"]]


def test_a_row_deleted_meanwhile_is_left_unreranked_and_one_candidate_is_not_worth_a_call():
    ranked = [FusedHit(99, 0.5, {"semantic": 1}), *hits({"semantic": 2}, {"semantic": 3})]
    assert [h.id for h in rerank(ReverseReranker(), "q", ranked, texts, candidates=10)] == [2, 1, 99]
    reranker = ReverseReranker()
    single = hits({"semantic": 1})
    assert rerank(reranker, "q", single, texts, candidates=10) == single and reranker.seen == []


def test_a_failing_reranker_keeps_the_fused_order():
    ranked = hits({"semantic": 1}, {"semantic": 2}, {"lexical": 1})
    failing = ReverseReranker(BedrockServiceError("ReadTimeoutError", "read timed out"))
    assert rerank_or_keep(failing, "q", ranked, texts, candidates=10) == ranked


def test_an_answer_that_does_not_cover_the_candidates_is_a_failure_not_a_partial_page():
    class Partial(ReverseReranker):
        def rank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
            return [(0, 0.5)]

    ranked = hits({"semantic": 1}, {"semantic": 2}, {"semantic": 3})
    assert rerank_or_keep(Partial(), "q", ranked, texts, candidates=10) == ranked
