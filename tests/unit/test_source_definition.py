"""The source definition: the shipped ones load, and a definition that cannot work is refused with every reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from refarch.source import SourceError, load
from refarch.source.definition import PINECONE_METADATA_LIMIT_BYTES, parse


def articles_like(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "table": "public.notes",
        "key": {"column": "note_id", "type": "text"},
        "embed": "{title}. {body}",
        "title": "title",
        "columns": {
            "title": {"show": True, "edit": True, "max_length": 200, "metadata": True, "lexical": "A"},
            "body": {"show": True, "edit": True, "lexical": "C"},
            "stars": {"type": "integer", "metadata": True, "filter": True},
        },
    }
    data.update(changes)
    return data


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SourceError) as refused:
        parse(data, where="notes.toml")
    assert str(refused.value).startswith("notes.toml: ")
    return refused.value.problems


def test_the_default_source_is_the_products_table_as_it_was_embedded_and_stored():
    source = load()
    assert source.qualified_table == "public.products" and source.is_builtin_products
    assert (source.key, source.key_type) == ("id", "bigint")
    assert source.embedded_columns() == ["name", "category", "description"]
    assert source.metadata_columns() == ["sku", "name", "category", "price"]
    # The version trigger watches exactly what was watched before sources (migration 0012)
    assert set(source.watched_columns()) == {"sku", "name", "description", "category", "price"}
    assert [c.name for c in source.columns if c.filter] == ["category", "price"]


def test_the_second_example_has_a_uuid_key_a_long_body_and_filters():
    source = load("articles")
    assert (source.qualified_table, source.key, source.key_type) == ("public.articles", "article_id", "uuid")
    assert source.embedded_columns() == ["title", "body"] and "body" not in source.metadata_columns()
    assert [c.name for c in source.columns if c.filter] == ["author", "published"]
    assert not source.is_builtin_products


def test_a_definition_is_loaded_from_a_file_and_a_missing_or_broken_file_is_named(tmp_path: Path):
    copy = tmp_path / "mine.toml"
    copy.write_text(Path(load("articles").path).read_text())
    assert load(copy).qualified_table == "public.articles"
    with pytest.raises(SourceError, match="no such file"):
        load(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("table = ")
    with pytest.raises(SourceError, match="not valid TOML"):
        load(broken)


def test_a_valid_definition_parses():
    source = parse(articles_like())
    assert source.watched_columns() == ["title", "body", "stars"]
    assert source.fingerprint("text") != parse(articles_like(embed="{title}")).fingerprint("text")
    assert source.fingerprint("metadata") == parse(articles_like(embed="{title}")).fingerprint("metadata")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"key": {"column": "note_id", "type": "jsonb"}}, "key.type 'jsonb' is not supported"),
        ({"key": {"column": "note_id", "type": "integer"}}, "a key must be one of bigint, uuid, text"),
        ({"embed": "{title}. {summary}"}, "embed names {summary}, which is not a column"),
        ({"embed": "no columns at all"}, "embed must be a template naming at least one column"),
        ({"embed": "{title"}, "embed template '{title' is not valid"),
        ({"table": "Notes; DROP TABLE x"}, "table 'Notes; DROP TABLE x' must be a table name"),
        ({"title": "subtitle"}, "title 'subtitle' must name a column"),
        ({"colour": "blue"}, "unknown setting(s) colour"),
    ],
)
def test_an_invalid_definition_is_refused_naming_what_to_fix(change: dict[str, Any], reason: str):
    assert any(reason in problem for problem in problems_of(articles_like(**change))), reason


def test_metadata_that_could_exceed_pinecones_limit_is_refused():
    columns = articles_like()["columns"]
    # A text column without a bound could be any size; a bound too large is over the limit
    unbounded = {**columns, "body": {**columns["body"], "metadata": True}}
    assert any("metadata column 'body' has no max_length" in p for p in problems_of(articles_like(columns=unbounded)))
    huge = {**columns, "body": {**columns["body"], "metadata": True, "max_length": 20_000}}
    assert any(
        f"over Pinecone's {PINECONE_METADATA_LIMIT_BYTES:,}" in p for p in problems_of(articles_like(columns=huge))
    )


def test_column_settings_are_checked_each_with_its_column_named():
    columns = {
        "title": {"show": True, "max_length": 200, "metadata": True, "lexical": "A"},
        "body": {"edit": True, "lexical": "E"},
        "stars": {"type": "float", "filter": True},
        "summary": {"edit": True, "max_length": 500},
        "Bad Name": {},
    }
    problems = problems_of(articles_like(columns=columns))
    assert "columns.body.lexical must be one of A, B, C, D (highest first), on a text column" in problems
    assert "column 'summary' is editable but not shown (set show = true)" in problems
    assert any("columns.stars.type 'float' must be one of" in p for p in problems)
    assert any("a filter column must also be metadata" in p for p in problems)
    assert any("column name 'Bad Name' must be a lower-case identifier" in p for p in problems)


def test_the_cli_says_what_a_definition_syncs_and_refuses_a_broken_one(tmp_path: Path):
    from click.testing import CliRunner

    from refarch_cli.commands import main

    shown = CliRunner().invoke(main, ["source", "check", "articles"])
    assert shown.exit_code == 0, shown.output
    assert "public.articles (key article_id, uuid)" in shown.output
    assert "author (text, keyword weight B): shown, editable, metadata, filter" in shown.output
    broken = tmp_path / "broken.toml"
    broken.write_text('table = "public.notes"\nkey = { column = "id", type = "float" }\n')
    refused = CliRunner().invoke(main, ["source", "check", str(broken)])
    assert refused.exit_code == 2
    assert "  - key.type 'float' is not supported: a key must be one of bigint, uuid, text" in refused.output
