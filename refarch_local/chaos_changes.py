"""The writer `refarch chaos` runs against the stack: random committed edits, inserts and deletes."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2

from refarch.db import connect

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

    def __init__(self, dsn: str, seed: int) -> None:
        self.dsn = dsn
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
