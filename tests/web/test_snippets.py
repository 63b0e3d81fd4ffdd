"""A long text found by one of its chunks: the API names that chunk (`snippet`), the page shows it with the
query's words marked, and a row of one chunk has none."""

from __future__ import annotations

from refarch_local import articles
from tests.web.test_source_search_api import articles_client
from web.views import highlight

__all__ = ["articles_client"]  # the fixture, used by name
QUERY = "ask an administrator to look at the audit log"


def test_a_long_article_found_by_a_chunk_answers_with_that_chunk_and_a_short_one_without(articles_client):
    answer = articles_client.get("/api/search", query_string={"q": QUERY, "mode": "semantic", "k": 24})
    assert answer.status_code == 200
    results = answer.get_json()["results"]
    long_keys = {str(articles.article_id(i)) for i in range(articles.LONG_EVERY, 25, articles.LONG_EVERY)}
    with_snippet = [r for r in results if "snippet" in r]
    # Every long guide is found by a chunk, which is a part of its body (not the whole of it)
    assert {r["article_id"] for r in with_snippet} == long_keys
    for result in with_snippet:
        assert result["snippet"] in result["body"] and len(result["snippet"]) < len(result["body"])
        assert "audit log" in result["snippet"]
    # And the short articles have no snippet key at all
    assert all("snippet" not in r for r in results if r["article_id"] not in long_keys)


def test_the_page_shows_the_snippet_with_the_querys_words_marked(articles_client):
    page = articles_client.get("/", query_string={"q": QUERY, "mode": "semantic"}).get_data(as_text=True)
    assert page.count('<p class="snippet"') >= 1
    assert "<mark>audit</mark> <mark>log</mark>" in page and "<mark>administrator</mark>" in page


def test_highlighting_escapes_the_text_and_marks_only_whole_query_words_from_their_start():
    marked = str(highlight("Ask <b>admins</b>: the Administrator's log & blog", "admin LOG an"))
    assert marked == (
        "Ask &lt;b&gt;<mark>admins</mark>&lt;/b&gt;: the <mark>Administrator</mark>&#39;s <mark>log</mark> &amp; blog"
    )
    assert str(highlight("<i>x</i>", "")) == "&lt;i&gt;x&lt;/i&gt;"
