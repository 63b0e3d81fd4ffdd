"""Lexical ranking on `products.search_document` (migration 0007): Postgres full-text search.

The same filters as the vector side (category equality, price range), applied in SQL. Queries are
read with `websearch_to_tsquery` (what people type into a search box: words, "quoted phrases",
-exclusions, or), so no input is a syntax error.
"""

from __future__ import annotations

from refarch.db import Connection
from refarch.index.port import SearchFilter

# The configuration 0007 stems the name, category and description with.
TEXT_SEARCH_CONFIG = "english"


def _filter_sql(search_filter: SearchFilter) -> tuple[str, list[object]]:
    conditions, params = search_filter.sql_conditions()
    return "".join(f" AND {condition}" for condition in conditions), params


def ranked_ids(conn: Connection, query: str, *, limit: int, search_filter: SearchFilter) -> list[tuple[int, float]]:
    """(product id, ts_rank_cd) of the rows matching every word of `query`, best first (ties by id)."""
    where, params = _filter_sql(search_filter)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, ts_rank_cd(search_document, q) AS rank"
            " FROM products, websearch_to_tsquery(%s::regconfig, %s) AS q"
            f" WHERE search_document @@ q{where}"
            " ORDER BY rank DESC, id LIMIT %s",
            [TEXT_SEARCH_CONFIG, query, *params, limit],
        )
        return [(int(pid), float(rank)) for pid, rank in cur.fetchall()]


def exact_sku(conn: Connection, query: str, *, search_filter: SearchFilter) -> int | None:
    """The id of the product whose SKU is exactly `query` (as typed, or upper-cased), within the filters."""
    where, params = _filter_sql(search_filter)
    with conn.cursor() as cur:
        cur.execute(f"SELECT id FROM products WHERE sku IN (%s, upper(%s)){where} LIMIT 1", [query, query, *params])
        row = cur.fetchone()
    return int(row[0]) if row else None
