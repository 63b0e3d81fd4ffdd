"""The search API on another source: results are its rows as the definition names them, filters are its columns."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refarch.embeddings import LocalEmbedder
from refarch.source import load
from refarch_local import articles
from refarch_local.database import LocalDatabase
from tests.web.conftest import Api, articles_app


@pytest.fixture
def articles_client(
    pg_server: LocalDatabase, articles_template: str, embedder: LocalEmbedder, tmp_path, monkeypatch
) -> Iterator:
    """A test client of the articles app."""
    monkeypatch.setenv("REFARCH_SOURCE", "articles")
    with articles_app(pg_server.dsn, articles_template, embedder, tmp_path / "home") as app:
        yield app.test_client()


def test_search_answers_with_articles_filtered_on_their_columns(articles_client):
    # When the API is asked for articles about sign-in codes, by one author
    response = articles_client.get("/api/search", query_string={"q": "authenticator codes", "author": "Ada Ortiz"})
    # Then the results are articles (key, title, author, published, body), all by that author
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert results and {r["author"] for r in results} == {"Ada Ortiz"}
    assert {"id", "article_id", "title", "author", "published", "body", "version", "sync", "score"} <= set(results[0])
    assert "sku" not in results[0]
    # And a listing filtered on the published flag holds only unpublished articles, counted
    listing = articles_client.get("/api/articles", query_string={"published": "false", "k": 50}).get_json()
    assert listing["total"] == sum(1 for i in range(1, 25) if not articles.article(i)["published"])
    assert {r["published"] for r in listing["results"]} == {False}


def test_a_filter_value_of_the_wrong_type_is_a_400_naming_the_column(articles_client):
    response = articles_client.get("/api/search", query_string={"q": "invoice", "published": "maybe"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "published must be true or false"


def test_articles_are_created_read_edited_and_deleted_through_their_own_routes(articles_client):
    articles_api = Api(articles_client)  # sends the session's CSRF token, as the page does
    # When a signed-in editor (editing is open in this app) adds an article
    created = articles_api.post(
        "/api/articles", json={"title": "Resetting a lost device", "author": "Eve Stone", "body": "Sign in again."}
    )
    assert created.status_code == 201, created.get_json()
    row = created.get_json()
    assert (row["title"], row["author"], row["published"], row["version"]) == (
        "Resetting a lost device", "Eve Stone", False, 1
    )  # fmt: skip
    assert row["sync"]["status"] == "pending" and len(row["article_id"]) == 36
    assert created.headers["Location"] == f"/api/articles/{row['id']}"
    assert articles_client.get(f"/api/articles/{row['id']}").get_json()["title"] == "Resetting a lost device"
    # When it is edited at the version seen, it moves on; at a stale version, the edit is refused
    edited = articles_api.put(f"/api/articles/{row['id']}", json={"version": 1, "published": True})
    assert edited.status_code == 200 and edited.get_json()["published"] is True
    assert edited.get_json()["version"] == 2  # published is metadata: a change to sync
    stale = articles_api.put(f"/api/articles/{row['id']}", json={"version": 1, "title": "Mine"})
    assert stale.status_code == 409 and "changed by someone else" in stale.get_json()["error"]
    # When bad input arrives, each field is named, nothing is written, never a 500
    bad = articles_api.post("/api/articles", json={"title": "x" * 301, "author": "", "colour": "red"})
    assert bad.status_code == 400
    assert set(bad.get_json()["fields"]) == {"title", "author", "colour"}
    null_title = articles_api.put(f"/api/articles/{row['id']}", json={"version": 2, "title": None})
    assert null_title.status_code == 400 and null_title.get_json()["fields"] == {"title": "is required"}
    # ... and a null the definition allows but the table does not (body is NOT NULL there) is a 400 naming it
    null_body = articles_api.put(f"/api/articles/{row['id']}", json={"version": 2, "body": None})
    assert null_body.status_code == 400, null_body.get_json()
    assert list(null_body.get_json()["fields"]) == ["body"]
    assert articles_client.get(f"/api/articles/{row['id']}").get_json()["version"] == 2
    # When it is deleted (at its version), it is gone
    assert articles_api.delete(f"/api/articles/{row['id']}", query_string={"version": 2}).status_code == 204
    assert articles_client.get(f"/api/articles/{row['id']}").status_code == 404
    assert articles_api.delete(f"/api/articles/{row['id']}").status_code == 404
    # And the products routes are not this app's: nothing is written to a table nobody syncs
    refused = articles_api.post("/api/products", json={"sku": "A"})
    assert refused.status_code == 404 and refused.get_json()["error"] == "this site serves articles: see /api/articles"
    assert articles_client.get("/api/products").status_code == 404


def test_the_page_shows_the_definitions_columns_filters_and_edit_form(articles_client):
    html = articles_client.get("/", query_string={"q": "invoice", "author": "Chen Wei"}).get_data(as_text=True)
    # The table's columns are the definition's shown columns, with its rows' values
    for header in ('<th scope="col">Title</th>', '<th scope="col">Author</th>', '<th scope="col">Published</th>'):
        assert header in html
    assert "Invoice download" in html and "Chen Wei" in html and "SKU" not in html
    # The filters are its filter columns (the chosen one kept), the form its editable columns by type
    assert 'id="filter-author" name="author" value="Chen Wei"' in html
    assert '<select id="filter-published" name="published">' in html
    assert 'name="title" type="text"' in html and 'maxlength="300"' in html
    assert 'type="checkbox" id="new-published" name="published" data-type="boolean"' in html
    assert '<textarea id="new-body" name="body"' in html
    assert "rows.js" in html and "app.js" not in html


def test_the_openapi_document_of_another_source_describes_its_rows_routes_and_filters():
    from web.openapi import document

    articles_doc = document(load("articles"))
    assert {"/api/articles", "/api/articles/{product_id}", "/api/search"} <= set(articles_doc["paths"])
    assert "/api/products" not in articles_doc["paths"]
    schemas = articles_doc["components"]["schemas"]
    assert set(schemas["NewArticlesRow"]["properties"]) == {"article_id", "title", "author", "published", "body"}
    assert schemas["NewArticlesRow"]["required"] == ["title", "author"]
    assert schemas["NewArticlesRow"]["properties"]["title"]["maxLength"] == 300
    assert {"id", "article_id", "title", "author", "published", "body", "version", "sync"} <= set(
        schemas["ArticlesRow"]["properties"]
    )
    filters = {p["name"] for p in articles_doc["paths"]["/api/search"]["get"]["parameters"]}
    assert {"author", "published"} <= filters
    # And the products document is the checked-in one
    assert document(load("products"))["paths"].keys() == document()["paths"].keys()


def test_the_served_openapi_document_is_the_sources_own(articles_client):
    import yaml
    from openapi_spec_validator import validate

    from web.openapi import document

    # When a client asks the articles app for its API description
    response = articles_client.get("/api/openapi.yaml")
    # Then it is the document made from the articles definition (routes, rows, filters), a valid OpenAPI document
    assert response.status_code == 200 and response.mimetype == "application/yaml"
    served = yaml.safe_load(response.get_data(as_text=True))
    assert served == document(load("articles"))
    assert "/api/articles" in served["paths"] and "/api/products" not in served["paths"]
    validate(served)
