"""Rows of the source table as people see them (the page, the JSON API, search results).

Read through the `source_records` view (refarch.source.capture): a row's id (the positive bigint
every runtime knows it by), its key (the table's own primary key, as text), its version, and every
column the definition names. `as_dict` is the JSON form: for products exactly what the API has
always answered (numbers as exact decimal strings, timestamps in ISO 8601).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg2.extras

from refarch.db import Connection
from refarch.index.port import SearchFilter
from refarch.source.definition import Source


@dataclass(frozen=True)
class Record:
    """One row: id, key, version, and the definition's columns by name."""

    id: int
    key: str
    version: int
    values: dict[str, Any]

    def as_dict(self, source: Source) -> dict[str, Any]:
        """JSON-friendly form: id, the key column (when it is not the id), every column, version."""
        key = {} if source.is_builtin_products else {source.key: self.key}
        return {"id": self.id, **key, **{k: _json(v) for k, v in self.values.items()}, "version": self.version}

    def heading(self, source: Source) -> str:
        """The value of the column results are titled by."""
        return str(self.values.get(source.title_column) or "")

    def __getattr__(self, name: str) -> Any:
        # A column by name (`record.sku`): templates and the CLI read rows the way they read products.
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _records(cur: Any, source: Source) -> list[Record]:
    names = [c.name for c in source.columns]
    return [
        Record(id=row["id"], key=row["key"], version=row["version"], values={n: row[n] for n in names})
        for row in cur.fetchall()
    ]


def _columns(source: Source) -> str:
    return ", ".join(["id", "key", "version", *(f'"{c.name}"' for c in source.columns)])


def get_many(conn: Connection, source: Source, ids: list[int]) -> dict[int, Record]:
    """The rows with these ids (missing ids are simply absent: deleted)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"SELECT {_columns(source)} FROM source_records WHERE id = ANY(%s)", (list(ids),))
        return {r.id: r for r in _records(cur, source)}


def list_page(
    conn: Connection,
    source: Source,
    *,
    limit: int,
    offset: int,
    search_filter: SearchFilter,
    count_limit: int | None = None,
) -> tuple[list[Record], int]:
    """A page of rows ordered by id, with the matching count.

    With `count_limit` the count stops at count_limit + 1 rows (more than the limit, without how many):
    a count over a whole large table is a scan a public caller should not be able to repeat at will.
    """
    conditions, params = search_filter.sql_conditions()
    where = "WHERE " + " AND ".join(conditions) if conditions else ""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        if count_limit is None:
            cur.execute(f"SELECT count(*) AS n FROM source_records {where}", params)
        else:
            cur.execute(
                f"SELECT count(*) AS n FROM (SELECT 1 FROM source_records {where} LIMIT %s) AS matching",
                [*params, count_limit + 1],
            )
        total = int(cur.fetchone()["n"])  # type: ignore[index]
        cur.execute(
            f"SELECT {_columns(source)} FROM source_records {where} ORDER BY id LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return _records(cur, source), total
