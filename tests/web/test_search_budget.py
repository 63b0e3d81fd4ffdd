"""A slow provider costs a search its budget, not the site: lexical answers that say so, and /healthz stays free.

The real SDKs talk to the local stand-ins, which answer only after 20 s (slow, not down); pgvector's
vector query waits on a lock another Postgres session holds.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from cdk_app.frontend_stack import WEB_COMMAND
from refarch.embeddings import LocalEmbedder
from refarch.serving import SEARCH_BUDGET, SEMANTIC_SEARCH_SLOTS, WEB_THREADS
from refarch_local.standins import OpenAIStandIn, PineconeStandIn
from tests.web.conftest import build_app, make_runtime

REPO_ROOT = Path(__file__).resolve().parents[2]
SLOW_SECONDS = 20.0
# Far below the 20 s a provider takes, far above the 2.5 s budget: proves the budget applied.
BOUND_SECONDS = 10.0


@pytest.fixture
def openai_standin() -> Iterator[OpenAIStandIn]:
    """An OpenAI stand-in (answers promptly until told to be slow)."""
    with OpenAIStandIn() as stand_in:
        yield stand_in


def openai_settings(dsn: str, home: Path, stand_in: OpenAIStandIn) -> dict[str, Any]:
    """OpenAI at the stand-in with the long timeouts Emu keeps (10 s, 3 retries): search must not use them."""
    return {
        "database_url": dsn,
        "home": home,
        "embedder": "openai",
        "openai_api_key": "sk-local-test",
        "openai_base_url": stand_in.base_url,
        "openai_dimensions": 64,
        "openai_timeout_seconds": 10.0,
        "openai_max_retries": 3,
    }


def test_a_slow_embedding_service_costs_a_search_its_budget_and_it_answers_lexically(
    dsn, tmp_path, openai_standin, catalog
):
    # Given search through the OpenAI API, configured with Emu's long timeouts
    client = build_app(make_runtime(None, **openai_settings(dsn, tmp_path / "home", openai_standin))).test_client()
    assert client.get("/api/search", query_string={"q": "tent"}).get_json()["fallback_reason"] is None
    # When the provider takes 20 s to answer every request
    openai_standin.delay_next(SLOW_SECONDS, times=10)
    started = time.monotonic()
    body = client.get("/api/search", query_string={"q": "camping tent"}).get_json()
    took = time.monotonic() - started
    openai_standin.cancel_delays()
    # Then the search answers from keyword search, saying the provider was too slow, well before 20 s
    assert (body["mode"], body["requested_mode"]) == ("lexical", "hybrid")
    assert "embedding service was too slow" in body["fallback_reason"]
    assert [r["name"] for r in body["results"]] == ["Alpine Camping Tent"]
    assert took < BOUND_SECONDS
    # And it asked twice at most (one retry), never the four times Emu's settings would
    assert len([name for name, _ in openai_standin.received if name == "embeddings"]) <= 1 + 1 + SEARCH_BUDGET.retries


def test_a_slow_vector_index_costs_a_search_its_budget_and_it_answers_lexically(
    dsn, tmp_path, embedder: LocalEmbedder, catalog
):
    # Given search through Pinecone (the SDK's own default: 30 s timeout, 3 retries)
    with PineconeStandIn(dimension=embedder.dimension) as pinecone:
        runtime = make_runtime(
            embedder,
            database_url=dsn,
            home=tmp_path / "home",
            vector_backend="pinecone",
            pinecone_api_key=pinecone.api_key,
            pinecone_host=pinecone.url,
        )
        client = build_app(runtime).test_client()
        assert client.get("/api/search", query_string={"q": "tent"}).get_json()["fallback_reason"] is None
        # When every query takes 20 s
        pinecone.delay_next(SLOW_SECONDS, times=10)
        started = time.monotonic()
        body = client.get("/api/search", query_string={"q": "camping tent", "mode": "semantic"}).get_json()
        took = time.monotonic() - started
        pinecone.cancel_delays()
    # Then the search answers lexically, saying the index was too slow, well before 20 s
    assert (body["mode"], body["requested_mode"]) == ("lexical", "semantic")
    assert "vector index was too slow" in body["fallback_reason"]
    assert took < BOUND_SECONDS


def test_a_vector_query_blocked_in_pgvector_costs_a_search_its_budget_and_it_answers_lexically(
    runtime, dsn, indexed_catalog
):
    # Given search on pgvector, which has answered a search (the index's table is open)
    client = build_app(runtime).test_client()
    assert client.get("/api/search", query_string={"q": "tent"}).get_json()["fallback_reason"] is None
    blocker = psycopg2.connect(dsn)
    try:
        # When another session holds the vector table (a migration, a VACUUM FULL): every vector query waits,
        # for 20 s at the latest (then the server ends that session, so a search without its own limit is
        # slow rather than stuck)
        with blocker.cursor() as cur:
            cur.execute("SET idle_in_transaction_session_timeout = %s", (f"{SLOW_SECONDS:g}s",))
            cur.execute("LOCK TABLE product_vectors IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        body = client.get("/api/search", query_string={"q": "camping tent"}).get_json()
        took = time.monotonic() - started
    finally:
        with contextlib.suppress(psycopg2.Error):
            blocker.rollback()
        blocker.close()
    # Then the search answers from keyword search, saying the index was too slow, within its budget: the
    # vector query's statement_timeout (1 s) cancelled it, and its one retry, and nothing else waited
    assert (body["mode"], body["requested_mode"]) == ("lexical", "hybrid")
    assert "vector index was too slow" in body["fallback_reason"]
    assert [r["name"] for r in body["results"]] == ["Alpine Camping Tent"]
    assert took < SEARCH_BUDGET.total_seconds + 1.5
    # And the next search, with the table free again, ranks by meaning again
    assert client.get("/api/search", query_string={"q": "tent"}).get_json()["fallback_reason"] is None


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, timeout: float = 30.0) -> tuple[int, Any]:
    """GET a JSON answer: (status, body)."""
    import json

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def gunicorn_app(dsn, tmp_path, openai_standin, catalog) -> Iterator[str]:
    """The web app under gunicorn, as WEB_COMMAND runs it but with one worker (the threads are per worker)."""
    port = free_port()
    command = [sys.executable, "-m", *WEB_COMMAND]
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    command[command.index("--workers") + 1] = "1"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REFARCH_", "OPENAI_", "PINECONE_"))},
        "PYTHONPATH": str(REPO_ROOT),
        "DATABASE_URL": dsn,
        "REFARCH_HOME": str(tmp_path / "home"),
        "REFARCH_EMBEDDER": "openai",
        "REFARCH_VECTOR_BACKEND": "pgvector",
        "OPENAI_API_KEY": "sk-local-test",
        "OPENAI_BASE_URL": openai_standin.base_url,
        "REFARCH_OPENAI_DIMENSIONS": "64",
        "REFARCH_RATE_LIMIT_STORAGE": "memory://",
        "REFARCH_RATE_LIMIT_SEARCH": "10000 per minute",
    }
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(f"{base}/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, "gunicorn did not answer /healthz within 60 s"
            time.sleep(0.2)
        # The first search records the index generation and warms the worker (its first embedding loads
        # the SDK) before the test begins: on a busy machine that first one may take the lexical fallback.
        deadline = time.monotonic() + 60
        while get(f"{base}/api/search?q=tent")[1]["fallback_reason"] is not None:
            assert time.monotonic() < deadline, "no semantic search answered within 60 s"
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_healthz_answers_while_every_search_slot_waits_on_a_slow_provider(gunicorn_app, openai_standin):
    # Given a gunicorn worker whose embedding provider takes 20 s to answer
    openai_standin.delay_next(SLOW_SECONDS, times=50)
    sent = len(openai_standin.received)
    # When more searches than the worker has threads arrive at once
    answers: list[tuple[float, int, dict[str, Any]]] = []

    def search(n: int) -> None:
        status, body = get(f"{gunicorn_app}/api/search?" + urllib.parse.urlencode({"q": f"tent number {n}"}))
        answers.append((time.monotonic(), status, body))

    searches = [threading.Thread(target=search, args=(n,)) for n in range(2 * WEB_THREADS)]
    for thread in searches:
        thread.start()
    while len(openai_standin.received) < sent + SEMANTIC_SEARCH_SLOTS:  # every slot waits on the provider
        time.sleep(0.01)
    # And the load balancer checks the worker's health meanwhile
    checks = []
    for _ in range(3):
        status, body = get(f"{gunicorn_app}/healthz", timeout=SLOW_SECONDS)
        checks.append((time.monotonic(), status, body))
    for thread in searches:
        thread.join(timeout=60)
    openai_standin.cancel_delays()
    # Then every health check answered before any search that waited on the provider came back
    slow = [at for at, _, body in answers if "too slow" in (body.get("fallback_reason") or "")]
    assert [status for _, status, _ in checks] == [200, 200, 200]
    assert len(slow) == SEMANTIC_SEARCH_SLOTS
    assert max(at for at, _, _ in checks) < min(slow)
    # And every search was answered (200) from keyword search, saying why: too slow, or busy
    assert len(answers) == len(searches)
    assert all(status == 200 and body["mode"] == "lexical" for _, status, body in answers)
    assert all(("too slow" in body["fallback_reason"]) or ("busy" in body["fallback_reason"]) for _, _, body in answers)


def hold_a_thread(port: int) -> socket.socket:
    """A connection that starts a request and never finishes its headers: a request thread waits on it."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /api/products HTTP/1.1\r\nHost: localhost\r\n")
    return sock


def ask(conn: http.client.HTTPConnection, path: str) -> int:
    """One GET on a kept-alive connection: its status (the answer read whole, so the connection can be reused)."""
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


def test_healthz_has_a_lane_of_its_own_when_every_request_thread_is_taken(gunicorn_app):
    # Given a gunicorn worker whose every request thread waits on a client that never finishes its request
    port = int(gunicorn_app.rsplit(":", 1)[1])
    held = [hold_a_thread(port) for _ in range(WEB_THREADS)]
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    other = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        time.sleep(0.5)  # each held connection reached a thread
        # Then any other request waits for a thread to come free
        other.request("GET", "/api/products?limit=1")
        with pytest.raises(TimeoutError):
            other.getresponse()
        # But a health check on a new connection (as a load balancer sends it) is answered meanwhile
        started = time.monotonic()
        assert get(f"{gunicorn_app}/healthz", timeout=5) == (200, {"status": "ok"})
        # And so are health checks on a kept-alive connection, one after another
        assert [ask(kept, "/healthz") for _ in range(3)] == [200, 200, 200]
        assert time.monotonic() - started < 5
        # But another request on that same connection is not: it waits for a request thread like any other
        assert kept.sock is not None
        kept.sock.settimeout(1)
        kept.request("GET", "/api/products?limit=1")
        with pytest.raises(TimeoutError):
            kept.getresponse()
        # And once the held clients go away, the request that waited is answered
        for sock in held:
            sock.close()
        assert other.sock is not None
        other.sock.settimeout(10)
        assert other.getresponse().status == 200
    finally:
        for sock in held:
            sock.close()
        kept.close()
        other.close()


@pytest.mark.parametrize(
    ("setting", "value"), [("certfile", "/etc/ssl/site.pem"), ("http_protocols", "h2,h1"), ("http2_cleartext", "both")]
)
def test_the_health_lane_refuses_to_start_where_it_cannot_peek_at_the_request_line(setting: str, value: str):
    # Given gunicorn's configuration as the container runs it, which the health-lane worker accepts
    import logging

    from gunicorn.config import Config

    from web.health_lane import HealthLaneWorker

    log = logging.getLogger("gunicorn.error")
    HealthLaneWorker.check_config(Config(), log)
    # When gunicorn would serve TLS or HTTP/2 itself, Then the worker refuses to start, saying why
    config = Config()
    config.set(setting, value)
    with pytest.raises(RuntimeError, match="plain HTTP/1.1 only"):
        HealthLaneWorker.check_config(config, log)
