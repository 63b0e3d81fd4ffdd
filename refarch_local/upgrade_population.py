"""A database as past releases left it: whatever each schema version holds, written as that release wrote it.

`populate(dsn, release)` reads which migrations the database has and writes, through its own
triggers, what the runtimes of that release would have left, under ids of its own (`id_offset`),
so a database can live through every release in turn (`migration_upgrades`): products inserted,
edited, edited to the same values, deleted, and deleted then inserted again (twice for one id);
outbox rows sent and unsent, and a deletion whose outbox row was already pruned; a ledger entry in
every status; embedding calls; bootstrap runs complete, failed and running; rate-limit counters;
and index generations in every status, including a build in progress and a build aborted the way
the release of the time recorded it (generations, bootstrap runs and counters once, by the first
release that has their tables). Every statement is parameterised; the only names placed in SQL text
are the vector tables', which come from the constant below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg2 import sql

from refarch.catalog import make_product
from refarch.db import Connection, Database, connect, fetch_one
from refarch.emu.decisions import content_hash
from refarch.index.pgvector_index import PgVectorIndex

PRODUCTS = 13
# What happened to the catalog, in order, one transaction per step (the triggers of the release
# number the versions): ids 1-13 inserted, then edits (+1.00 on the price), an edit to the same
# values ("touch", not a change), deletes, and ids inserted again after their delete.
PRODUCT_HISTORY: list[tuple[str, int]] = [
    *(("insert", product_id) for product_id in range(1, PRODUCTS + 1)),
    ("update", 2), ("update", 2),  # version 3
    ("update", 3),  # version 2, its outbox row not sent yet
    ("touch", 6),  # still version 1
    ("delete", 7),  # tombstone 2, not sent yet
    ("update", 8), ("delete", 8),  # tombstone 3
    ("update", 9), ("update", 9), ("delete", 9), ("insert", 9),  # tombstone 4, then inserted again
    ("update", 10), ("update", 10), ("update", 10), ("delete", 10),  # tombstone 5 ...
    ("insert", 10), ("delete", 10),  # ... then inserted again and deleted again: tombstone 2 before 0012
    ("delete", 11),  # tombstone 2; its outbox rows are pruned below
    ("update", 13), ("delete", 13), ("insert", 13),  # tombstone 3, then inserted again
]  # fmt: skip
UNSENT_OUTBOX_PRODUCTS = (3, 5, 7)  # their latest outbox row has not reached SQS yet
PRUNED_OUTBOX_PRODUCTS = (11,)  # sent more than a day ago: the listener deleted their rows


@dataclass(frozen=True)
class LedgerEntry:
    """What Emu recorded for one product in one generation."""

    product_id: int
    indexed_version: int
    status: str
    last_error: str | None = None
    attempts: int = 0


# The live ledger: one entry in every status, and the states a delete and a re-insert leave behind.
FULL_LEDGER = [
    LedgerEntry(1, 1, "indexed"),
    LedgerEntry(2, 3, "indexed"),
    LedgerEntry(3, 1, "indexed"),  # its edit (version 2) not indexed yet
    LedgerEntry(4, 0, "failed", "embedding provider timed out", 3),
    # 5: no entry, never indexed
    LedgerEntry(6, 1, "indexed"),
    LedgerEntry(7, 1, "indexed"),  # deleted, the delete not applied yet
    LedgerEntry(8, 3, "deleted"),
    # Inserted again (version 1 before 0012) while Emu still held the old row: it skips the new one.
    LedgerEntry(9, 3, "indexed"),
    LedgerEntry(10, 2, "deleted"),  # the second row's delete (tombstone 2)
    LedgerEntry(11, 2, "deleted"),
    LedgerEntry(12, 0, "pending"),  # the column default, allowed by the schema
    LedgerEntry(13, 3, "deleted"),  # inserted again (version 1 before 0012), not indexed yet
]
# Index generations (0010 on): generation -> (vector table, its dimension, the ledger it holds).
GENERATION_VECTOR_TABLES = {
    1: ("product_vectors", 3, FULL_LEDGER),  # retired, kept in sync for a rollback
    3: ("product_vectors_g3", 4, FULL_LEDGER),  # active
    4: ("product_vectors_g4", 4, FULL_LEDGER[:3]),  # an aborted build, not yet dropped
    5: ("product_vectors_g5", 5, FULL_LEDGER[:2]),  # the build in progress
}


def schema_version(conn: Connection) -> str:
    """The number of the last migration applied ("0000" for none)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not fetch_one(cur)[0]:
            return "0000"
        cur.execute("SELECT coalesce(max(left(name, 4)), '0000') FROM schema_migrations")
        return str(fetch_one(cur)[0])


def id_offset(release: int) -> int:
    """What a release adds to the ids of PRODUCT_HISTORY: its products are offset + 1..PRODUCTS."""
    return 100 * release


def populate(dsn: str, release: int = 0) -> str:
    """Write what the runtimes of the database's schema version write, under the release's ids; return the version."""
    offset = id_offset(release)
    conn = connect(dsn)
    try:
        version = schema_version(conn)
        if version >= "0001":
            write_product_history(conn, offset)
        if version >= "0002":
            send_and_prune_outbox(conn, offset)
        if version >= "0010":
            record_generations(conn, version)
        ledgers = live_ledgers(conn, version) if version >= "0003" else {}
        for generation, entries in ledgers.items():
            write_ledger(conn, generation, entries, offset)
        if version >= "0003":
            write_embed_calls(conn)
        if version >= "0004":
            write_bootstrap_runs(conn, version, offset)
        if version >= "0007":
            write_rate_limit_counters(conn)
        conn.commit()
    finally:
        conn.close()
    for generation, entries in ledgers.items():
        table, dimension, _entries = GENERATION_VECTOR_TABLES[generation or 1]
        write_vectors(dsn, table, dimension, entries, offset, grant=version >= "0005")
    return version


def write_product_history(conn: Connection, offset: int) -> None:
    """Replay PRODUCT_HISTORY under ids `offset` + 1.., each step committed on its own as a client would."""
    with conn.cursor() as cur:
        for op, local_id in PRODUCT_HISTORY:
            product_id = offset + local_id
            if op == "insert":
                p = make_product(product_id)
                cur.execute(
                    "INSERT INTO products (id, sku, name, description, category, price)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (product_id, p.sku, p.name, p.description, p.category, p.price),
                )
            elif op == "update":
                cur.execute("UPDATE products SET price = price + 1 WHERE id = %s", (product_id,))
            elif op == "touch":
                cur.execute("UPDATE products SET price = price WHERE id = %s", (product_id,))
            else:
                cur.execute("DELETE FROM products WHERE id = %s", (product_id,))
            conn.commit()
        # The ids were given explicitly (to replay the history exactly); the identity continues past them.
        cur.execute("SELECT setval(pg_get_serial_sequence('products', 'id'), %s)", (offset + PRODUCTS,))


def send_and_prune_outbox(conn: Connection, offset: int) -> None:
    """Mark the release's outbox rows sent but the latest of UNSENT_OUTBOX_PRODUCTS; prune PRUNED_OUTBOX_PRODUCTS'."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE sync_outbox o SET enqueued_at = o.created_at + interval '1 second'"
            " WHERE o.product_id BETWEEN %s AND %s AND NOT (o.product_id = ANY(%s)"
            " AND o.id = (SELECT max(l.id) FROM sync_outbox l WHERE l.product_id = o.product_id))",
            (offset + 1, offset + PRODUCTS, [offset + i for i in UNSENT_OUTBOX_PRODUCTS]),
        )
        cur.execute(
            "DELETE FROM sync_outbox WHERE product_id = ANY(%s)", ([offset + i for i in PRUNED_OUTBOX_PRODUCTS],)
        )


def _embedder(dimension: int) -> tuple[str, str]:
    """(embedder JSON, model id) of a generation whose vectors have `dimension` numbers."""
    embedder = {"kind": "openai", "model": f"text-embedding-test-{dimension}", "dimensions": dimension}
    return json.dumps(embedder), f"openai:{embedder['model']}:{dimension}"


def record_generations(conn: Connection, version: str) -> None:
    """Generations in every status, once: 1 retired, 2 dropped (Pinecone), 3 active, 4 an aborted build, 5 building.

    An aborted build was `retired` "long ago" and never activated before 0011, `abandoned` after;
    a dropped generation's index removal is recorded in its target from 0011 on.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM index_generations")
        if fetch_one(cur)[0] > 1:
            return
    dropped_target: dict[str, Any] = {
        "index_name": "refarch-g2",
        "host": "refarch-g2-abc.svc.pinecone.io",
        "namespace": "products",
    }
    if version >= "0011":
        dropped_target["index_removed"] = True
    aborted = ("abandoned", None) if version >= "0011" else ("retired", "-infinity")
    now = datetime.now(UTC)
    days_ago = {n: now - timedelta(days=n) for n in (2, 4, 5, 9, 30)}
    with conn.cursor() as cur:
        embedder, model_id = _embedder(3)
        cur.execute(
            "UPDATE index_generations SET embedder = %s, model_id = %s, dimension = 3, backend = 'pgvector',"
            " target = %s, status = 'retired', activated_at = %s, retired_at = %s WHERE id = 1",
            (embedder, model_id, json.dumps({"table": "product_vectors"}), days_ago[30], days_ago[2]),
        )
        rows = [
            (2, "dropped", 6, "pinecone", dropped_target, days_ago[9], days_ago[5], days_ago[4]),
            (3, "active", 4, "pgvector", {"table": "product_vectors_g3"}, days_ago[2], None, None),
            (4, aborted[0], 4, "pgvector", {"table": "product_vectors_g4"}, None, aborted[1], None),
            (5, "building", 5, "pgvector", {"table": "product_vectors_g5"}, None, None, None),
        ]
        for gid, status, dimension, backend, target, activated, retired, dropped in rows:
            embedder, model_id = _embedder(dimension)
            cur.execute(
                "INSERT INTO index_generations (id, status, embedder, model_id, dimension, backend, target,"
                " activated_at, retired_at, dropped_at) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                " %s::timestamptz, %s::timestamptz, %s::timestamptz)",
                (gid, status, embedder, model_id, dimension, backend, json.dumps(target), activated, retired, dropped),
            )


def live_ledgers(conn: Connection, version: str) -> dict[int | None, list[LedgerEntry]]:
    """generation -> the entries Emu writes there: every generation it kept in sync at the time (a `retired`
    aborted build too, before 0011); one ledger without generations (None) before 0010."""
    if version < "0010":
        return {None: FULL_LEDGER}
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM index_generations WHERE status IN ('active', 'building', 'retired') ORDER BY id")
        return {gid: GENERATION_VECTOR_TABLES[gid][2] for (gid,) in cur.fetchall()}


def _content_hash(entry: LedgerEntry, product_id: int) -> str:
    return content_hash("test-model", f"{product_id}:{entry.indexed_version}")


def write_ledger(conn: Connection, generation: int | None, entries: list[LedgerEntry], offset: int) -> None:
    """Emu's ledger entries for the release's ids in one generation (None: the only ledger, before 0010)."""
    with conn.cursor() as cur:
        for e in entries:
            columns = {
                "product_id": offset + e.product_id,
                "indexed_version": e.indexed_version,
                "content_hash": _content_hash(e, offset + e.product_id) if e.status == "indexed" else None,
                "status": e.status,
                "last_error": e.last_error,
                "attempts": e.attempts,
            }
            if generation is not None:
                columns["generation"] = generation
            cur.execute(
                sql.SQL("INSERT INTO sync_state ({}, indexed_at) VALUES ({}, now())").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                    sql.SQL(", ").join([sql.Placeholder()] * len(columns)),
                ),
                tuple(columns.values()),
            )


def write_embed_calls(conn: Connection) -> None:
    """Emu's cost audit: a few embedding calls."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO embed_calls (model, texts) VALUES (%s, %s)",
            [
                ("local:all-MiniLM-L6-v2:384", 8),
                ("local:all-MiniLM-L6-v2:384", 1),
                ("openai:text-embedding-3-small:1536", 2),
            ],
        )


def write_bootstrap_runs(conn: Connection, version: str, offset: int) -> None:
    """Once: a complete run, a failed one and one still running (before 0010 all of the one index; after, the
    failed run is the aborted build's and the running one fills the build in progress)."""
    runs = [
        ("complete", 1, "", 9, 3, ["done", "done", "done"]),
        ("failed", 4, "generation abandoned", 2, 0, ["done", "pending"]),
        ("running", 5, "", 3, 2, ["done", "pending", "pending"]),
    ]
    with_generation = version >= "0010"
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT FROM bootstrap_runs)")
        if fetch_one(cur)[0]:
            return
        for status, generation, error, enqueued, skipped, ranges in runs:
            cur.execute(
                "INSERT INTO bootstrap_runs (status, range_size, total_rows, enqueued, skipped, error, finished_at"
                + (", generation" if with_generation else "")
                + ") VALUES (%s, 5, %s, %s, %s, nullif(%s, ''), CASE WHEN %s = 'running' THEN NULL ELSE now() END"
                + (", %s" if with_generation else "")
                + ") RETURNING id",
                (status, PRODUCTS, enqueued, skipped, error, status) + ((generation,) if with_generation else ()),
            )
            run_id = fetch_one(cur)[0]
            for range_no, range_status in enumerate(ranges):
                cur.execute(
                    "INSERT INTO bootstrap_ranges (run_id, range_no, first_id, last_id, status, enqueued, skipped)"
                    " VALUES (%s, %s, %s, %s, %s, %s, 0)",
                    (
                        run_id,
                        range_no,
                        offset + 1 + 5 * range_no,
                        offset + 5 + 5 * range_no,
                        range_status,
                        5 if range_status == "done" else 0,
                    ),
                )


def write_rate_limit_counters(conn: Connection) -> None:
    """Two clients inside their rate-limit windows."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO rate_limit_counters (key, hits, expires_at) VALUES (%s, %s, now() + interval '1 minute')"
            " ON CONFLICT (key) DO NOTHING",
            [("search:203.0.113.7", 3), ("write:2001:db8::/64", 1)],
        )


def write_vectors(
    dsn: str, table: str, dimension: int, entries: list[LedgerEntry], offset: int, *, grant: bool
) -> None:
    """A generation's pgvector table (created by the runtime's own code) with a vector for each entry its
    ledger says is indexed; before 0005 (`grant` false) no runtime role was granted it."""
    database = Database(dsn)
    index = PgVectorIndex(database, dimension, table)
    index.ensure()
    with database.transaction() as conn, conn.cursor() as cur:
        for e in (e for e in entries if e.status == "indexed"):
            product_id = offset + e.product_id
            p = make_product(product_id)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (product_id, embedding, sku, name, category, price, version, content_hash)"
                    " VALUES (%s, %s::vector, %s, %s, %s, %s, %s, %s)"
                ).format(sql.Identifier(index.table)),
                (product_id, str([0.5] * dimension), p.sku, p.name, p.category, p.price, e.indexed_version,
                 _content_hash(e, product_id)),
            )  # fmt: skip
        if not grant:
            cur.execute(
                "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'refarch_emu') THEN"
                " REVOKE ALL ON product_vectors FROM refarch_web, refarch_emu, refarch_pelican; END IF; END $$"
            )
    database.close()
