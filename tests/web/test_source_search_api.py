"""The search API on another source: results are its rows as the definition names them, filters are its columns."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from refarch.db import connect, migrate, with_database
from refarch.embeddings import LocalEmbedder
from refarch.lanes.messages import SyncMessage
from refarch.source import load
from refarch_local import articles
from refarch_local.database import LocalDatabase
from tests.web.conftest import build_app, make_runtime


@pytest.fixture
def articles_client(pg_server: LocalDatabase, embedder: LocalEmbedder, tmp_path, monkeypatch) -> Iterator:
    """The app over a database holding 24 articles (a table of their own), every one indexed."""
    name = f"a_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    dsn = with_database(pg_server.dsn, name)
    conn = connect(dsn)
    with conn:
        articles.create_table(conn)
        articles.seed(conn, 24)
    conn.close()
    migrate(dsn, source=load("articles"))
    monkeypatch.setenv("REFARCH_SOURCE", "articles")
    runtime = make_runtime(embedder, database_url=dsn, home=tmp_path / "home", source="articles")
    with runtime.db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, version FROM source_rows")
        versions = dict(cur.fetchall())
    bodies = {
        f"m{pid}": SyncMessage(product_id=pid, version=v, op="update", source="change").model_dump_json()
        for pid, v in versions.items()
    }
    assert runtime.emu.process(bodies).failures == {}
    yield build_app(runtime).test_client()
    runtime.db.close()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


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
    listing = articles_client.get("/api/products", query_string={"published": "false", "k": 50}).get_json()
    assert listing["total"] == sum(1 for i in range(1, 25) if not articles.article(i)["published"])
    assert {r["published"] for r in listing["results"]} == {False}


def test_a_filter_value_of_the_wrong_type_is_a_400_naming_the_column(articles_client):
    response = articles_client.get("/api/search", query_string={"q": "invoice", "published": "maybe"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "published must be true or false"
