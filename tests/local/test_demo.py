"""The local runtime end to end: `refarch demo` as a person runs it, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
from click.testing import CliRunner

from refarch.status import sync_counts
from refarch_cli.commands import main
from tests.conftest import SHORT_BATCHING_WINDOW, free_port

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll until predicate() is truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def runtime(home: Path) -> dict:
    try:
        return json.loads((home / "runtime.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def counts(dsn: str) -> dict:
    conn = psycopg2.connect(dsn)
    try:
        return sync_counts(conn)
    finally:
        conn.close()


def synced(dsn: str) -> bool:
    c = counts(dsn)
    return c["pending"] == 0 and c["failed"] == 0 and c["outbox_backlog"] == 0


def search(home: Path, query: str, k: int = 5) -> list[dict]:
    """`refarch search --json`, through the real command."""
    result = CliRunner().invoke(
        main,
        ["search", query, "--k", str(k), "--json"],
        env={"REFARCH_HOME": str(home), "DATABASE_URL": ""},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])["results"]


def index_matches_database(dsn: str) -> list[str]:
    """Differences between products and product_vectors (ids, versions); empty when converged."""
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(p.id, v.product_id), p.version, v.version FROM products p"
            " FULL JOIN product_vectors v ON v.product_id = p.id"
            " WHERE p.id IS NULL OR v.product_id IS NULL OR p.version <> v.version"
        )
        rows = cur.fetchall()
    conn.close()
    return [f"product {pid}: row v{pv} vector v{vv}" for pid, pv, vv in rows]


def vector_versions(dsn: str, ids: list[int]) -> dict[int, int]:
    """{product id: version} of the vectors the index holds for these ids (absent ids are missing)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT product_id, version FROM product_vectors WHERE product_id = ANY(%s)", (ids,))
            return dict(cur.fetchall())
    finally:
        conn.close()


def diagnose(home: Path) -> str:
    """What the stack looked like: status, queue attributes, log tails (printed when a wait fails)."""
    import boto3

    rt = runtime(home)
    parts = [f"runtime: {rt}"]
    try:
        parts.append(f"status: {counts(rt['database_url'])}")
        sqs = boto3.client(
            "sqs",
            endpoint_url=rt["sqs_endpoint_url"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        parts.append(f"queue: {sqs.get_queue_attributes(QueueUrl=rt['queue_url'], AttributeNames=['All'])}")
    except Exception as err:  # diagnostics must not hide the original failure
        parts.append(f"(diagnostics failed: {err})")
    for log in sorted((home / "logs").glob("*.log")):
        parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    return "\n".join(parts)


@pytest.fixture
def demo_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def start_demo(home: Path, rows: int, port: int) -> subprocess.Popen:
    env = {**os.environ, **SHORT_BATCHING_WINDOW, "REFARCH_HOME": str(home)}
    env.pop("DATABASE_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    log = (home.parent / "demo.log").open("ab")
    return subprocess.Popen(
        # A free SQS port, not the default 9324: parallel test workers run other stacks at the same time.
        [sys.executable, "-m", "refarch_cli", "demo", "--rows", str(rows), "--port", str(port)]
        + ["--sqs-port", str(free_port())],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_local_stack_syncs_edits_and_survives_a_worker_crash(demo_home: Path):
    # Given `refarch demo` on a small catalog
    demo = start_demo(demo_home, rows=300, port=free_port())
    try:
        _run_scenario(demo_home)
    except AssertionError:
        print(diagnose(demo_home))
        raise
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0
    # The demo's output (here a log file, not a terminal) ends its last status line before it says it stops
    output = (demo_home.parent / "demo.log").read_text(errors="replace").splitlines()
    assert [line for line in output if "stopping…" in line] == ["stopping…"]
    _rerun_resumes(demo_home)


def _run_scenario(demo_home: Path) -> None:
    """Bootstrap, edits seen by `refarch search`, and an Emu worker crash that loses nothing."""
    dsn = wait_for(lambda: runtime(demo_home).get("database_url"), 60, "the database")
    # When the bootstrap runs, Then every product gets indexed
    wait_for(lambda: counts(dsn)["indexed"] == 300 and synced(dsn), 240, "the bootstrap to index 300 rows")
    assert index_matches_database(dsn) == []

    # When a person edits, inserts and deletes (straight in Postgres, like any other client)
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE products SET description = 'A basket woven underwater by scuba divers.' WHERE id = 5")
        cur.execute(
            "INSERT INTO products (sku, name, description, category, price) VALUES"
            " ('NEW-1', 'Quantum Teapot', 'A teapot that brews tea using quantum tunnelling.',"
            " 'kitchen', 42) RETURNING id"
        )
        new_id = cur.fetchone()[0]
        cur.execute("SELECT name FROM products WHERE id = 7")
        deleted_name = cur.fetchone()[0]
        cur.execute("DELETE FROM products WHERE id = 7")
    conn.close()
    wait_for(lambda: synced(dsn), 60, "the edits to sync")
    # Then the index holds the edit and the insert at their versions and no vector for the deleted row
    # (search alone could not show the delete: it skips hits whose row is gone)
    assert vector_versions(dsn, [5, new_id, 7]) == {5: 2, new_id: 1}
    assert index_matches_database(dsn) == []
    # And `refarch search` sees each of them, without restarting anything
    assert search(demo_home, "basket woven underwater by scuba divers")[0]["id"] == 5
    assert search(demo_home, "teapot brewing with quantum tunnelling")[0]["id"] == new_id
    assert 7 not in [hit["id"] for hit in search(demo_home, deleted_name, k=20)]

    # When the Emu workers are SIGKILLed while one of them is inside a batch, and changes keep coming:
    # product 30 is locked by the test (as Emu locks a product it syncs), so the batch holding it
    # stops inside its transaction, messages received and rows locked, until the kill
    pids = json.loads((demo_home / "processes.json").read_text())
    workers = {name: pid for name, pid in pids.items() if name == "emu" or name.startswith("emu-")}
    blocker = psycopg2.connect(dsn)
    blocker.autocommit = True
    with blocker.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(30)")
    conn = psycopg2.connect(dsn)
    for i in range(60):
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE products SET description = description || %s WHERE id = %s", (f" Revision {i}.", 10 + i)
            )
    conn.close()
    wait_for(lambda: emu_batches_waiting_on_a_lock(dsn), 60, "a batch holding product 30 to be in flight")
    for pid in workers.values():
        os.kill(pid, signal.SIGKILL)
    blocker.close()
    # Then the supervisor restarts them, the cut batch comes back, and nothing is lost
    wait_for(
        lambda: all(json.loads((demo_home / "processes.json").read_text())[n] != pid for n, pid in workers.items()),
        60,
        "the workers to be restarted",
    )
    wait_for(lambda: synced(dsn), 120, "the changes made around the crash to sync")
    assert index_matches_database(dsn) == []
    assert vector_versions(dsn, [30]) == {30: 2}


def emu_batches_waiting_on_a_lock(dsn: str) -> int:
    """Emu connections waiting on an advisory lock (a batch stopped inside its transaction)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid"
                " WHERE a.datname = current_database() AND a.application_name = 'emu'"
                " AND l.locktype = 'advisory' AND NOT l.granted"
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


def run_demo_until_synced(home: Path, rows: int, **env_overrides: str) -> subprocess.CompletedProcess:
    """`refarch demo --exit-when-synced` on this home, as a script would run it."""
    env = {**os.environ, **SHORT_BATCHING_WINDOW, "REFARCH_HOME": str(home), **env_overrides}
    env.pop("DATABASE_URL", None)
    args = ["demo", "--rows", str(rows), "--port", str(free_port()), "--sqs-port", str(free_port())]
    args += ["--exit-when-synced", "--timeout", "120"]
    return subprocess.run(
        [sys.executable, "-m", "refarch_cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def _rerun_resumes(demo_home: Path) -> None:
    # Given the same home, When the demo runs again to completion
    rerun = run_demo_until_synced(demo_home, rows=300)
    # Then it resumes: data persisted, nothing unchanged is re-embedded, and it says so in one JSON line
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 300  # 300 seeded + 1 inserted - 1 deleted; the seed adds nothing new
    assert summary["embed_calls"] == 0
    assert summary["failures"] == 0
    assert set(summary) >= {"rows", "seconds", "rows_per_s", "embed_calls", "failures"}


def test_a_new_embedder_in_the_settings_leaves_the_built_index_on_its_own_model(tmp_path: Path):
    # Given a home whose index (generation 1) was built by the local 384-d model
    home = tmp_path / "home"
    first = run_demo_until_synced(home, rows=20)
    assert first.returncode == 0, first.stderr[-2000:]
    # When the demo restarts with a 64-d OpenAI-compatible embedder (unreachable: never needed)
    second = run_demo_until_synced(
        home,
        rows=20,
        REFARCH_EMBEDDER="openai",
        OPENAI_API_KEY="not-used",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        REFARCH_OPENAI_DIMENSIONS="64",
    )
    # Then it syncs as before: the generation keeps the model it was built with (changing models is
    # `refarch reindex`, docs/reindex.md), and nothing is refused
    assert second.returncode == 0, second.stderr[-2000:]
    assert "20 already indexed" in second.stderr
