"""Least privilege in the database: each runtime's real code works as its own role, and nothing more does.

The migrate step (as admin) creates the roles and the vector table; then the web, Emu and Pelican
code paths run on connections logged in as refarch_web, refarch_emu and refarch_pelican.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import psycopg2
import psycopg2.errors
import pytest

from refarch import catalog, products
from refarch.db import Database, connect
from refarch.db.roles import RUNTIME_ROLES, enable_login, scram_sha256_verifier
from refarch.emu.worker import Emu
from refarch.generations.targets import GenerationTargets
from refarch.index.pgvector_index import PgVectorIndex
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.pelican.bootstrap import finalize_bootstrap, plan_bootstrap, run_batch
from refarch.pelican.listener import OutboxRelay
from refarch.search.service import SearchService
from refarch.status import sync_counts
from tests.conftest import scram_matches


@pytest.fixture
def vectors(dsn: str, local_embedder) -> PgVectorIndex:
    """The vector table, created by the admin (the migrate step does this on AWS)."""
    index = PgVectorIndex(Database(dsn), local_embedder.dimension)
    index.ensure()
    return index


def refused(dsn: str, statement: str, params: tuple = ()) -> bool:
    """True if the database refuses the statement for lack of privilege."""
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
    except psycopg2.errors.InsufficientPrivilege:
        return True
    finally:
        conn.rollback()
        conn.close()
    return False


def whoami(dsn: str) -> str:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user")
            return cur.fetchone()[0]
    finally:
        conn.close()


FORBIDDEN = {
    "web": [
        "INSERT INTO sync_outbox (product_id, op, version) VALUES (1, 'update', 99)",
        "UPDATE sync_outbox SET enqueued_at = now()",
        "UPDATE sync_state SET indexed_version = 99",
        "DELETE FROM product_vectors",
        "UPDATE bootstrap_runs SET status = 'failed'",
        # Only Emu records where a generation's vectors live (migration 0015): search may not be re-pointed.
        "UPDATE index_generations SET target = '{}'::jsonb",
        "UPDATE index_generations SET embedder = NULL",
        "SELECT id FROM index_generations FOR SHARE",
    ],
    "emu": [
        "UPDATE products SET name = 'x'",
        "DELETE FROM products",
        "INSERT INTO products (sku, name, description, category, price) VALUES ('X', 'x', 'x', 'x', 1)",
        "UPDATE sync_outbox SET enqueued_at = now()",
        "DELETE FROM sync_state",
        "INSERT INTO bootstrap_runs (range_size, total_rows) VALUES (1, 1)",
    ],
    "pelican": [
        "UPDATE products SET name = 'x'",
        "DELETE FROM products",
        "UPDATE sync_state SET indexed_version = 99",
        "INSERT INTO sync_outbox (product_id, op, version) VALUES (1, 'update', 99)",
        "DELETE FROM product_vectors",
        "INSERT INTO embed_calls (model, texts) VALUES ('m', 1)",
        "UPDATE index_generations SET target = '{}'::jsonb",
    ],
}


@pytest.mark.parametrize("runtime", sorted(FORBIDDEN))
def test_each_role_is_refused_what_its_runtime_does_not_do(runtime, dsn, login_as, vectors):
    role_dsn = login_as(runtime)
    assert whoami(role_dsn) == RUNTIME_ROLES[runtime]
    for statement in FORBIDDEN[runtime]:
        assert refused(role_dsn, statement), f"{runtime} may run: {statement}"
    # None of them can create tables or roles, or read the migration bookkeeping's DDL rights.
    assert refused(role_dsn, "CREATE TABLE mine (id int)")
    assert refused(role_dsn, "ALTER ROLE refarch_web SUPERUSER")


def test_the_whole_flow_runs_with_each_runtime_on_its_own_role(dsn, login_as, vectors, local_settings, local_embedder):
    """Seed (admin) → bootstrap (pelican) → index (emu) → search (web) → edit (web) → relay (pelican) → index (emu)."""
    admin = connect(dsn)
    catalog.seed(admin, 30)
    admin.close()
    web_dsn, emu_dsn, pelican_dsn = login_as("web"), login_as("emu"), login_as("pelican")
    queue = SyncQueue.for_lane(make_sqs_client(local_settings), local_settings, "live")
    bulk = SyncQueue.for_lane(queue.client, local_settings, "bulk")

    # Pelican: the bootstrap's plan, batches and finalize.
    pelican_db = Database(pelican_dsn)
    plan = plan_bootstrap(pelican_db, range_size=10)
    for item in plan["ranges"]:
        run_batch(pelican_db, bulk, run_id=plan["run_id"], range_no=item["range_no"])
    assert finalize_bootstrap(pelican_db, run_id=plan["run_id"])["enqueued"] == 30

    # Emu: its index check at start, then every queued message.
    emu_index = PgVectorIndex(Database(emu_dsn), local_embedder.dimension)
    emu_index.ensure()  # the table exists: a check, no DDL
    emu_db = Database(emu_dsn)
    emu = Emu(emu_db, GenerationTargets(local_settings, emu_db, configured_embedder=lambda: local_embedder))

    def index_everything_queued(lane: SyncQueue) -> int:
        """Products named by the lane's messages, each message processed by Emu."""
        done = 0
        while batch := lane.client.receive_message(QueueUrl=lane.url, MaxNumberOfMessages=10).get("Messages"):
            outcome = emu.process({m["MessageId"]: m["Body"] for m in batch})
            assert outcome.failures == {}
            for m in batch:
                lane.client.delete_message(QueueUrl=lane.url, ReceiptHandle=m["ReceiptHandle"])
            done += sum(len(json.loads(m["Body"]).get("items", [None])) for m in batch)
        return done

    assert index_everything_queued(bulk) == 30  # products, in bulk messages
    assert vectors.count() == 30

    # Web: search, status, and an edit (whose outbox row the trigger writes with its owner's rights).
    web_db = Database(web_dsn)
    search = SearchService(
        web_db, GenerationTargets(local_settings, web_db, configured_embedder=lambda: local_embedder)
    )
    assert len(search.search("products", k=5).hits) == 5
    with web_db.transaction() as conn:
        assert sync_counts(conn)["indexed"] == 30
        edited = products.update(
            conn,
            1,
            {"description": "A neural network that forecasts demand", "price": Decimal("5")},
            expected_version=1,
        )
        created = products.create(
            conn, {"sku": "ROLE-1", "name": "Role test", "description": "x", "category": "software", "price": "1"}
        )
        products.delete(conn, 2)

    # Pelican's listener relays the three changes; Emu indexes them.
    relay_conn = connect(pelican_dsn)
    assert OutboxRelay(pelican_dsn, queue).drain(relay_conn) == 3
    relay_conn.close()
    assert index_everything_queued(queue) == 3
    stored = {pid: meta for pid, meta in vectors.scan()}
    assert stored[edited.id]["version"] == 2 and created.id in stored and 2 not in stored


def test_login_refuses_a_secret_for_another_role(dsn):
    admin = connect(dsn)
    try:
        with pytest.raises(ValueError, match="refarch_web"):
            enable_login(admin, "web", username="refarch_admin", password="x")
        with pytest.raises(ValueError, match="unknown runtime"):
            enable_login(admin, "root", username="root", password="x")
    finally:
        admin.close()


def _libpq_verifier(conn, password: str, user: str) -> str:
    """libpq's own SCRAM-SHA-256 verifier (PQencryptPasswordConn, what psql's \\password sends)."""
    import ctypes
    import glob
    from pathlib import Path

    import psycopg2

    (lib_path,) = glob.glob(str(Path(psycopg2.__file__).parent.parent / "psycopg2_binary.libs" / "libpq-*.so*"))
    libpq = ctypes.CDLL(lib_path)
    libpq.PQencryptPasswordConn.restype = ctypes.c_void_p
    libpq.PQencryptPasswordConn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    libpq.PQfreemem.argtypes = [ctypes.c_void_p]
    raw = libpq.PQencryptPasswordConn(conn.pgconn_ptr, password.encode(), user.encode(), b"scram-sha-256")
    assert raw, "libpq could not compute a verifier"
    try:
        return ctypes.string_at(raw).decode()
    finally:
        libpq.PQfreemem(raw)


def test_the_password_travels_only_as_the_verifier_libpq_would_compute(dsn):
    # Given libpq's verifier for a password (random salt), and ours with the same salt and iterations
    admin = connect(dsn)
    try:
        password = "generated-Secret_42~x"
        reference = _libpq_verifier(admin, password, "refarch_web")
        iterations, salt = reference.split("$")[1].split(":")
        ours = scram_sha256_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
        # Then they are the same string
        assert ours == reference

        # When the login is enabled, Then Postgres stores a verifier, never the password
        enable_login(admin, "web", username="refarch_web", password=password)
        with admin.cursor() as cur:
            cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'refarch_web'")
            stored = cur.fetchone()[0]
        # (the very verifier sent: one Postgres had hashed again would not match its own salt and iterations)
        assert stored.startswith("SCRAM-SHA-256$4096:") and scram_matches(stored, password)
        assert password not in stored
    finally:
        admin.close()

    with pytest.raises(ValueError, match="ASCII"):
        scram_sha256_verifier("pässword")
