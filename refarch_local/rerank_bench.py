"""Hybrid search with and without reranking, on the labelled query set (`refarch bench relevance`).

The reranker is the real boto3 `bedrock-agent-runtime` client against the Bedrock stand-in, whose
"model" scores a candidate by the words it shares with the query. So the numbers measure the
plumbing (the candidates sent, the order applied, leaders kept, the cost of the call), not what
Amazon Rerank or Cohere Rerank would do to relevance: that needs a run against Bedrock itself.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from refarch.bedrock import foundation_model_arn
from refarch.search.rerank import BedrockReranker
from refarch.search.service import SearchService
from refarch_local.relevance import CLASSES, hit_at, ndcg

RERANK_MODEL = "amazon.rerank-v1:0"


def rerank_comparison(service: SearchService, query_set: dict[str, Any], *, candidates: int = 50) -> dict[str, Any]:
    """Hybrid's nDCG@10 and hit@1 per query class with reranking off and on, and what reranking cost."""
    import boto3

    from refarch_local.standins import BedrockStandIn

    with service.db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, sku FROM products")
        sku_of: dict[int, str] = dict(cur.fetchall())
    with BedrockStandIn() as stand_in:
        client = boto3.client(
            "bedrock-agent-runtime",
            region_name="us-east-1",
            endpoint_url=stand_in.url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        reranker = BedrockReranker(client, model_arn=foundation_model_arn("us-east-1", RERANK_MODEL))
        reranking = SearchService(service.db, service.targets, reranker=reranker, rerank_candidates=candidates)
        reranking.embeddings = service.embeddings  # the same query vectors: only the rerank differs
        result: dict[str, Any] = {"model": RERANK_MODEL, "candidates": candidates, "scorer": "stand-in word overlap"}
        timings: dict[str, list[float]] = {"off": [], "on": []}
        scores: dict[str, dict[str, dict[str, list[float]]]] = {}
        for item in query_set["queries"]:
            for label, searcher in (("off", service), ("on", reranking)):
                started = time.perf_counter()
                page = searcher.search(item["query"], k=10, mode="hybrid")
                timings[label].append((time.perf_counter() - started) * 1000)
                ranked = [sku_of[h.product.id] for h in page.hits]
                cell = scores.setdefault(item["class"], {}).setdefault(label, {"ndcg": [], "hit1": []})
                cell["ndcg"].append(ndcg(ranked, item["judgements"]))
                cell["hit1"].append(1.0 if hit_at(ranked, item["judgements"], cutoff=1) else 0.0)
        result["classes"] = {
            cls: {
                label: {
                    "queries": len(cell["ndcg"]),
                    "ndcg_at_10": round(statistics.fmean(cell["ndcg"]), 3),
                    "hit_at_1": round(statistics.fmean(cell["hit1"]), 3),
                }
                for label, cell in scores[cls].items()
            }
            for cls in CLASSES
            if cls in scores
        }
        result["rerank_calls"] = stand_in.rerank_calls
        result["p50_ms"] = {label: round(statistics.median(t), 1) for label, t in timings.items()}
    return result


def rerank_markdown(result: dict[str, Any]) -> str:
    """A row per query class: hybrid without and with reranking."""
    lines = [
        f"Reranker: {result['model']} through the Bedrock stand-in ({result['scorer']}: plumbing, not a model's "
        f"quality), top {result['candidates']} candidates; {result['rerank_calls']} rerank calls; hybrid p50 "
        f"{result['p50_ms']['off']} ms without, {result['p50_ms']['on']} ms with.\n",
        "| Query class | nDCG@10 off | nDCG@10 on | hit@1 off | hit@1 on |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cls, cells in result["classes"].items():
        off, on = cells["off"], cells["on"]
        lines.append(
            f"| {cls} ({off['queries']}) | {off['ndcg_at_10']:.3f} | {on['ndcg_at_10']:.3f}"
            f" | {off['hit_at_1']:.2f} | {on['hit_at_1']:.2f} |"
        )
    return "\n".join(lines) + "\n"
