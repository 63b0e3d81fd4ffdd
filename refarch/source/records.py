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

    def title(self, source: Source) -> str:
        return str(self.values.get(source.title_column) or "")


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


def get_many(conn: Connection, source: Source, ids: list[int]) -> dict[int, Record]:
    """The rows with these ids (missing ids are simply absent: deleted)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT * FROM source_records WHERE id = ANY(%s)", (list(ids),))
        return {r.id: r for r in _records(cur, source)}
