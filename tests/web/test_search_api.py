"""GET /api/search and GET /api/products: ranking, filters, pagination and bad input (real model + pgvector)."""

from __future__ import annotations

import pytest

from refarch import products
from refarch.db import Database
from refarch.search.service import MAX_PAGE, SearchInputError
from tests.web.conftest import index_now


def names(response) -> list[str]:
    return [r["name"] for r in response.get_json()["results"]]


def test_search_ranks_the_closest_meaning_first_with_scores(client, indexed_catalog):
    # Given the catalog is indexed, When searching in plain language without the product's words
    response = client.get("/api/search", query_string={"q": "software that predicts with AI", "k": 5})
    # Then the forecasting software comes first, every hit has a score, and scores descend
    assert response.status_code == 200
    body = response.get_json()
    assert body["results"][0]["name"] == "Insight Forecasting Engine"
    scores = [r["score"] for r in body["results"]]
    assert all(isinstance(s, float) for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert body["results"][0]["sync"]["status"] == "indexed"


def test_category_and_price_filters_apply_to_the_ranking(client, indexed_catalog):
    # When filtering a query by category, Then only that category comes back
    by_category = client.get("/api/search", query_string={"q": "neural networks", "category": "books"})
    assert names(by_category) == ["Deep Learning Handbook"]
    # When filtering by a price range, Then every hit lies inside it
    by_price = client.get(
        "/api/search", query_string={"q": "something useful", "min_price": "90", "max_price": "200"}
    ).get_json()["results"]
    assert {r["name"] for r in by_price} == {"Insight Forecasting Engine", "Wireless Earbuds"}
    assert all(90 <= float(r["price"]) <= 200 for r in by_price)


def test_pagination_walks_past_the_first_page_without_overlap(client, indexed_catalog):
    # Given a query matching everything, When reading it two results at a time
    pages = [
        client.get("/api/search", query_string={"q": "things to buy", "k": 2, "page": n}).get_json() for n in (1, 2, 3)
    ]
    everything = client.get("/api/search", query_string={"q": "things to buy", "k": 5}).get_json()
    # Then the pages concatenate to the single-page ranking, and only the last says there is no more
    assert [r["id"] for p in pages for r in p["results"]] == [r["id"] for r in everything["results"]]
    assert [p["has_more"] for p in pages] == [True, True, False]


def test_empty_query_lists_products_by_id_with_a_total(client, catalog):
    # Given products that are not even indexed yet, When listing (empty query) page 2 of 2-per-page
    body = client.get("/api/search", query_string={"q": "", "k": 2, "page": 2}).get_json()
    # Then rows come by id from Postgres, unscored, with the total and their pending state
    assert [r["id"] for r in body["results"]] == [catalog[2].id, catalog[3].id]
    assert body["total"] == 5 and body["has_more"] is True
    assert all(r["score"] is None and r["sync"]["status"] == "pending" for r in body["results"])


def test_products_listing_takes_the_same_filters(client, catalog):
    # When listing products of one category
    response = client.get("/api/products", query_string={"category": "kitchen", "q": "ignored"})
    # Then only that category is listed, by id, with its total
    assert names(response) == ["Cast Iron Skillet"]
    assert response.get_json()["total"] == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "x" * 513}, "limit is 512"),
        ({"q": "tent", "k": "0"}, "k must be between"),
        ({"q": "tent", "k": "101"}, "k must be between"),
        ({"q": "tent", "k": "ten"}, "k must be a whole number"),
        ({"q": "tent", "page": "0"}, "page must be 1 or more"),
        ({"q": "tent", "page": "1.5"}, "page must be a whole number"),
        ({"q": "tent", "min_price": "cheap"}, "min_price must be a number"),
        ({"q": "tent", "max_price": "nan"}, "max_price must be a finite number"),
        ({"q": "tent", "min_price": "-1"}, "cannot be negative"),
        ({"q": "tent", "mode": "Hybrid"}, "mode must be one of hybrid, semantic, lexical"),
    ],
)
def test_bad_search_input_is_a_400_with_a_message(client, params, message):
    # When the request cannot be answered as asked
    response = client.get("/api/search", query_string=params)
    # Then it is refused with a readable JSON message, never a 500
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert response.get_json()["fields"] == {}


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"q": "tent", "k": "100", "page": "11"}, id="past-the-ranked-depth"),
        pytest.param({"q": "tent", "min_price": "50", "max_price": "10"}, id="empty-price-range"),
        pytest.param({"q": "", "min_price": "50", "max_price": "10"}, id="empty-price-range-listing"),
    ],
)
def test_requests_the_document_allows_but_nothing_matches_are_an_empty_page(client, indexed_catalog, params):
    # Given requests the OpenAPI document allows (it cannot state a rule between two parameters; these
    # were a 400 before the contract test), When asked, Then the answer is an empty page, not a refusal
    response = client.get("/api/search", query_string=params)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["results"] == [] and response.get_json()["has_more"] is False


def test_the_last_page_within_the_ranked_depth_is_cut_at_the_depth(runtime, indexed_catalog, monkeypatch):
    # Given a ranked depth of 3 (1,000 in production), When asking for results 3 and 4 (k=2, page 2)
    monkeypatch.setattr("refarch.search.service.MAX_DEPTH", 3)
    page = runtime.search.search("things to buy", k=2, page=2)
    everything = runtime.search.search("things to buy", k=5)
    # Then only the third result comes back, and there is no next page
    assert [h.product.id for h in page.hits] == [h.product.id for h in everything.hits][2:3]
    assert page.has_more is False


def test_an_edit_becomes_searchable_once_emu_indexed_it(api, runtime, indexed_catalog):
    # Given the tent is indexed, When its description gains new words and Emu processes the change
    tent = indexed_catalog[2]
    saved = api.put(
        f"/api/products/{tent.id}",
        json={"version": tent.version, "description": "A floating lantern raft for moonlit kayak fishing trips."},
    ).get_json()
    assert saved["sync"]["status"] == "pending"
    index_now(runtime, [tent.id])
    # Then a search for the new meaning finds it first, and it reports indexed at its new version
    top = api.get("/api/search", query_string={"q": "night fishing from a kayak"}).get_json()["results"][0]
    assert top["id"] == tent.id
    assert top["sync"]["status"] == "indexed" and top["version"] == saved["version"]


def test_a_deleted_product_disappears_from_results_at_once(api, indexed_catalog):
    # Given the skillet is found by a query for it
    skillet = indexed_catalog[1]
    query = {"q": "cast iron pan for searing steak"}
    before = api.get("/api/search", query_string=query).get_json()["results"]
    assert skillet.id in [h["id"] for h in before]
    # When it is deleted (its vector is still there until Emu runs)
    assert api.delete(f"/api/products/{skillet.id}").status_code == 204
    # Then the same query no longer returns it
    hits = api.get("/api/search", query_string=query).get_json()["results"]
    assert skillet.id not in [h["id"] for h in hits]


@pytest.mark.parametrize(
    ("url", "params", "name"),
    [
        ("/api/search", {"q": "tent\x00"}, "query"),
        ("/api/search", {"q": "tent", "category": "books\x00"}, "category"),
        ("/api/products", {"category": "books\x00"}, "category"),
    ],
)
def test_nul_in_the_query_or_category_is_a_400(client, indexed_catalog, url, params, name):
    # When a NUL character arrives in a text parameter (Postgres cannot take it)
    response = client.get(url, query_string=params)
    # Then the request is refused with a message naming the parameter, not a 500
    assert response.status_code == 400, response.get_json()
    assert f"{name} cannot contain NUL" in response.get_json()["error"]


def test_the_page_shows_a_nul_in_the_category_as_a_message(client, catalog):
    response = client.get("/", query_string={"category": "books\x00"})
    assert response.status_code == 400
    assert 'role="alert"' in response.get_data(as_text=True)
    assert "category cannot contain NUL" in response.get_data(as_text=True)


@pytest.mark.parametrize(("query", "category"), [("tent \ud800", None), ("", "books\udcff"), ("", "a\x00")])
def test_the_search_service_refuses_text_postgres_cannot_store(runtime, catalog, query, category):
    # Given the service every caller shares (web and CLI: a shell argument with invalid UTF-8 arrives as
    # surrogates), When asked with a lone surrogate or a NUL, Then it refuses with a SearchInputError
    with pytest.raises(SearchInputError, match="NUL|surrogate"):
        runtime.search.search(query, category=category)


@pytest.mark.parametrize("url", ["/api/search", "/api/products"])
def test_a_page_number_past_any_listing_is_a_400(client, catalog, url):
    # When listing (empty query) at a page whose offset no database could serve
    response = client.get(url, query_string={"q": "", "page": "99999999999999999999"})
    # Then it is refused with the limit, not a 500 from an out-of-range OFFSET
    assert response.status_code == 400, response.get_json()
    assert f"page must be {MAX_PAGE:,} or less" in response.get_json()["error"]
    # And the last allowed page is simply empty
    last = client.get(url, query_string={"q": "", "page": str(MAX_PAGE), "k": "100"})
    assert last.status_code == 200 and last.get_json()["results"] == [] and last.get_json()["has_more"] is False


def test_a_listing_counts_its_total_only_as_far_as_a_page_can_reach(dsn):
    # Given more matching products than the count limit
    db = Database(dsn)
    with db.transaction() as conn:
        for n in range(5):
            products.create(conn, {"sku": f"CNT-{n}", "name": "Lamp", "description": "", "category": "c", "price": 1})
    with db.transaction() as conn:
        # When a page is listed with a count limit of 3
        rows, counted = products.list_page(conn, limit=2, offset=0, count_limit=3)
        # Then the count stops one row past the limit (enough to say "more"), and without one it is exact
        assert len(rows) == 2 and counted == 4
        assert products.list_page(conn, limit=2, offset=0)[1] == 5


def test_the_page_shows_a_page_number_past_any_listing_as_a_message(client, catalog):
    response = client.get("/", query_string={"page": "99999999999999999999"})
    assert response.status_code == 400
    assert f"page must be {MAX_PAGE:,} or less" in response.get_data(as_text=True)
