"""Optional reranking of hybrid search's best candidates by a Bedrock rerank model (Amazon Rerank, Cohere Rerank).

Fusion ranks by position in two lists; a rerank model reads the query and each candidate's text
together, which orders the top of the page better at the price of one call per search. The call
sits inside the search's latency budget: one attempt, with a short timeout
(REFARCH_RERANK_TIMEOUT_SECONDS, ~1 s). When it is slow or fails, the fused order is kept and the
page is still served; a reranked hit carries `ranks["rerank"]`, so a page says whether it was reranked.

Exact identifiers (an exact SKU, a SKU or model code the query starts) keep their lead: the person
typed that product's code, no model knows better.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from refarch.bedrock import BedrockServiceError, foundation_model_arn, make_client, service_error
from refarch.observability import logger
from refarch.search.fusion import FusedHit
from refarch.settings import Settings

# The lists whose hits keep their place ahead of the reranked ones.
LEADING_LISTS = frozenset({"sku", "code"})
# The Rerank API refuses a query or a document longer than this (its model: RerankTextDocument.text);
# a description may hold 100,000 characters, so a long one is cut, or one such candidate would turn
# every rerank of its searches into a ValidationException and the page back to the fused order.
RERANK_TEXT_MAX_CHARS = 32_000


class Reranker(Protocol):
    """Scores documents by relevance to a query."""

    model_id: str

    def rank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        """(document index, relevance) pairs, most relevant first (raises when the service fails or times out)."""
        ...


class BedrockReranker:
    """The Rerank API of bedrock-agent-runtime with a foundation rerank model, one attempt, a short timeout."""

    def __init__(self, client: Any, *, model_arn: str) -> None:
        self._client = client
        self.model_arn = model_arn
        self.model_id = f"bedrock:{model_arn.rsplit('/', 1)[-1]}"

    @classmethod
    def from_settings(cls, settings: Settings) -> BedrockReranker:
        """The reranker REFARCH_RERANK_MODEL names, with REFARCH_RERANK_TIMEOUT_SECONDS as its only budget."""
        if not settings.rerank_model:
            raise ValueError("no rerank model configured (REFARCH_RERANK_MODEL)")
        timeout = settings.rerank_timeout_seconds
        client = make_client(
            settings,
            "bedrock-agent-runtime",
            retries={"mode": "standard", "total_max_attempts": 1},
            read_timeout=timeout,
            connect_timeout=timeout,
        )
        return cls(client, model_arn=foundation_model_arn(settings.aws_region, settings.rerank_model))

    def rank(self, query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
        """(index, relevance) of `documents`, most relevant first; BedrockServiceError when Bedrock fails or is slow."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.rerank(
                queries=[{"type": "TEXT", "textQuery": {"text": query[:RERANK_TEXT_MAX_CHARS]}}],
                sources=[
                    {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": text}}}
                    for text in (document[:RERANK_TEXT_MAX_CHARS] for document in documents)
                ],
                rerankingConfiguration={
                    "type": "BEDROCK_RERANKING_MODEL",
                    "bedrockRerankingConfiguration": {
                        "numberOfResults": len(documents),
                        "modelConfiguration": {"modelArn": self.model_arn},
                    },
                },
            )
        except (ClientError, BotoCoreError) as err:
            raise service_error(err) from err
        return [(int(result["index"]), float(result["relevanceScore"])) for result in answer["results"]]


def make_reranker(settings: Settings) -> Reranker | None:
    """The configured reranker, or None when reranking is off."""
    return BedrockReranker.from_settings(settings) if settings.rerank_model else None


def rerank(
    reranker: Reranker,
    query: str,
    ranked: list[FusedHit],
    texts: Callable[[list[int]], Mapping[int, str]],
    *,
    candidates: int,
) -> list[FusedHit]:
    """`ranked` with its first `candidates` reordered by the reranker (exact-identifier leaders kept first).

    `texts` reads the candidates' texts (ids -> text; a row deleted meanwhile is left where it was).
    Raises what the reranker raises: the caller decides to keep the fused order.
    """
    top, rest = ranked[:candidates], ranked[candidates:]
    leaders = [hit for hit in top if LEADING_LISTS & set(hit.ranks)]
    pool = [hit for hit in top if not LEADING_LISTS & set(hit.ranks)]
    found = texts([hit.id for hit in pool])
    scored = [hit for hit in pool if hit.id in found]
    if len(scored) < 2:
        return ranked
    order = reranker.rank(query, [found[hit.id] for hit in scored])
    if sorted(i for i, _ in order) != list(range(len(scored))):
        raise BedrockServiceError("InvalidResponse", f"{len(order)} reranked results for {len(scored)} documents", 502)
    # The reranked hits score the model's relevance (0 to 1): leaders (1 or more) stay above them.
    reordered = [
        replace(scored[i], score=relevance, ranks={**scored[i].ranks, "rerank": n})
        for n, (i, relevance) in enumerate(order, start=1)
    ]
    missing = [hit for hit in pool if hit.id not in found]
    return [*leaders, *reordered, *missing, *rest]


def rerank_or_keep(
    reranker: Reranker,
    query: str,
    ranked: list[FusedHit],
    texts: Callable[[list[int]], Mapping[int, str]],
    *,
    candidates: int,
) -> list[FusedHit]:
    """`rerank`, or the fused order unchanged when the rerank model failed or was slow (logged, never raised)."""
    started = time.perf_counter()
    try:
        return rerank(reranker, query, ranked, texts, candidates=candidates)
    except BedrockServiceError as err:
        logger.warning(
            "rerank skipped: the fused order is served",
            extra={"error": str(err), "ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return ranked
