"""The rerank comparison of `refarch bench relevance` (refarch_local/rerank_bench.py), on a tiny catalog.

The quick bench turns the comparisons off, so this runs the comparison itself: the real SearchService
on pgvector, Titan query vectors and the real boto3 Rerank client, both against the Bedrock stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from refarch import catalog
from refarch.bedrock import BedrockEmbedder
from refarch.db import Database
from refarch.index.pgvector_index import PgVectorIndex
from refarch.search.service import FixedIndex, SearchService
from refarch_local.relevance import CLASSES
from refarch_local.rerank_bench import RERANK_MODEL, rerank_comparison, rerank_markdown
from refarch_local.search_bench import embedded_catalog
from refarch_local.standins import BedrockStandIn

ROWS = 30


@pytest.fixture
def titan() -> Iterator[BedrockEmbedder]:
    """Titan (256-d) at a Bedrock stand-in of its own: no model to load, the catalog embedded in a second."""
    with BedrockStandIn() as stand_in:
        client = boto3.client(
            "bedrock-runtime",
            region_name="us-east-1",
            endpoint_url=stand_in.url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        yield BedrockEmbedder(client, model="amazon.titan-embed-text-v2:0", dimensions=256, concurrency=4)


def tiny_query_set() -> dict:
    """Two classes of the labelled set's shape: products' names and SKUs, each judging its product."""
    products = [catalog.make_product(i) for i in (3, 11, 17, 25)]
    queries = [{"query": p.name, "class": "exact_name", "judgements": {p.sku: 3}} for p in products[:2]]
    queries += [{"query": p.sku, "class": "sku", "judgements": {p.sku: 3}} for p in products[2:]]
    return {"catalog_rows": ROWS, "queries": queries}


def test_the_rerank_comparison_reports_each_class_off_and_on_and_says_it_measures_plumbing(dsn, titan):
    # Given a tiny catalog indexed with Titan, the search the relevance benchmark runs, and a few labelled queries
    embedded_catalog(dsn, ROWS, titan)
    service = SearchService(Database(dsn), FixedIndex(titan, PgVectorIndex(Database(dsn), titan.dimension)))
    query_set = tiny_query_set()
    # When the comparison runs (hybrid without, then with, the stand-in's Rerank)
    result = rerank_comparison(service, query_set)
    service.db.close()
    # Then it reports the model, the candidates sent, a Rerank call per reranked search and both medians
    assert set(result) == {"model", "candidates", "scorer", "classes", "rerank_calls", "p50_ms"}
    assert (result["model"], result["candidates"]) == (RERANK_MODEL, 50)
    assert result["rerank_calls"] == len(query_set["queries"])
    assert set(result["p50_ms"]) == {"off", "on"} and all(ms > 0 for ms in result["p50_ms"].values())
    # And each class asked, in the labelled set's order, off and on: its query count, nDCG@10 and hit@1
    assert list(result["classes"]) == [cls for cls in CLASSES if cls in {"exact_name", "sku"}]
    for cells in result["classes"].values():
        assert set(cells) == {"off", "on"}
        for cell in cells.values():
            assert cell["queries"] == 2
            assert 0.0 <= cell["ndcg_at_10"] <= 1.0 and 0.0 <= cell["hit_at_1"] <= 1.0
    # And an exact SKU keeps its lead with reranking on (its product is never sent to the model)
    assert result["classes"]["sku"]["on"]["hit_at_1"] == result["classes"]["sku"]["off"]["hit_at_1"] == 1.0
    # And the report says what the stand-in's scores are: word overlap, plumbing, not a model's quality
    assert "word overlap" in result["scorer"] and "stand-in" in result["scorer"]
    table = rerank_markdown(result)
    assert "through the Bedrock stand-in" in table and "plumbing, not a model's quality" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| Query class |") and [r.split(" (")[0] for r in rows[1:]] == ["| exact_name", "| sku"]
