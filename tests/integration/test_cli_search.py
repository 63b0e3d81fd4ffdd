"""`refarch search --mode` as a person runs it, against DATABASE_URL with the local model and pgvector."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
from click.testing import CliRunner

from refarch import products
from tests.web.conftest import CATALOG


def search_cli(*args: str, dsn: str, home: Path):
    """The real `refarch search` in this process (click's runner)."""
    from refarch_cli.commands import main

    env = {
        "DATABASE_URL": dsn,
        "REFARCH_HOME": str(home),
        "REFARCH_EMBEDDER": "local",
        "REFARCH_VECTOR_BACKEND": "pgvector",
    }
    return CliRunner().invoke(main, ["search", *args], env=env, catch_exceptions=False)


def test_search_modes_from_the_command_line(dsn: str, tmp_path: Path):
    # Given a small catalog in the database (not indexed yet: only the text is there)
    conn = psycopg2.connect(dsn)
    with conn:
        for row in CATALOG:
            products.create(conn, dict(row))
    conn.close()
    # When searching words lexically, as JSON
    result = search_cli("skillet", "--mode", "lexical", "--json", dsn=dsn, home=tmp_path)
    # Then the product whose text has the word comes back, ranked by the lexical list, and the mode is said
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["mode"] == body["requested_mode"] == "lexical" and body["fallback_reason"] is None
    assert [(r["sku"], r["ranks"]) for r in body["results"]] == [("KI-1", {"lexical": 1})]
    # When printing lines, Then each says which lists it came from
    lines = search_cli("neural networks", "--mode", "lexical", dsn=dsn, home=tmp_path).stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.endswith("lexical#1") or line.endswith("lexical#2") for line in lines)
    # When the mode is not one of the three, Then it is a usage error (exit 2) naming the choices
    refused = search_cli("tent", "--mode", "fuzzy", dsn=dsn, home=tmp_path)
    assert refused.exit_code == 2 and "hybrid" in refused.output and "lexical" in refused.output
