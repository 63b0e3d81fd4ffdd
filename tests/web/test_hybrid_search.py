"""Hybrid, semantic and lexical search on /api/search and the page (real model, pgvector, Postgres full-text)."""

from __future__ import annotations

import re
from decimal import Decimal

import psycopg2
import pytest

from refarch import products
from refarch.search.service import SEARCH_MODES
from tests.web.conftest import index_now


def results(client, **params) -> list[dict]:
    response = client.get("/api/search", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def test_an_exact_sku_comes_first_in_hybrid_mode_and_says_why(client, indexed_catalog):
    # Given the catalog is indexed, When searching for a SKU exactly as printed (or in lower case)
    for query in ("BO-1", "bo-1"):
        body = client.get("/api/search", query_string={"q": query}).get_json()
        # Then that product is first, marked as the exact SKU match, with the lists it came from
        first = body["results"][0]
        assert (first["sku"], body["mode"]) == ("BO-1", "hybrid")
        assert first["ranks"]["sku"] == 1
        scores = [r["score"] for r in body["results"]]
        assert scores == sorted(scores, reverse=True)


def test_lexical_mode_finds_words_only_and_semantic_mode_finds_meaning(client, indexed_catalog):
    # When searching for a word only one product's text contains, Then lexical mode finds just that product
    found = results(client, q="skillet", mode="lexical")
    assert [(r["name"], r["ranks"]) for r in found] == [("Cast Iron Skillet", {"lexical": 1})]
    # When searching for a need in words no product uses, Then lexical mode finds nothing and semantic mode does
    need = "something to cook dinner in"
    assert results(client, q=need, mode="lexical") == []
    semantic = results(client, q=need, mode="semantic", k=1)
    assert semantic[0]["name"] == "Cast Iron Skillet" and semantic[0]["ranks"] == {"semantic": 1}


def test_hybrid_fuses_both_lists_and_reports_each_rank(client, indexed_catalog):
    # When searching words two descriptions contain and whose meaning all products are ranked by
    fused = results(client, q="neural networks")
    # Then the two products found by both lists come first, each with its rank in both
    both = [r for r in fused if set(r["ranks"]) == {"semantic", "lexical"}]
    assert {r["sku"] for r in both} == {"SW-1", "BO-1"}
    assert fused[:2] == both
    # And every other product came from the semantic list alone
    assert all(set(r["ranks"]) == {"semantic"} for r in fused[2:])
    assert len(fused) == len(indexed_catalog)


@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_filters_and_paging_work_in_every_mode(client, indexed_catalog, mode):
    # When a query matching two products lexically and all semantically is filtered by category
    only_books = results(client, q="neural networks", mode=mode, category="books")
    # Then only that category comes back
    assert [r["sku"] for r in only_books] == ["BO-1"]
    # And a price range keeps every hit inside it (the forecasting software at 199, the tent at 230)
    priced = results(client, q="neural networks", mode=mode, min_price="100", max_price="300")
    assert priced[0]["sku"] == "SW-1"
    assert {r["sku"] for r in priced} == ({"SW-1"} if mode == "lexical" else {"SW-1", "OU-1"})
    # When reading the ranking one result per page, Then the pages concatenate to the single-page ranking
    everything = results(client, q="neural networks", mode=mode, k=5)
    pages = [
        client.get("/api/search", query_string={"q": "neural networks", "mode": mode, "k": 1, "page": n}).get_json()
        for n in range(1, len(everything) + 1)
    ]
    assert [p["results"][0]["id"] for p in pages] == [r["id"] for r in everything]
    assert [p["has_more"] for p in pages] == [True] * (len(everything) - 1) + [False]
    assert {p["mode"] for p in pages} == {mode}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "tent", "mode": "fuzzy"}, "mode must be one of hybrid, semantic, lexical"),
        ({"q": "tent", "mode": "lexical", "k": "0"}, "k must be between"),
        ({"q": "tent\x00", "mode": "lexical"}, "query cannot contain NUL"),
        ({"q": "tent", "mode": "semantic", "min_price": "-1"}, "cannot be negative"),
    ],
)
def test_bad_input_is_a_400_in_every_mode(client, params, message):
    response = client.get("/api/search", query_string=params)
    assert response.status_code == 400, response.get_json()
    assert message in response.get_json()["error"]


def test_lexical_search_takes_what_people_type_without_syntax_errors(client, indexed_catalog):
    # When the query holds quotes, a minus, "or" and stray operators, Then it is read as words, never a 500
    for query in ('"deep learning" -skillet', "tent or earbuds", "!!! & | :* ((", "the"):
        response = client.get("/api/search", query_string={"q": query, "mode": "lexical"})
        assert response.status_code == 200, (query, response.get_json())
    names = {r["name"] for r in results(client, q="tent or earbuds", mode="lexical")}
    assert names == {"Alpine Camping Tent", "Wireless Earbuds"}


def test_the_page_has_a_ranking_control_and_shows_where_each_result_came_from(client, indexed_catalog):
    # When the page searches in hybrid mode (the default)
    html = client.get("/", query_string={"q": "neural networks"}).get_data(as_text=True)
    # Then the ranking control offers the three modes with hybrid chosen, and each score carries its
    # provenance for the hover (title)
    assert re.search(r'<select id="mode" name="mode">', html)
    assert re.search(r'<option value="hybrid"\s+selected>', html)
    assert "semantic #1 · lexical #1" in html or "semantic #2 · lexical #1" in html
    assert re.search(r'<td class="score" data-label="Score" title="semantic #\d+ · lexical #\d+"', html)
    # When the page is asked for lexical mode, Then it keeps that choice and says how results are ordered
    lexical = client.get("/", query_string={"q": "skillet", "mode": "lexical"}).get_data(as_text=True)
    assert re.search(r'<option value="lexical"\s+selected>', lexical)
    assert "best keyword matches first" in lexical


@pytest.mark.parametrize("mode", ["hybrid", "lexical"])
def test_a_sku_or_model_code_is_found_however_it_is_typed(client, dsn, runtime, indexed_catalog, mode):
    # Given a product with a model code in its name and a SKU with a suffix
    conn = psycopg2.connect(dsn)
    with conn:
        added = products.create(
            conn,
            {
                "sku": "AU-1234-C",
                "name": "Nimbus WH-1000XM5 Headphones",
                "category": "electronics",
                "price": Decimal("349.00"),
                "description": "Over-ear headphones.",
            },
        )
    conn.close()
    index_now(runtime, [added.id])
    # When searching for the SKU without separators, its first part, or the code as people type it
    for query in ("AU1234C", "au 1234-c", "AU-1234", "wh1000xm5", "WH-1000XM5"):
        found = results(client, q=query, mode=mode)
        # Then that product is first, marked as a code match
        assert found[0]["sku"] == "AU-1234-C", query
        assert found[0]["ranks"]["code"] == 1


@pytest.mark.parametrize("mode", ["hybrid", "lexical"])
def test_a_misspelled_name_is_corrected_and_the_page_says_did_you_mean(client, indexed_catalog, mode):
    # When searching with a letter dropped from each word of a product's name, which no word matches
    body = client.get("/api/search", query_string={"q": "wireles earbds", "mode": mode}).get_json()
    # Then the corrected query is offered, and the product it names comes first
    assert body["did_you_mean"] == "wireless earbuds"
    assert body["results"][0]["sku"] == "EL-1"
    # And the page says so, with a link to the corrected query
    html = client.get("/", query_string={"q": "wireles earbds", "mode": mode}).get_data(as_text=True)
    assert 'id="search-did-you-mean"' in html and "q=wireless+earbuds" in html


def test_a_query_that_matches_offers_no_correction(client, indexed_catalog):
    body = client.get("/api/search", query_string={"q": "wireless earbuds"}).get_json()
    assert body["did_you_mean"] is None
