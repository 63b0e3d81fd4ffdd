"""Rows of the source table as every runtime reads them: through the `source_rows` view (refarch.source.capture)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from refarch.db import Connection


@dataclass(frozen=True)
class SourceRow:
    """One row to sync: its id (of its vector, ledger row and messages), version, key, text and metadata."""

    id: int
    version: int
    key: str
    text: str
    fields: dict[str, Any]

    def embedding_text(self) -> str:
        """Exactly what is embedded for this row (its content hash covers this string)."""
        return self.text

    def metadata(self) -> dict[str, Any]:
        """What the vector index stores next to the vector: the metadata columns and the link back."""
        link = {} if self.key == str(self.id) else {"key": self.key}
        return {"product_id": self.id, **link, **self.fields, "version": self.version}


def get_many(conn: Connection, ids: list[int]) -> dict[int, SourceRow]:
    """The current rows for these ids (missing ids are simply absent: deleted)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, version, key, embedding_text, metadata FROM source_rows WHERE id = ANY(%s)", (list(ids),)
        )
        return {row[0]: SourceRow(*row) for row in cur.fetchall()}


def text_lengths(conn: Connection, ids: list[int]) -> dict[int, int]:
    """The length in characters of these rows' embedded texts (Emu sizes its chunks of work by them)."""
    with conn.cursor() as cur:
        cur.execute("SELECT id, length(embedding_text) FROM source_rows WHERE id = ANY(%s)", (list(ids),))
        return {row[0]: int(row[1] or 0) for row in cur.fetchall()}
