"""Schema, triggers, migrations and seed against a real Postgres 16 (never mocked)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg2
import pytest

from refarch import catalog, products
from refarch.db import migrate, migration_files


def outbox_rows(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute("SELECT product_id, op, version, enqueued_at FROM sync_outbox ORDER BY id")
        return cur.fetchall()


def new_product(conn, sku: str = "T-1", **overrides) -> products.Product:
    fields = {
        "sku": sku,
        "name": "Test Widget",
        "description": "A widget.",
        "category": "software",
        "price": Decimal("9.99"),
        **overrides,
    }
    with conn:
        return products.create(conn, fields)


def test_migrations_apply_once_and_record_themselves(empty_dsn):
    # Given an empty database, When migrating twice
    first = migrate(empty_dsn)
    second = migrate(empty_dsn)
    # Then every file applied exactly once and the migration table says so
    assert first == [name for name, _ in migration_files()]
    assert second == []
    conn = psycopg2.connect(empty_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM schema_migrations ORDER BY name")
        assert [r[0] for r in cur.fetchall()] == first
    conn.close()


def test_concurrent_migrations_are_safe(empty_dsn):
    # Given four deploys racing, When they all migrate at once
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrate(empty_dsn), range(4)))
    # Then exactly one applied everything and nobody failed
    applied = [r for r in results if r]
    assert len(applied) == 1
    assert applied[0] == [name for name, _ in migration_files()]


def test_insert_update_delete_write_one_outbox_row_each(conn):
    # Given a new product
    p = new_product(conn)
    assert p.version == 1
    # When it is updated, then deleted
    with conn:
        updated = products.update(conn, p.id, {"description": "A better widget."}, expected_version=1)
    with conn:
        products.delete(conn, p.id)
    # Then versions were bumped and each change left exactly one outbox row, unsent
    assert updated.version == 2
    assert updated.updated_at >= p.updated_at
    assert outbox_rows(conn) == [(p.id, "insert", 1, None), (p.id, "update", 2, None), (p.id, "delete", 3, None)]


def test_noop_update_writes_nothing(conn):
    p = new_product(conn)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE products SET name = name, price = price WHERE id = %s", (p.id,))
        cur.execute("UPDATE products SET version = 99 WHERE id = %s", (p.id,))
    after = products.get(conn, p.id)
    assert after.version == 1
    assert after.updated_at == p.updated_at
    assert len(outbox_rows(conn)) == 1


def test_notify_carries_only_the_outbox_id(dsn, conn):
    listener = psycopg2.connect(dsn)
    listener.autocommit = True
    with listener.cursor() as cur:
        cur.execute("LISTEN refarch_outbox")
    new_product(conn)
    select.select([listener], [], [], 5)
    listener.poll()
    payloads = [n.payload for n in listener.notifies]
    listener.close()
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM sync_outbox")
        assert payloads == [str(cur.fetchone()[0])]


def test_100kb_description_saves(conn):
    # The original design put whole rows into NOTIFY (8000-byte limit) and aborted such writes.
    text = ("machine learning " * 7000)[:100_000]
    p = new_product(conn, description=text)
    with conn:
        products.update(conn, p.id, {"description": text + " more"}, expected_version=1)
    assert len(products.get(conn, p.id).description) == 100_005
    assert [r[1] for r in outbox_rows(conn)] == ["insert", "update"]


def test_stale_version_is_refused(conn):
    p = new_product(conn)
    with conn:
        products.update(conn, p.id, {"price": Decimal("1.00")}, expected_version=1)
    with pytest.raises(products.StaleVersionError), conn:
        products.update(conn, p.id, {"price": Decimal("2.00")}, expected_version=1)
    with pytest.raises(products.ProductNotFoundError), conn:
        products.update(conn, 999_999, {"price": Decimal("2.00")}, expected_version=1)


def test_constraints_reject_bad_rows(conn):
    with pytest.raises(psycopg2.errors.CheckViolation), conn:
        products.create(conn, {"sku": "X", "name": "n", "description": "", "category": "c", "price": -1})
    new_product(conn, sku="DUP")
    with pytest.raises(psycopg2.errors.UniqueViolation), conn:
        products.create(conn, {"sku": "DUP", "name": "n", "description": "", "category": "c", "price": 1})


def test_product_ids_are_positive_and_never_change(conn):
    # Given a product
    product = new_product(conn, sku="ID-1")
    # When someone inserts id 0 or moves a product to another id, Then the database refuses
    with pytest.raises(psycopg2.errors.CheckViolation), conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO products (id, sku, name, description, category, price) VALUES (0, 'ID-0', 'n', '', 'c', 1)"
        )
    refused = pytest.raises(psycopg2.errors.IntegrityConstraintViolation, match="cannot change its id")
    with refused, conn, conn.cursor() as cur:
        cur.execute("UPDATE products SET id = id + 1000 WHERE id = %s", (product.id,))
    # And an update that keeps the id (even naming it) still works and is captured
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE products SET id = id, name = 'Renamed' WHERE id = %s", (product.id,))
    assert outbox_rows(conn)[-1][:3] == (product.id, "update", 2)


def test_concurrent_writers_get_strictly_increasing_versions(dsn, conn):
    # Given one product, When 8 threads update it 25 times each
    p = new_product(conn)
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        c = psycopg2.connect(dsn)
        barrier.wait()
        for i in range(25):
            with c, c.cursor() as cur:
                cur.execute("UPDATE products SET description = %s WHERE id = %s", (f"writer {n} edit {i}", p.id))
        c.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    # Then every committed change got its own version, in commit order, with no gaps
    versions = [r[2] for r in outbox_rows(conn)]
    assert versions == list(range(1, 202))
    assert products.get(conn, p.id).version == 201


def test_changes_with_nobody_listening_stay_in_the_outbox(conn):
    # Given no listener at all, When 300 changes happen
    for i in range(100):
        new_product(conn, sku=f"S-{i}")
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE products SET price = price + 1")
        cur.execute("DELETE FROM products WHERE sku LIKE 'S-1%%'")
    # Then every one of them is durably waiting to be sent
    rows = outbox_rows(conn)
    assert len(rows) == 100 + 100 + 11
    assert all(r[3] is None for r in rows)


def test_seed_is_deterministic_and_idempotent(conn):
    # Given the seed ran once, When it runs again and with a larger N
    assert catalog.seed(conn, 300) == 300
    assert catalog.seed(conn, 300) == 0
    assert catalog.seed(conn, 400) == 100
    # Then the rows are exactly the generator's products 1..400, in id order
    with conn.cursor() as cur:
        cur.execute("SELECT sku, name, description, category, price FROM products ORDER BY id")
        rows = cur.fetchall()
    expected = [catalog.make_product(i) for i in range(1, 401)]
    assert rows == [(p.sku, p.name, p.description, p.category, p.price) for p in expected]


def test_seed_catalog_is_varied_and_mentions_ml_without_saying_ai():
    # Given the first 2,000 catalog products
    items = [catalog.make_product(i) for i in range(1, 2001)]
    # Then they span many categories with mostly distinct descriptions
    assert len({p.category for p in items}) >= 10
    assert len({p.description for p in items}) > 1500
    # And machine-learning products exist without the word "AI" (so the demo query "AI" tests meaning)
    ml = [p for p in items if "machine learning" in p.description or "neural" in p.description]
    assert ml and not any(" AI " in f" {p.description} " for p in ml)


def test_seed_catalog_is_the_same_in_another_process():
    # Given another Python process with a different hash seed (set and dict order may differ)
    script = "from refarch import catalog; print(repr([catalog.make_product(i) for i in (1, 42, 9999)]))"
    other = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    # Then it generates exactly the products this one does (every machine seeds the same catalog)
    assert other.stdout.strip() == repr([catalog.make_product(i) for i in (1, 42, 9999)])


def test_connections_keep_the_dsn_options_and_ask_the_server_for_keepalives(dsn):
    # Given a DSN that carries its own server options
    from psycopg2.extensions import make_dsn

    from refarch.db import connect

    # When a connection is opened with it
    conn = connect(make_dsn(dsn, options="-c statement_timeout=4321"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('statement_timeout')")
            (timeout,) = cur.fetchone()
            cur.execute("SELECT name, source FROM pg_settings WHERE name LIKE 'tcp_keepalives_%' ORDER BY name")
            keepalives = cur.fetchall()
    finally:
        conn.close()
    # Then the DSN's option survives, next to the server keepalives the client asked for
    # (a Unix-socket session ignores their values, but records where they came from)
    assert timeout == "4321ms"
    assert keepalives == [(f"tcp_keepalives_{n}", "client") for n in ("count", "idle", "interval")]
