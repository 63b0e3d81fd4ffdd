"""Lexical ranking on `products.search_document` (migration 0007): Postgres full-text search; codes and
typos on `products.search_codes` and trigram indexes (migration 0014).

The same filters as the vector side (category equality, price range), applied in SQL. Queries are
read with `websearch_to_tsquery` (what people type into a search box: words, "quoted phrases",
-exclusions, or), so no input is a syntax error.
"""

from __future__ import annotations

from dataclasses import dataclass

from refarch.db import Connection
from refarch.index.port import SearchFilter
from refarch.search.query_text import code_key, corrected_query, trigram_query
from refarch.source import Source

# The configuration 0007 stems the name, category and description with.
TEXT_SEARCH_CONFIG = "english"
# Names whose words a misspelled query is corrected against.
CORRECTION_CANDIDATES = 5


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


def code_matches(conn: Connection, query: str, *, limit: int, search_filter: SearchFilter) -> list[int]:
    """Products whose SKU or a code in whose name starts with the query read as a code, whole SKU matches first.

    Case, dashes, dots and spaces do not matter ("ab1234c", "AB 1234-C" and "AB-1234" find "AB-1234-C");
    a query that does not look like a code (`query_text.code_key`) matches nothing.
    """
    key = code_key(query)
    if key is None:
        return []
    where, params = _filter_sql(search_filter)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM products"
            f" WHERE search_codes @@ to_tsquery('simple'::regconfig, %s || ':*'){where}"
            " ORDER BY regexp_replace(lower(sku), '[^a-z0-9]+', '', 'g') = %s DESC, length(sku), id LIMIT %s",
            [key, *params, key, limit],
        )
        return [int(row[0]) for row in cur.fetchall()]


def did_you_mean(conn: Connection, query: str, *, search_filter: SearchFilter) -> str | None:
    """`query` with its misspelled words replaced by the words of the names that share most of its trigrams."""
    grams = trigram_query(query)
    if grams is None:
        return None
    where, params = _filter_sql(search_filter)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT name FROM products, CAST(%s AS tsquery) AS candidates, CAST(%s AS tsquery) AS ranking"
            f" WHERE search_trigrams @@ candidates{where}"
            " ORDER BY ts_rank(search_trigrams, ranking, 0) DESC, id LIMIT %s",
            [grams.candidates, grams.ranking, *params, CORRECTION_CANDIDATES],
        )
        names = [str(row[0]) for row in cur.fetchall()]
    return corrected_query(query, names)


@dataclass(frozen=True)
class LexicalLists:
    """What Postgres ranks for a query: SKU and model-code matches, the exact SKU, and the full-text ranking
    (of `corrected`, the query with its misspellings corrected, when the query as typed matched nothing)."""

    codes: list[int]
    exact_sku: int | None
    ranked: list[tuple[int, float]]
    corrected: str | None


def ranked_rows(conn: Connection, query: str, *, limit: int, search_filter: SearchFilter) -> list[tuple[int, float]]:
    """(row id, ts_rank_cd) of the source's rows matching every word of `query`, best first (ties by id).

    Any source: the weighted document of the definition's lexical columns (`source_records.search_document`,
    served by the GIN expression index `refarch db migrate` made), filtered on the definition's columns.
    """
    where, params = _filter_sql(search_filter)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, ts_rank_cd(search_document, q) AS rank"
            " FROM source_records, websearch_to_tsquery(%s::regconfig, %s) AS q"
            f" WHERE search_document @@ q{where}"
            " ORDER BY rank DESC, id LIMIT %s",
            [TEXT_SEARCH_CONFIG, query, *params, limit],
        )
        return [(int(pid), float(rank)) for pid, rank in cur.fetchall()]


def lists(
    conn: Connection, query: str, *, limit: int, search_filter: SearchFilter, source: Source | None = None
) -> LexicalLists:
    """The code matches, the exact SKU and the full-text ranking (of the corrected query if nothing matched).

    SKU, model-code and misspelling support read the products' own columns (migrations 0007, 0014); another
    source (`source`) is ranked by full-text search on its definition's lexical columns alone.
    """
    if source is not None and not source.is_builtin_products:
        return LexicalLists(
            codes=[],
            exact_sku=None,
            ranked=ranked_rows(conn, query, limit=limit, search_filter=search_filter),
            corrected=None,
        )
    codes = code_matches(conn, query, limit=limit, search_filter=search_filter)
    sku_match = exact_sku(conn, query, search_filter=search_filter)
    ranked = ranked_ids(conn, query, limit=limit, search_filter=search_filter)
    corrected = None
    if not ranked and not codes:
        corrected = did_you_mean(conn, query, search_filter=search_filter)
        if corrected is not None:
            ranked = ranked_ids(conn, corrected, limit=limit, search_filter=search_filter)
    return LexicalLists(codes=codes, exact_sku=sku_match, ranked=ranked, corrected=corrected)
