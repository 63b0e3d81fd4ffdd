"""Upgrades: each migration applied to a database that lived through every release before it (rows
edited, deleted and inserted again, tombstones sent and not, a ledger entry in every status, index
generations in every status, a build in progress) keeps what the data means, and the database ends
with the schema of a fresh install (refarch_local.migration_upgrades, docs/data-model.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import psycopg2
import psycopg2.errors
import pytest

import refarch.db
from refarch import generations, products
from refarch.catalog import make_product
from refarch.db import connect, migrate, migration_files, migrations_through
from refarch.emu import ledger
from refarch.emu.decisions import Action, content_hash, decide
from refarch.source import load as load_source
from refarch_local import migration_upgrades
from refarch_local.database import LocalDatabase
from refarch_local.migration_upgrades import (
    NewDatabase,
    UpgradeMismatch,
    check_upgrade,
    check_upgrades,
    populated_before,
    scratch_databases,
)
from refarch_local.schema_snapshot import schema_diff
from refarch_local.upgrade_population import id_offset, populate

MIGRATIONS = [name for name, _ in migration_files()]


def migration(number: str) -> str:
    """The file name of migration `number`."""
    return next(name for name in MIGRATIONS if name.startswith(number))


def last_release_ids(before: str) -> int:
    """The id offset of the last release before migration `before` (its products are offset + 1..13)."""
    return id_offset(MIGRATIONS.index(migration(before)))


@pytest.fixture(scope="session")
def upgrade_templates(pg_server: LocalDatabase) -> Iterator[NewDatabase]:
    """The histories and fresh installs the checks build, kept for every test of the session."""
    with scratch_databases(pg_server.dsn) as templates:
        yield templates


@pytest.fixture
def new_database(upgrade_templates: NewDatabase) -> Iterator[NewDatabase]:
    """Makes new databases on the session's server (sharing the session's templates); drops them after the test."""
    new = upgrade_templates.sibling()
    yield new
    new.drop()


def query(dsn: str, statement: str, params: tuple = ()) -> list[tuple]:
    """The rows of one query, in its own committed transaction."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def insert_again(dsn: str, product_id: int) -> int:
    """Insert a product under a (deleted) id, as a client would; return the version the database gave it."""
    p = make_product(product_id)
    (row,) = query(
        dsn,
        "INSERT INTO products (id, sku, name, category, price) VALUES (%s, %s, %s, %s, %s) RETURNING version",
        (product_id, p.sku, p.name, p.category, p.price),
    )
    return row[0]


@pytest.mark.parametrize("name", MIGRATIONS)
def test_each_migration_upgrades_a_populated_database(name: str, new_database: NewDatabase):
    """Given a database that lived through every release before the migration,
    When the migration is applied, then every later one,
    Then every row keeps its meaning (or changes as the migration means it to) and the schema equals
    a fresh install's."""
    after = check_upgrade(name, new_database)

    # (Before the first migration there is nothing to populate.)
    assert after.rows("products") or name == MIGRATIONS[0], "the upgraded database holds the releases' products"


def test_0011_an_aborted_build_is_no_longer_written_restored_or_kept(new_database: NewDatabase):
    """Given a database whose build was aborted before 0011 (recorded as retired at -infinity, never active)
    and a generation gc dropped (its Pinecone index removed),
    When it is upgraded to the head,
    Then Emu writes only to the active, building and truly retired generations, gc does not try to remove
    the dropped generation's index again, and the next gc drops the aborted build whatever the grace."""
    dsn = populated_before(migration("0011"), new_database)
    aborted = "SELECT status, retired_at = '-infinity', activated_at IS NULL FROM index_generations WHERE id = 4"
    assert query(dsn, aborted) == [("retired", True, True)]

    migrate(dsn)

    conn = connect(dsn)
    try:
        assert [g.id for g in generations.live(conn)] == [1, 3, 5]
        assert generations.to_remove(conn) == []
        assert [g.id for g in generations.drop_expired(conn, timedelta(days=30))] == [4]
    finally:
        conn.rollback()
        conn.close()


def test_0012_an_id_deleted_before_the_upgrade_continues_past_its_versions(new_database: NewDatabase):
    """Given a database upgraded to the head from before 0012, with ids deleted (tombstone unsent; deleted,
    inserted again and deleted again; a tombstone already pruned from the outbox),
    When those ids are inserted again, and a product never deleted is deleted and inserted again,
    Then each new row's version is past every version its id was ever given."""
    dsn = populated_before(migration("0012"), new_database)
    migrate(dsn)
    ids = last_release_ids("0012")

    assert insert_again(dsn, ids + 7) == 3  # tombstone 2, never sent
    assert insert_again(dsn, ids + 10) == 6  # tombstones 5, then 2 (its second life started at 1)
    assert insert_again(dsn, ids + 11) == 3  # tombstone pruned from the outbox; the ledger holds 2
    query(dsn, "DELETE FROM products WHERE id = %s", (ids + 1,))
    assert insert_again(dsn, ids + 1) == 3  # version 1, tombstone 2


def emu_decision_on_same_text(dsn: str, product_id: int) -> Action:
    """What Emu decides for the row if the active ledger held a vector of exactly its text (an id inserted
    again with the content it had: the case where only its price or version tells the rows apart)."""
    conn = connect(dsn)
    try:
        row = products.get(conn, product_id)
        entry = ledger.get_many(conn, [product_id])[product_id]
    finally:
        conn.close()
    assert row is not None
    held = replace(entry, content_hash=content_hash("model", row.embedding_text()), status="indexed")
    return decide(row, held, "model").action


def test_0013_a_row_inserted_again_before_0012_is_renumbered_and_sent(new_database: NewDatabase):
    """Given a database from before 0012 where two ids were deleted and inserted again (at version 1): one
    while Emu still held the old row at version 3 (its old vector stays, Emu skips the new row), one
    whose delete Emu applied (tombstone 3), both shown as indexed,
    When it is upgraded to the head,
    Then both rows move past every version their id had, each move waits in the outbox for the listener,
    both show as pending, Emu no longer skips the row, and its next edit repeats no version."""
    dsn = populated_before(migration("0012"), new_database)
    ids = last_release_ids("0012")
    status = "SELECT product_id, version, status FROM product_sync_status WHERE product_id = ANY(%s) ORDER BY 1"
    # Before 0012 both show as synced: a ledger version at or past the row's was "indexed", even a delete's.
    assert query(dsn, status, ([ids + 9, ids + 13],)) == [(ids + 9, 1, "indexed"), (ids + 13, 1, "indexed")]
    assert emu_decision_on_same_text(dsn, ids + 9) is Action.SKIP

    migrate(dsn)

    assert query(dsn, status, ([ids + 9, ids + 13],)) == [(ids + 9, 5, "pending"), (ids + 13, 4, "pending")]
    unsent = "SELECT product_id, op, version FROM sync_outbox WHERE enqueued_at IS NULL AND product_id = ANY(%s)"
    assert sorted(query(dsn, unsent, ([ids + 9, ids + 13],))) == [(ids + 9, "update", 5), (ids + 13, "update", 4)]
    assert emu_decision_on_same_text(dsn, ids + 9) is Action.METADATA
    (edited,) = query(dsn, "UPDATE products SET price = price + 1 WHERE id = %s RETURNING version", (ids + 9,))
    assert edited == (6,)


def test_0006_refuses_a_product_id_that_is_not_positive(new_database: NewDatabase):
    """Given a populated database before 0006 holding a product under id 0 (an explicit id a client chose),
    When it is migrated,
    Then 0006 fails naming its constraint and rolls back whole (the database stays at 0005, row kept);
    once the row is deleted and inserted under a positive id, the upgrade goes through."""
    dsn = populated_before(migration("0006"), new_database)
    p = make_product(0)
    insert = "INSERT INTO products (id, sku, name, category, price) VALUES (0, %s, %s, %s, %s)"
    query(dsn, insert, (p.sku, p.name, p.category, p.price))

    with pytest.raises(psycopg2.errors.CheckViolation, match="products_id_positive"):
        migrate(dsn)

    assert query(dsn, "SELECT max(name) FROM schema_migrations") == [(migration("0005"),)]
    assert query(dsn, "SELECT count(*) FROM products WHERE id = 0") == [(1,)]
    query(dsn, "DELETE FROM products WHERE id = 0")
    assert migrate(dsn)[-1] == MIGRATIONS[-1]


# (migration, how its backfill statement starts, what the check must name when it is taken out)
BACKFILLS = [
    ("0011", "UPDATE index_generations SET status = 'abandoned'", "generations"),
    ("0012", "INSERT INTO deleted_product_versions (product_id, last_version)\nSELECT", "deleted_product_versions"),
    ("0013", "WITH used AS", "products"),
]


def without_statement(sql: str, start: str) -> str:
    """The migration text without the statement that begins with `start` (up to its semicolon)."""
    begin = sql.index(start)
    return sql[:begin] + sql[sql.index(";", begin) + 1 :]


@pytest.mark.parametrize(("number", "statement", "named"), BACKFILLS, ids=[b[0] for b in BACKFILLS])
def test_a_migration_without_its_backfill_is_caught(
    number: str, statement: str, named: str, new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
):
    """Given a migration whose backfill statement is taken out (the schema it makes is unchanged),
    When its upgrade is checked on a populated database,
    Then the check fails, naming what the data lost."""
    files = [
        (name, without_statement(sql, statement) if name[:4] == number else sql) for name, sql in migration_files()
    ]
    monkeypatch.setattr(refarch.db, "migration_files", lambda: files)

    with pytest.raises(UpgradeMismatch) as failed:
        check_upgrade(migration(number), new_database)

    assert any(named in problem for problem in failed.value.problems)


def test_schema_diff_names_a_grant_a_fresh_install_has(new_database: NewDatabase):
    """Given two fresh installs, one missing the web role's right to read the ledger,
    When their schemas are compared,
    Then the difference is that grant, and nothing else."""
    upgraded, fresh = new_database(), new_database()
    migrate(upgraded)
    migrate(fresh)
    query(upgraded, "REVOKE SELECT ON sync_state FROM refarch_web")

    changed = [line for line in schema_diff(upgraded, fresh) if line[:1] in "+-" and line[:3] not in ("+++", "---")]

    assert changed == ["-GRANT SELECT ON TABLE public.sync_state TO refarch_web;"]


def test_check_upgrades_checks_every_migration_in_order(new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch):
    """Given the upgrade check of one migration (recorded instead of run),
    When every upgrade is checked (what the deploy rehearsal reports as migrations_upgraded),
    Then each migration is checked once, in order, and the count is all of them."""
    checked: list[str] = []
    monkeypatch.setattr(migration_upgrades, "check_upgrade", lambda name, new: checked.append(name))

    assert check_upgrades(new_database) == len(MIGRATIONS)
    assert checked == MIGRATIONS


def test_migrations_through_stops_at_the_one_named():
    """Given the migration files,
    When the migrations up to one are asked for by number or file name, or up to one that does not exist,
    Then the list ends with it, or the unknown one is refused naming the real ones."""
    assert [n for n, _ in migrations_through("0010")][-1] == migration("0010")
    assert [n for n, _ in migrations_through(migration("0002"))] == MIGRATIONS[:2]
    assert migrations_through(None) == migration_files()
    with pytest.raises(ValueError, match="0001_products.sql"):
        migrations_through("0008")


def test_populate_writes_what_each_release_could(new_database: NewDatabase):
    """Given an empty database, and one at the schema of 0003,
    When each is populated,
    Then the empty one gets nothing and the 0003 one gets products, an outbox and a ledger in every status."""
    empty, early = new_database(), new_database()
    migrate(early, up_to="0003")

    assert populate(empty) == "0000"
    assert populate(early, 1) == "0003"

    statuses = query(early, "SELECT DISTINCT status FROM sync_state ORDER BY 1")
    assert statuses == [("deleted",), ("failed",), ("indexed",), ("pending",)]
    assert query(early, "SELECT count(*) > 0, count(enqueued_at) < count(*) FROM sync_outbox") == [(True, True)]


def test_0018_a_vector_table_made_before_sources_keeps_a_sources_metadata(new_database: NewDatabase):
    """Given a database before 0018 whose pgvector table has the layout the runtimes made then (product
    columns NOT NULL, no `metadata`), When it is migrated, Then the table takes a source's metadata whole,
    without its product columns (the runtimes' roles may not alter it, so the migration does), and keeps its rows."""
    dsn = new_database()
    migrate(dsn, up_to="0017")
    query(dsn, "CREATE EXTENSION IF NOT EXISTS vector")
    query(
        dsn,
        "CREATE TABLE product_vectors (product_id bigint PRIMARY KEY, embedding vector(3) NOT NULL,"
        " sku text NOT NULL, name text NOT NULL, category text NOT NULL, price double precision NOT NULL,"
        " version bigint NOT NULL, content_hash text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())",
    )
    query(dsn, "INSERT INTO product_vectors VALUES (1, '[1,0,0]', 'A-1', 'Lamp', 'home', 9.5, 2, 'h1', now())")
    migrate(dsn)
    query(
        dsn,
        "INSERT INTO product_vectors (product_id, embedding, version, content_hash, metadata)"
        " VALUES (2, '[0,1,0]', 1, 'h2', '{\"title\": \"An article\"}')",
    )
    assert query(dsn, "SELECT product_id, sku, metadata FROM product_vectors ORDER BY 1") == [
        (1, "A-1", None),
        (2, None, {"title": "An article"}),
    ]


def test_0018_generations_made_before_sources_are_recorded_as_made_from_products_text(new_database: NewDatabase):
    """Given a database that lived through every release before 0018 (generations in every status, a build
    in progress), When it is migrated with the products source, Then each generation records the products
    text it was made from (0018 adds the column; the source step fills it), so the upgrade starts no
    re-index and a later new template does."""
    dsn = populated_before(migration("0018"), new_database)
    made_before = query(dsn, "SELECT id, status FROM index_generations ORDER BY id")
    assert {status for _, status in made_before} >= {"active", "building", "retired"}, made_before
    migrate(dsn)
    products_text = load_source("products").fingerprint("text")
    assert query(dsn, "SELECT id, status, source_text FROM index_generations ORDER BY id") == [
        (gid, status, products_text) for gid, status in made_before
    ]
    conn = connect(dsn)
    try:
        assert generations.current_source_text(conn) == products_text
    finally:
        conn.close()
