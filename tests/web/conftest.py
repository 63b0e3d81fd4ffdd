"""Fixtures for the web tests: the Flask app on a real Postgres, the local embedding model, a real index."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from flask import Flask
from flask.testing import FlaskClient

from refarch import products
from refarch.db import connect, migrate, with_database
from refarch.embeddings import LocalEmbedder
from refarch.lanes.messages import SyncMessage
from refarch.runtime import Runtime
from refarch.settings import Settings
from refarch.source import load
from refarch_local import articles
from web import create_app

EDIT_PASSWORD = "correct horse battery staple"

# A small catalog whose words do not overlap, so rankings are unambiguous.
CATALOG = [
    {
        "sku": "SW-1",
        "name": "Insight Forecasting Engine",
        "category": "software",
        "price": Decimal("199.00"),
        "description": "Uses machine learning and neural networks to predict demand from your sales history.",
    },
    {
        "sku": "KI-1",
        "name": "Cast Iron Skillet",
        "category": "kitchen",
        "price": Decimal("45.00"),
        "description": "Heats evenly for a perfect sear on steaks and vegetables.",
    },
    {
        "sku": "OU-1",
        "name": "Alpine Camping Tent",
        "category": "outdoor",
        "price": Decimal("230.00"),
        "description": "Stays dry in heavy rain and sets up in two minutes.",
    },
    {
        "sku": "BO-1",
        "name": "Deep Learning Handbook",
        "category": "books",
        "price": Decimal("39.50"),
        "description": "Explains neural networks and deep learning from first principles.",
    },
    {
        "sku": "EL-1",
        "name": "Wireless Earbuds",
        "category": "electronics",
        "price": Decimal("99.00"),
        "description": "Crisp sound with deep bass and a battery that lasts all week.",
    },
]


@pytest.fixture(scope="session")
def embedder(local_embedder: LocalEmbedder) -> LocalEmbedder:
    """The session's local all-MiniLM-L6-v2 model (tests/conftest.py), shared with every other suite."""
    return local_embedder


def make_runtime(shared_model: LocalEmbedder | None, /, **settings: Any) -> Runtime:
    """A Runtime from explicit settings (nothing from the developer's environment) sharing the model.

    With `shared_model=None` the Runtime builds the embedder the settings choose (e.g. OpenAI at a stand-in).
    """
    base: dict[str, Any] = {
        "embedder": "local",
        "vector_backend": "pgvector",
        "live_queue_url": None,
        "bulk_queue_url": None,
        "sqs_endpoint_url": None,
        "edit_password": None,
        "edit_password_secret_arn": None,
        "session_secret": None,
        "session_secret_arn": None,
    }
    runtime = Runtime(Settings(**{**base, **settings}), application_name="refarch-web-test")
    if shared_model is not None:
        runtime.embedder = shared_model  # cached_property: set once, the Runtime reuses it
    return runtime


@pytest.fixture
def runtime(dsn: str, embedder: LocalEmbedder, tmp_path) -> Runtime:
    """A Runtime on this test's fresh database, without a queue."""
    return make_runtime(embedder, database_url=dsn, home=tmp_path / "home")


def build_app(runtime: Runtime, **config: Any) -> Flask:
    """The real app factory with test settings on top."""
    return create_app({"TESTING": True, "REFARCH_RUNTIME": runtime, "EDIT_PASSWORD": None, **config})


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    """The app with editing open (no password), as in the local demo."""
    return build_app(runtime)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser-like client of the open app."""
    return app.test_client()


@pytest.fixture
def locked_app(runtime: Runtime) -> Flask:
    """The app with an edit password configured, as on AWS."""
    return build_app(runtime, EDIT_PASSWORD=EDIT_PASSWORD)


@pytest.fixture
def locked_client(locked_app: Flask) -> FlaskClient:
    """A client of the password-protected app (not signed in)."""
    return locked_app.test_client()


def csrf_token(client: FlaskClient) -> str:
    """The session's CSRF token, the way an API client gets it."""
    return client.get("/api/session").get_json()["csrf_token"]


def form_csrf_token(html: str) -> str:
    """The CSRF token embedded in a rendered page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, "page carries no CSRF token"
    return match.group(1)


class Api:
    """A client that sends the session's CSRF token on every change, as the page does."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.token = csrf_token(client)

    def get(self, url: str, **kwargs: Any):
        """GET."""
        return self.client.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any):
        """POST with the CSRF header."""
        return self.client.post(url, headers={"X-CSRF-Token": self.token}, **kwargs)

    def put(self, url: str, **kwargs: Any):
        """PUT with the CSRF header."""
        return self.client.put(url, headers={"X-CSRF-Token": self.token}, **kwargs)

    def delete(self, url: str, **kwargs: Any):
        """DELETE with the CSRF header."""
        return self.client.delete(url, headers={"X-CSRF-Token": self.token}, **kwargs)


@pytest.fixture
def api(client: FlaskClient) -> Api:
    """The open app's API, with CSRF handled."""
    return Api(client)


@pytest.fixture
def catalog(dsn: str) -> list[products.Product]:
    """The small catalog, inserted (pending: nothing indexed yet)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn:
            return [products.create(conn, dict(row)) for row in CATALOG]
    finally:
        conn.close()


def index_now(runtime: Runtime, product_ids: list[int]) -> None:
    """Run Emu on these products directly (what the queue consumer does), and insist it succeeded."""
    with runtime.db.transaction() as conn:
        rows = products.get_many(conn, product_ids)
    bodies = {}
    for pid in product_ids:
        version = rows[pid].version if pid in rows else 1
        op = "update" if pid in rows else "delete"
        bodies[f"m{pid}"] = SyncMessage(product_id=pid, version=version, op=op, source="change").model_dump_json()
    outcome = runtime.emu.process(bodies)
    assert outcome.failures == {}


@pytest.fixture
def indexed_catalog(runtime: Runtime, catalog: list[products.Product]) -> list[products.Product]:
    """The small catalog, embedded and in the vector index."""
    index_now(runtime, [p.id for p in catalog])
    return catalog


@pytest.fixture
def closed_port_dsn() -> Iterator[str]:
    """A database URL nobody answers on."""
    from tests.conftest import free_port

    yield f"postgresql://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"


def indexed_articles(server_dsn: str, embedder: LocalEmbedder, home: Path) -> str:
    """A new database holding 24 articles (a table of their own), every one indexed; returns its name.

    REFARCH_SOURCE must name articles while it runs (the runtime reads the source from it). Built once
    per test process (the `articles_template` fixture) and cloned for each test by `articles_app`.
    """
    name = f"articles_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    admin.close()
    dsn = with_database(server_dsn, name)
    conn = connect(dsn)
    with conn:
        articles.create_table(conn)
        articles.seed(conn, 24)
    conn.close()
    migrate(dsn, source=load("articles"))
    runtime = make_runtime(embedder, database_url=dsn, home=home, source="articles")
    try:
        with runtime.db.transaction() as conn, conn.cursor() as cur:
            cur.execute("SELECT id, version FROM source_rows")
            versions = dict(cur.fetchall())
        bodies = {
            f"m{pid}": SyncMessage(product_id=pid, version=v, op="update", source="change").model_dump_json()
            for pid, v in versions.items()
        }
        assert runtime.emu.process(bodies).failures == {}
    finally:
        runtime.db.close()
    # A template takes no connection while it is cloned: end the rest of this runtime's (its pgvector
    # index keeps a pool of its own), and wait until their sessions are gone.
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        for _ in range(100):
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,))
            if cur.fetchone() == (0,):
                break
            time.sleep(0.05)
    admin.close()
    return name


@contextmanager
def articles_app(server_dsn: str, template: str, embedder: LocalEmbedder, home: Path, **config: Any) -> Iterator[Flask]:
    """The app over a new database cloned from `template` (24 articles, every one indexed: `indexed_articles`).

    REFARCH_SOURCE must name articles while it runs (the app and its runtime read the source from it).
    """
    name = f"a_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    runtime = make_runtime(embedder, database_url=with_database(server_dsn, name), home=home, source="articles")
    try:
        yield build_app(runtime, **config)
    finally:
        runtime.db.close()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
