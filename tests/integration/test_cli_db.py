"""`refarch db migrate` and `refarch db seed` as a person runs them: against DATABASE_URL, and on a
fresh clone with nothing configured (the embedded Postgres starts on demand under REFARCH_HOME)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg2
from click.testing import CliRunner

from refarch.db import migration_files
from refarch_local.database import LocalDatabase


def run_cli(*args: str, env: dict[str, str]):
    """The real `refarch` command in this process (click's runner), failing loudly on an error."""
    from refarch_cli.commands import main

    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output.strip()


def count_products(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT sku) FROM products")
            total, distinct = cur.fetchone()
    finally:
        conn.close()
    assert total == distinct  # no SKU twice
    return total


def test_migrate_and_seed_use_database_url(empty_dsn: str, tmp_path: Path):
    env = {"DATABASE_URL": empty_dsn, "REFARCH_HOME": str(tmp_path / "home")}
    # Given an empty database named by DATABASE_URL, When it is migrated twice
    first = run_cli("db", "migrate", env=env)
    second = run_cli("db", "migrate", env=env)
    # Then every migration applies once, and the second run has nothing to do
    # (and the source definition: the default, products)
    applied = f"applied {len(migration_files())} migration(s): " + ", ".join(n for n, _ in migration_files())
    assert first == f"{applied}\nsource: public.products"
    assert second == "applied 0 migration(s): none pending\nsource: public.products"
    # When it is seeded, then seeded again with the same and a larger N
    assert run_cli("db", "seed", "--rows", "25", env=env) == "seeded 25 new product(s) (25 requested)"
    assert count_products(empty_dsn) == 25
    assert run_cli("db", "seed", "--rows", "25", env=env) == "seeded 0 new product(s) (25 requested)"
    assert run_cli("db", "seed", "--rows", "40", env=env) == "seeded 15 new product(s) (40 requested)"
    # Then the table holds products 1..40 once each
    assert count_products(empty_dsn) == 40


def refarch(home: Path, *args: str) -> str:
    """`python -m refarch_cli ...` with an empty environment for the database: nothing configured."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REFARCH_DATABASE_SECRET_ARN")}
    env["REFARCH_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "refarch_cli", *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_seed_on_a_fresh_clone_starts_the_embedded_database(tmp_path: Path):
    # Given an empty REFARCH_HOME and no DATABASE_URL (a fresh clone)
    home = tmp_path / "home"
    # When a person migrates, then seeds twice, each command a new process
    migrated = refarch(home, "db", "migrate")
    first = refarch(home, "db", "seed", "--rows", "30")
    second = refarch(home, "db", "seed", "--rows", "30")
    # Then the embedded Postgres was created under REFARCH_HOME, migrated once and seeded once
    applied = f"applied {len(migration_files())} migration(s): " + ", ".join(n for n, _ in migration_files())
    assert migrated == f"{applied}\nsource: public.products"
    assert first == "seeded 30 new product(s) (30 requested)"
    assert second == "seeded 0 new product(s) (30 requested)"
    assert (home / "pgdata" / "PG_VERSION").exists()
    database = LocalDatabase(home)
    try:
        assert count_products(database.start()) == 30
    finally:
        database.stop()
