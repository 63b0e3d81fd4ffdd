"""The writer `refarch chaos` runs against the stack: random committed edits, inserts and deletes.

It writes to the source the stack syncs (REFARCH_SOURCE): the products catalog, or the articles
example (refarch/source/definitions/articles.toml), each with its own mix of changes.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2

from refarch.db import connect
from refarch.settings import Settings
from refarch.source import Source, SourceError, load

WORDS = (
    "river",
    "granite",
    "velvet",
    "orbit",
    "maple",
    "signal",
    "ember",
    "harbor",
    "quartz",
    "meadow",
    "lantern",
    "cobalt",
    "saffron",
    "tundra",
    "willow",
    "canyon",
    "beacon",
    "juniper",
)


class ChangeMaker:
    """Random edits, inserts and deletes by a client that retries when the database is away.

    Only committed changes are counted: a change whose commit failed was never made.
    """

    def __init__(self, dsn: str, seed: int, source: Source | None = None) -> None:
        self.dsn = dsn
        self.source = source or load(Settings().source)
        if self.source.qualified_table not in WRITERS:
            raise SourceError(self.source.path, [f"chaos writes to {' or '.join(WRITERS)} only"])
        self.random = random.Random(seed)
        self.committed = 0
        self._conn: Any = None
        self._new = 0

    def _connection(self) -> Any:
        while self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.dsn)
            except psycopg2.OperationalError:
                time.sleep(0.2)
        return self._conn

    def make(
        self,
        count: int,
        *,
        pace: float = 0.0,
        on_change: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Make `count` committed changes (or until `stop` is set); return how many were made."""
        made = 0
        while made < count and not (stop and stop.is_set()):
            conn = self._connection()
            try:
                with conn, conn.cursor() as cur:
                    self._one(cur)
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                conn.close()
                time.sleep(0.2)
                continue
            made += 1
            self.committed += 1
            if on_change:
                on_change(made)
            if pace:
                time.sleep(pace)
        return made

    def _one(self, cur: Any) -> None:
        getattr(self, WRITERS[self.source.qualified_table])(cur)

    def edit(self, cur: Any, row_id: int) -> None:
        """A change to the embedded text of the row with this id."""
        column = self.source.embedded_columns()[-1]
        cur.execute(
            f'UPDATE {self.source.qualified_table} SET "{column}" = %s'
            f' WHERE "{self.source.key}"::text = (SELECT key FROM source_records WHERE id = %s)',
            (self.words(), row_id),
        )

    def delete(self, cur: Any, row_ids: list[int]) -> None:
        """Delete the rows with these ids."""
        cur.execute(
            f'DELETE FROM {self.source.qualified_table} WHERE "{self.source.key}"::text IN'
            " (SELECT key FROM source_records WHERE id = ANY(%s))",
            (row_ids,),
        )

    def _article(self, cur: Any) -> None:
        roll = self.random.random()
        cur.execute("SELECT article_id FROM articles ORDER BY random() LIMIT 1")
        row = cur.fetchone()
        if roll < 0.08 or row is None:
            self._new += 1
            cur.execute(
                "INSERT INTO articles (article_id, title, author, body) VALUES (gen_random_uuid(), %s, %s, %s)",
                (f"Chaos article {os.getpid()}-{self._new}", "Chaos Author", self.words()),
            )
        elif roll < 0.12:
            cur.execute("DELETE FROM articles WHERE article_id = %s", row)
        elif roll < 0.24:  # metadata only: the vector stays, its metadata changes
            cur.execute("UPDATE articles SET published = NOT published WHERE article_id = %s", row)
        elif roll < 0.30:  # a column the definition does not name: nothing to sync
            cur.execute("UPDATE articles SET views = views + 1 WHERE article_id = %s", row)
        elif roll < 0.34:  # a new key: a delete of the old one and an insert of the new
            cur.execute("UPDATE articles SET article_id = gen_random_uuid() WHERE article_id = %s", row)
        elif roll < 0.42:  # a rename: new text to embed, and new metadata
            cur.execute(
                "UPDATE articles SET title = %s WHERE article_id = %s", (f"Renamed {self.words()}"[:300], row[0])
            )
        elif roll < 0.46:  # a burst: five edits to one row, one transaction each
            for _ in range(5):
                cur.execute("UPDATE articles SET body = %s WHERE article_id = %s", (self.words(), row[0]))
                cur.connection.commit()
        else:
            cur.execute("UPDATE articles SET body = %s WHERE article_id = %s", (self.words(), row[0]))

    def _product(self, cur: Any) -> None:
        roll = self.random.random()
        cur.execute("SELECT id FROM products ORDER BY random() LIMIT 1")
        row = cur.fetchone()
        if roll < 0.08 or row is None:
            self._new += 1
            tag = f"{os.getpid()}-{time.time_ns()}-{self._new}"
            cur.execute(
                "INSERT INTO products (sku, name, description, category, price) VALUES (%s, %s, %s, %s, %s)",
                (f"CHAOS-{tag}", f"Chaos item {tag}", self.words(), "outdoor", self.random.randint(1, 500)),
            )
        elif roll < 0.12:
            cur.execute("DELETE FROM products WHERE id = %s", row)
        elif roll < 0.30:  # price only: the vector stays, its metadata changes
            cur.execute("UPDATE products SET price = price + 1 WHERE id = %s", row)
        elif roll < 0.38:  # a rename: new text to embed, and new metadata
            cur.execute("UPDATE products SET name = %s WHERE id = %s", (f"Renamed {self.words()}"[:200], row[0]))
        elif roll < 0.42:  # a burst: five edits to one row, one transaction each
            for _ in range(5):
                cur.execute("UPDATE products SET description = %s WHERE id = %s", (self.words(), row[0]))
                cur.connection.commit()
        else:
            cur.execute("UPDATE products SET description = %s WHERE id = %s", (self.words(), row[0]))

    def words(self) -> str:
        """A random product description."""
        return "A " + " ".join(self.random.choices(WORDS, k=8)) + " product."


# The tables chaos can write to, and the method that makes one random change to each.
WRITERS = {"public.products": "_product", "public.articles": "_article"}
