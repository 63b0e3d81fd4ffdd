"""A database's schema as text, and the difference between two: upgraded and freshly installed must match.

The schema is `pg_dump --schema-only` from the embedded server's own binaries (`pgserver`, the same
Postgres 16 as the server), which covers everything a migration can leave behind: tables, columns
(types, defaults, nullability, generated expressions), constraints, indexes, views, functions with
their properties (SECURITY DEFINER, search_path), triggers with their WHEN clauses, sequences and
identities, extensions, owners and every grant down to column privileges. Comments and blank lines
are dropped; nothing else is, so a difference is a real one.
"""

from __future__ import annotations

import difflib
import subprocess

from pgserver._commands import POSTGRES_BIN_PATH

PG_DUMP = POSTGRES_BIN_PATH / "pg_dump"


class SchemaDumpError(Exception):
    """pg_dump could not read the schema of a database."""


def schema_text(dsn: str) -> list[str]:
    """The database's schema, one statement line per line, without comments or blank lines."""
    done = subprocess.run(
        [str(PG_DUMP), "--schema-only", "--no-comments", "--dbname", dsn],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SchemaDumpError(f"pg_dump --schema-only failed for {dsn}: {done.stderr.strip()}")
    return [line for line in done.stdout.splitlines() if line.strip() and not line.startswith("--")]


def schema_diff(upgraded_dsn: str, fresh_dsn: str) -> list[str]:
    """The lines by which the upgraded database's schema differs from the fresh install's (empty: equal)."""
    return list(
        difflib.unified_diff(
            schema_text(fresh_dsn), schema_text(upgraded_dsn), "fresh install", "upgraded", lineterm="", n=2
        )
    )
