"""The demo's seed for each shipped source: the product catalog, or the support articles.

A table brought by its owner has its own rows: `refarch demo --source mine.toml` syncs what is there
and seeds nothing (its table must exist, or the demo says so before anything changes).
"""

from __future__ import annotations

from collections.abc import Callable

from refarch import catalog
from refarch.db import Connection, fetch_one
from refarch.source import Source, SourceError
from refarch_local import articles


def _seed_articles(conn: Connection, rows: int) -> int | None:
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM articles)")
        if fetch_one(cur)[0]:
            conn.rollback()
            return None
    with conn:
        return articles.seed(conn, rows)


# Table -> (make the table as its owner would, before the migration; seed an empty table: rows added or None)
SEEDS: dict[str, tuple[Callable[[Connection], None] | None, Callable[[Connection, int], int | None]]] = {
    "public.products": (None, catalog.seed_if_empty),
    "public.articles": (articles.create_table, _seed_articles),
}


def prepare_table(conn: Connection, source: Source) -> None:
    """Make a shipped example's table if missing; refuse (SourceError) a brought table that does not exist."""
    make = SEEDS.get(source.qualified_table, (None, None))[0]
    if make is not None:
        with conn:
            make(conn)
        return
    if source.is_builtin_products:
        return  # made by the migrations
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (source.qualified_table,))
        exists = fetch_one(cur)[0]
    conn.rollback()
    if not exists:
        raise SourceError(
            source.path,
            [
                f"table {source.qualified_table} does not exist: create it in this database (DATABASE_URL),"
                " or start from a shipped example (--source articles)"
            ],
        )


def seed_if_empty(conn: Connection, source: Source, rows: int) -> int | None:
    """Seed a shipped example's empty table; None when it already has rows or the table is the owner's."""
    seed = SEEDS.get(source.qualified_table)
    return None if seed is None else seed[1](conn, rows)
