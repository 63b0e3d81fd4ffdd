"""Shared fixtures: a real embedded Postgres 16 + pgvector, a real local SQS server, fresh per test.

Under pytest-xdist (`make test`, `make test-fast`) every worker is a process of its own with its
own session: its own Postgres (in its own temp dir, on a Unix socket), its own SQS server on a free
port, and the model loaded once. Every whole local stack a test starts takes free ports (web, SQS,
stand-ins), except the one test of `refarch demo`'s defaults. The CDK synth tests share one
`xdist_group`, so each stage is synthesized once per run (tests/infra/conftest.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The synthesized CDK app the local state machines run: one cache for every test (REFARCH_HOME differs per test).
os.environ.setdefault("REFARCH_SYNTH_CACHE", str(Path(__file__).resolve().parent.parent / ".refarch"))

from refarch.db import migrate, with_database  # noqa: E402
from refarch_local.database import LocalDatabase  # noqa: E402
from refarch_local.supervisor import LOCAL_CORES_ENV, free_port  # noqa: E402  (free_port re-exported for the tests)

# Parallel workers (pytest-xdist) each get their share of the cores for the model threads of the
# stacks they start and of the model they load (refarch_local.supervisor.local_cores): more threads
# than cores spin and burn the CPU the other workers need. Set in the workers only: they inherit the
# environment of the process that starts them, which imports this file too.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault(LOCAL_CORES_ENV, str(max(1, _share)))

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# The bulk lane's batching window (5 s, as deployed), shortened to 1 s for the tests whose small
# bootstraps (a few bulk messages, never a full batch of 100) would each wait it out
# (refarch_local/event_source.py); the tests of the window itself keep the deployed one.
SHORT_BATCHING_WINDOW = {"REFARCH_LOCAL_BATCHING_WINDOW_SECONDS": "1"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests (whole local stacks, minutes each) first, the order otherwise kept.

    With parallel workers (`make test`: pytest-xdist) they then start at once on different workers,
    and the many short tests fill in around them, instead of the longest starting last.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if getattr(config.option, "loadgroup", False):
        group_by_xdist_mark(items)


def group_by_xdist_mark(items: list[pytest.Item]) -> None:
    """What `--dist loadgroup` does on each worker: a test marked `xdist_group(name)` gets `@name` after its id.

    pytest-xdist 3.8 writes that id into `item._nodeid`, which pytest 9 no longer reads (a node's id
    is `item._id`), so every group was silently ignored: the CDK synth tests ran on every worker, each
    synthesizing every stage again. Done here until xdist follows pytest (an id that already carries
    its group is left alone).
    """
    from _pytest.nodeid import NodeId

    for item in items:
        names = sorted(
            {
                str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                for mark in item.iter_markers("xdist_group")
            }
        )
        nodeid = item.nodeid
        if names and nodeid.rfind("@") <= nodeid.rfind("]"):
            item._id = NodeId.parse(f"{nodeid}@{'_'.join(names)}")  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def metrics_printed_again_after_each_test() -> Iterator[None]:
    """A command run in this process (click's runner) sends metric records to its home's log file;
    the next test starts again from Powertools' stdout, as a handler on AWS does."""
    from refarch.observability import EmfOutput, metrics

    yield
    if isinstance(metrics.provider, EmfOutput):
        metrics.provider.path = None


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDatabase]:
    """One embedded Postgres for the whole session, in a temp dir."""
    server = LocalDatabase(tmp_path_factory.mktemp("pg"))
    server.start()
    admin = psycopg2.connect(server.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        # A throwaway server: its data need not survive the machine crashing, so commits and the
        # database cloned for every test are not forced to disk (fsync). A crash of Postgres itself
        # still loses nothing: what was committed is in the kernel's page cache.
        cur.execute("ALTER SYSTEM SET fsync = off")
        cur.execute("ALTER SYSTEM SET full_page_writes = off")
        cur.execute("SELECT pg_reload_conf()")
        cur.execute("CREATE DATABASE refarch_template")
    admin.close()
    migrate(with_database(server.dsn, "refarch_template"))
    yield server
    server.stop()


@pytest.fixture
def dsn(pg_server: LocalDatabase) -> Iterator[str]:
    """A fresh, migrated database for one test (cloned from a migrated template)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} TEMPLATE refarch_template")
    url = with_database(pg_server.dsn, name)
    yield url
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture(scope="session")
def articles_template(pg_server: LocalDatabase, local_embedder, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of 24 articles, every one indexed, built once per test process; tests clone it
    (tests.web.conftest.articles_app) instead of seeding and embedding them again."""
    from tests.web.conftest import indexed_articles

    with pytest.MonkeyPatch.context() as env:
        env.setenv("REFARCH_SOURCE", "articles")
        return indexed_articles(pg_server.dsn, local_embedder, tmp_path_factory.mktemp("articles-home"))


@pytest.fixture
def empty_dsn(pg_server: LocalDatabase) -> Iterator[str]:
    """A fresh database with no migrations applied."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield with_database(pg_server.dsn, name)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection to the test's database."""
    connection = psycopg2.connect(dsn)
    yield connection
    connection.close()


@pytest.fixture
def login_as(dsn: str) -> Callable[[str], str]:
    """Turn a runtime's database role LOGIN on (as the migrate custom resource does); return its DSN."""
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    from refarch.db import connect
    from refarch.db.roles import RUNTIME_ROLES, enable_login

    def login(runtime: str) -> str:
        role, password = RUNTIME_ROLES[runtime], secrets.token_urlsafe(16)
        admin = connect(dsn)
        try:
            enable_login(admin, runtime, username=role, password=password)
        finally:
            admin.close()
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.netloc.rpartition('@')[2]}"))

    return login


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """A real SQS API server (moto's server mode) on 127.0.0.1."""
    from refarch_local.sqs import start_server

    port = free_port()
    server = start_server(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def secretsmanager(sqs_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    """A Secrets Manager client on moto's server (the SQS server serves it too); code under test finds
    the same server through AWS_ENDPOINT_URL_SECRETS_MANAGER."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", sqs_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    return boto3.client("secretsmanager", region_name="us-east-1")


def scram_matches(verifier: str, password: str) -> bool:
    """Whether Postgres's SCRAM-SHA-256 verifier was made from this (ASCII) password."""
    import base64

    from refarch.db.roles import scram_sha256_verifier

    method, _, rest = verifier.partition("$")
    iterations, _, salt = rest.partition("$")[0].partition(":")
    if method != "SCRAM-SHA-256":
        return False
    return verifier == scram_sha256_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))


@pytest.fixture
def local_settings(tmp_path: Path, sqs_endpoint: str, dsn: str, monkeypatch: pytest.MonkeyPatch):
    """Settings for one test: its own REFARCH_HOME, database and freshly created queues."""
    from refarch.settings import Settings
    from refarch_local.sqs import create_queues

    monkeypatch.setenv("REFARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", dsn)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    settings = Settings()
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setattr("refarch_local.sqs.QUEUE_NAME", f"q{suffix}.fifo")
    monkeypatch.setattr("refarch_local.sqs.DLQ_NAME", f"d{suffix}.fifo")
    monkeypatch.setattr("refarch_local.sqs.BULK_QUEUE_NAME", f"b{suffix}")
    monkeypatch.setattr("refarch_local.sqs.BULK_DLQ_NAME", f"bd{suffix}")
    create_queues(settings, sqs_endpoint, visibility_timeout=2, bulk_visibility_timeout=2)
    return Settings()


@pytest.fixture(scope="session")
def local_embedder():
    """The real all-MiniLM-L6-v2 model, loaded once per session (a few seconds): the one the Emu tests share."""
    from tests.integration.emu_support import shared_local_embedder

    return shared_local_embedder()


@pytest.fixture
def emu_runtime(local_settings, local_embedder, monkeypatch: pytest.MonkeyPatch):
    """`lambdas.emu` wired to this test's database and queues, sharing the session's model."""
    import lambdas.emu
    from refarch.runtime import Runtime

    runtime = Runtime(local_settings)
    runtime.__dict__["embedder"] = local_embedder
    monkeypatch.setattr(lambdas.emu, "runtime", runtime)
    return runtime
