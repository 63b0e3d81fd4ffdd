"""`refarch demo --source` (or REFARCH_SOURCE) runs the whole system on another table, with its own seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from refarch.db import with_database
from refarch_local.database import LocalDatabase
from refarch_local.supervisor import CONFIGURATION_ERROR_EXIT
from tests.conftest import SHORT_BATCHING_WINDOW, free_port


def run_demo(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    environment = {**os.environ, **SHORT_BATCHING_WINDOW, "REFARCH_HOME": str(home), **(env or {})}
    environment.pop("DATABASE_URL", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "refarch_cli",
            "demo",
            "--port",
            str(free_port()),
            "--sqs-port",
            str(free_port()),
            *args,
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_the_demo_syncs_the_articles_example_in_a_database_of_its_own(tmp_path: Path):
    home = tmp_path / "home"
    # When the demo runs on the articles source until every row is indexed
    result = run_demo(home, "--source", "articles", "--rows", "40", "--exit-when-synced", "--timeout", "240")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    # Then its own seed was loaded and indexed, with no failure
    assert (summary["rows"], summary["indexed"], summary["failures"], summary["timed_out"]) == (40, 40, 0, False)
    assert "articles: seeded 40 rows" in result.stderr
    # And the rows live in a database of their own, in a table with no column of the project's
    server = LocalDatabase(home)
    try:
        dsn = with_database(server.start(), "refarch_articles")
        conn = psycopg2.connect(dsn)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'articles'")
            assert {r[0] for r in cur.fetchall()} == {
                "article_id", "title", "author", "published", "body", "views", "created_at"
            }  # fmt: skip
            cur.execute("SELECT status, count(*) FROM product_sync_status GROUP BY status")
            assert dict(cur.fetchall()) == {"indexed": 40}
        conn.close()
    finally:
        server.stop()


def test_an_invalid_definition_is_refused_at_demo_start_before_anything_starts(tmp_path: Path):
    # Given a definition whose template names an unknown column and whose key type is unsupported
    definition = tmp_path / "recipes.toml"
    definition.write_text(
        'table = "public.recipes"\nkey = { column = "id", type = "float" }\nembed = "{title}. {steps}"\n'
        'title = "title"\n[columns.title]\nlexical = "A"\n'
    )
    home = tmp_path / "home"
    # When the demo starts with it (named by REFARCH_SOURCE)
    result = run_demo(home, "--exit-when-synced", env={"REFARCH_SOURCE": str(definition)}, timeout=120)
    # Then it stops at once with every problem named, before any database or process started
    assert result.returncode == CONFIGURATION_ERROR_EXIT, result.stderr[-2000:]
    assert "source definition refused" in result.stderr
    assert "  - key.type 'float' is not supported: a key must be one of bigint, uuid, text\n" in result.stderr
    assert "  - embed names {steps}, which is not a column under [columns]\n" in result.stderr
    assert not (home / "pgdata").exists()
