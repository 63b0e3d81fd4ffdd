"""Pelican's bootstrap (Plan -> Map(Batch) -> Finalize) against a real Postgres and the real local bulk-lane queue.

The handlers are the Lambda handlers the state machine invokes, run by the local Map (a pool of
the Map's max concurrency, 4) or by `refarch pelican bootstrap` in a child process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter

import pytest

import lambdas.bootstrap
from refarch import catalog
from refarch.db import connect
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.lanes.topology import BOOTSTRAP_BATCH_HANDLER, BOOTSTRAP_PLAN_HANDLER
from refarch.pelican.bootstrap import RangeBusyError
from refarch.runtime import Runtime
from refarch_local.handlers import invoke
from refarch_local.rehearsal.states import ExecutionFailed
from refarch_local.stepfunctions import local_state_machines, run_bootstrap
from tests.integration.pelican_support import (
    REPO,
    QueueDrain,
    RefarchProcess,
    SendRecorder,
    query,
    refarch_env,
    wait_for,
)

BACKEND_ALIVE = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
RANGE_GATE = 18_002  # advisory lock key of the gate that holds a worker between send and commit

# The state machine's retry intervals, shortened 25 times (a busy range: 0.2, 0.4, 0.8, ... s).
QUICK = 0.04


@pytest.fixture
def sent(local_settings, monkeypatch) -> SendRecorder:
    """The bootstrap Lambdas' runtime for this test, its SQS client wrapped in a recorder of accepted entries."""
    runtime = Runtime(local_settings, application_name="bootstrap")
    recorder = SendRecorder(make_sqs_client(local_settings))
    runtime.bulk_queue = SyncQueue.for_lane(recorder, local_settings, "bulk")  # type: ignore[misc]
    monkeypatch.setattr(lambdas.bootstrap, "runtime", runtime)
    return recorder


def product_ids(dsn: str) -> set[int]:
    return {row[0] for row in query(dsn, "SELECT id FROM products")}


def run_refarch_bootstrap(settings, dsn: str, *args: str) -> dict:
    """`refarch pelican bootstrap` in a child process (the local Step Functions run); return Finalize's output."""
    done = subprocess.run(
        [sys.executable, "-m", "refarch_cli", "pelican", "bootstrap", *args],
        env=refarch_env(settings, dsn),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def ranges(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT range_no, status, enqueued, skipped, updated_at FROM bootstrap_ranges ORDER BY range_no")


def test_four_workers_enqueue_each_of_10000_products_exactly_once(conn, dsn, local_settings, sent, monkeypatch):
    # Given 10,000 products that were never indexed (and a count of the Batch workers running at once)
    catalog.seed(conn, 10_000)
    running = Counter[str]()
    lock = threading.Lock()
    original = lambdas.bootstrap.run_batch

    def counted_batch(*args, **kwargs):
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                running["now"] -= 1

    monkeypatch.setattr(lambdas.bootstrap, "run_batch", counted_batch)
    # When the bootstrap runs with the Map's concurrency (4) and the default range size (1,000)
    with QueueDrain(local_settings, lane="bulk") as drain:
        result = run_bootstrap()
        received = drain.settle()
    # Then the run is complete and its bookkeeping accounts for every row once
    assert result == {
        "run_id": result["run_id"],
        "status": "complete",
        "pending_ranges": 0,
        "enqueued": 10_000,
        "skipped": 0,
    }
    assert [(n, status, enqueued) for n, status, enqueued, _, _ in ranges(dsn)] == [
        (n, "done", 1_000) for n in range(10)
    ]
    # And SQS accepted each product exactly once, from four concurrent workers, in 100 bulk messages
    ids = product_ids(dsn)
    assert sent.per_product() == Counter(dict.fromkeys(ids, 1))
    assert running["most"] == 4
    assert len(sent.accepted) == 100 and sent.attempts == 10
    # And the bulk queue delivered each product once, 100 per message
    assert len(received) == 10_000 and len(drain.bulk_bodies) == 100
    assert {m["product_id"] for m in received} == ids
    assert {len(body["items"]) for body in drain.bulk_bodies} == {100}
    assert {(m["op"], m["source"], m["version"]) for m in received} == {("sync", "bootstrap", 1)}


def test_overlapping_executions_never_send_a_range_twice(conn, dsn, local_settings, sent):
    # Given 2,000 products and two bootstrap executions started together: the second plan resumes the first's run
    catalog.seed(conn, 2_000)
    results: list[dict] = []

    def batch_done(handler: str, result: dict) -> None:
        if handler == BOOTSTRAP_BATCH_HANDLER:
            results.append(result)

    machines = local_state_machines(time_scale=QUICK, on_result=batch_done)
    # When both Maps (four workers each) run their ranges at once
    with QueueDrain(local_settings, lane="bulk") as drain:
        finals = machines.run_together("Bootstrap", [{"range_size": 100}] * 2, timeout_seconds=300)
        received = drain.settle()
    # Then every range was taken by exactly one worker; the other copy found it done (waiting while claimed)
    assert finals[0]["run_id"] == finals[1]["run_id"]
    assert Counter(r["range_no"] for r in results if r["taken"]) == Counter(range(20))
    assert [r["enqueued"] for r in results if not r["taken"]] == [0] * 20
    # And each product was sent once, and arrived once
    assert sent.per_product() == Counter(dict.fromkeys(product_ids(dsn), 1))
    assert len(received) == 2_000
    assert {f["status"] for f in finals} == {"complete"} and finals[0]["enqueued"] == 2_000


def test_a_range_held_by_another_worker_is_retried_until_it_is_sent(conn, dsn, local_settings, sent, monkeypatch):
    # Given a planned run of 300 products in 3 ranges, and range 1 held by a worker that is stuck
    # (its transaction holds the range row, as a Lambda killed mid-send would until Postgres drops it)
    catalog.seed(conn, 300)
    plan = invoke(BOOTSTRAP_PLAN_HANDLER, {"range_size": 100})
    run_id = plan["run_id"]
    holder = connect(dsn)
    holder_pid = holder.get_backend_pid()
    with holder.cursor() as cur:
        cur.execute("SELECT 1 FROM bootstrap_ranges WHERE run_id = %s AND range_no = 1 FOR UPDATE", (run_id,))
    # When a Batch is given that range, Then it does not report success with the range unsent
    with pytest.raises(RangeBusyError, match="range 1 .* held by another worker"):
        invoke(BOOTSTRAP_BATCH_HANDLER, plan["ranges"][1])
    # When the Map runs every range with its retry policy, and the stuck worker's connection drops
    # once the range has been found busy twice more (every Batch attempt and its outcome recorded)
    attempts: list[tuple[int, str]] = []
    batch = lambdas.bootstrap.batch

    def recorded_batch(event, context):
        try:
            result = batch(event, context)
        except RangeBusyError:
            attempts.append((event["range_no"], "busy"))
            if attempts.count((1, "busy")) == 2:
                holder.close()
                wait_for(lambda: not query(dsn, BACKEND_ALIVE, (holder_pid,))[0][0], 30, "the holder to disconnect")
            raise
        attempts.append((event["range_no"], "taken" if result["taken"] else "not taken"))
        return result

    monkeypatch.setattr(lambdas.bootstrap, "batch", recorded_batch)
    results: list[dict] = []
    with QueueDrain(local_settings, lane="bulk") as drain:
        final = run_bootstrap(range_size=100, on_batch=results.append, time_scale=QUICK)
        received = drain.settle()
    # Then the held range raised RangeBusyError twice, was retried, and taken on the third attempt
    assert final["run_id"] == run_id
    assert [a for a in attempts if a[0] == 1] == [(1, "busy"), (1, "busy"), (1, "taken")]
    assert sorted(a for a in attempts if a[0] != 1) == [(0, "taken"), (2, "taken")]
    # And the run completed with every product sent
    assert [r["taken"] for r in results] == [True, True, True]
    assert final["status"] == "complete" and final["pending_ranges"] == 0
    assert {m["product_id"] for m in received} == product_ids(dsn)


def test_bootstrap_killed_mid_run_is_resumed_and_loses_nothing(conn, dsn, local_settings, tmp_path):
    # Given 1,000 products, and a gate in the database that can hold the statement marking a range
    # done (a trigger waiting on an advisory lock): a worker reaches it only after SQS accepted the range
    catalog.seed(conn, 1_000)
    query(
        dsn,
        f"""
        CREATE FUNCTION hold_range_commits() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock_shared({RANGE_GATE}); RETURN NULL; END $$;
        CREATE TRIGGER hold_range_commits BEFORE UPDATE ON bootstrap_ranges
            FOR EACH STATEMENT EXECUTE FUNCTION hold_range_commits();
        """,
    )
    gate = connect(dsn, autocommit=True)
    with QueueDrain(local_settings, lane="bulk") as drain:
        # When a bootstrap process (40 ranges of 25) has done a fifth of the ranges, the gate closes,
        # and the process is SIGKILLed once a worker has sent a range and waits to mark it done
        killed = RefarchProcess(
            ["pelican", "bootstrap", "--range-size", "25"],
            refarch_env(local_settings, dsn),
            tmp_path / "bootstrap-killed.log",
        )
        try:
            wait_for(
                lambda: query(dsn, "SELECT count(*) FROM bootstrap_ranges WHERE status = 'done'")[0][0] >= 8,
                120,
                "a fifth of the ranges to be done",
            )
            with gate.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s)", (RANGE_GATE,))
            wait_for(lambda: workers_waiting_on_a_lock(dsn), 60, "a worker to hold a sent range")
        finally:
            killed.kill()
        gate.close()
        wait_for(lambda: not workers_connected(dsn), 60, "the killed workers' transactions to be rolled back")
        [(run_id, status)] = query(dsn, "SELECT id, status FROM bootstrap_runs")
        done_before = {n: updated for n, range_status, _, _, updated in ranges(dsn) if range_status == "done"}
        assert status == "running" and 8 <= len(done_before) < 40, killed.output()
        # Then a range was cut off claimed and sent but not committed: products of pending ranges are in SQS
        sent_before = {m["product_id"] for m in drain.settle()}
        pending_ids = products_in_ranges(dsn, run_id, status="pending")
        assert sent_before & pending_ids, "no range was sent and left uncommitted by the kill"
        # When the bootstrap is run again
        result = run_refarch_bootstrap(local_settings, dsn, "--range-size", "25")
        received = drain.settle()
    # Then it resumed the same run, redid only the unfinished ranges, and completed it
    assert result == {"run_id": run_id, "status": "complete", "pending_ranges": 0, "enqueued": 1_000, "skipped": 0}
    after = {n: updated for n, _, _, _, updated in ranges(dsn)}
    assert {n: after[n] for n in done_before} == done_before
    # And every product reached the queue (the ranges cut off mid-send were sent twice: harmless)
    assert {m["product_id"] for m in received} == product_ids(dsn)


def workers_waiting_on_a_lock(dsn: str) -> int:
    """Bootstrap workers' connections waiting on a lock (here: the gate)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'bootstrap' AND wait_event_type = 'Lock'"
    )
    return query(dsn, sql)[0][0]


def workers_connected(dsn: str) -> int:
    """Bootstrap workers' connections still open."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'bootstrap'"
    return query(dsn, sql)[0][0]


def products_in_ranges(dsn: str, run_id: int, *, status: str) -> set[int]:
    """Ids of the products in this run's ranges with this status."""
    rows = query(
        dsn,
        "SELECT p.id FROM products p JOIN bootstrap_ranges r ON p.id BETWEEN r.first_id AND r.last_id"
        " WHERE r.run_id = %s AND r.status = %s",
        (run_id, status),
    )
    return {pid for (pid,) in rows}


def test_a_failed_worker_fails_the_run_and_a_rerun_sends_everything(conn, dsn, local_settings, sent, monkeypatch):
    # Given 1,000 products and a Batch worker that crashes on range 3 however often it is retried
    catalog.seed(conn, 1_000)
    original = lambdas.bootstrap.run_batch
    calls = Counter[int]()

    def crashing_batch(*args, **kwargs):
        calls[kwargs["range_no"]] += 1
        if kwargs["range_no"] == 3:
            raise RuntimeError("worker crashed")
        return original(*args, **kwargs)

    monkeypatch.setattr(lambdas.bootstrap, "run_batch", crashing_batch)
    with QueueDrain(local_settings, lane="bulk") as drain:
        # When the bootstrap runs, the Batch is retried as the definition says (3 more times), the
        # Map fails, and the catch path records the failure and fails the execution
        with pytest.raises(ExecutionFailed, match="BootstrapFailed"):
            run_bootstrap(range_size=100, time_scale=QUICK)
        assert calls[3] == 4
        [(failed_id, status, error)] = query(dsn, "SELECT id, status, error FROM bootstrap_runs")
        assert status == "failed" and "worker crashed" in error
        assert 0 < len([r for r in ranges(dsn) if r[1] == "done"]) < 10
        # And the bootstrap is run again with healthy workers
        monkeypatch.setattr(lambdas.bootstrap, "run_batch", original)
        result = run_bootstrap(range_size=100, time_scale=QUICK)
        received = drain.settle()
    # Then a new run sends every product not yet indexed (the failed run's sends repeat: Emu no-ops them)
    assert result["run_id"] != failed_id
    assert (result["status"], result["enqueued"], result["skipped"]) == ("complete", 1_000, 0)
    assert {m["product_id"] for m in received} == product_ids(dsn)


def test_rows_indexed_at_their_current_version_are_not_sent_again(conn, dsn, local_settings, sent):
    # Given 1,000 products: the even ones indexed at their current version, except product 2,
    # which was edited after it was indexed
    catalog.seed(conn, 1_000)
    query(
        dsn,
        "INSERT INTO sync_state (product_id, indexed_version, status, indexed_at)"
        " SELECT id, version, 'indexed', now() FROM products WHERE id % 2 = 0",
    )
    query(dsn, "UPDATE products SET price = price + 1 WHERE id = 2")
    # When the bootstrap runs
    with QueueDrain(local_settings, lane="bulk") as drain:
        first = run_bootstrap(range_size=100)
        received = drain.settle()
    # Then only the rows not indexed at their current version were sent
    expected = {pid for pid in product_ids(dsn) if pid % 2 == 1} | {2}
    assert (first["enqueued"], first["skipped"]) == (501, 499)
    assert set(sent.per_product()) == expected
    assert {m["product_id"] for m in received} == expected
    assert {m["version"] for m in received if m["product_id"] == 2} == {2}
    # And the outbox rows those messages cover (all versions up to the one sent) are marked sent,
    # so the listener does not send them again; the skipped products' rows are left to it
    unsent = query(dsn, "SELECT product_id FROM sync_outbox WHERE enqueued_at IS NULL")
    assert {pid for (pid,) in unsent} == product_ids(dsn) - expected

    # Given a completed run, and now every row indexed at its current version
    query(
        dsn,
        "INSERT INTO sync_state (product_id, indexed_version, status, indexed_at)"
        " SELECT id, version, 'indexed', now() FROM products"
        " ON CONFLICT (generation, product_id) DO UPDATE SET indexed_version = EXCLUDED.indexed_version",
    )
    # When the bootstrap runs again
    with QueueDrain(local_settings, lane="bulk") as drain:
        second = run_bootstrap(range_size=100)
        nothing = drain.settle()
    # Then a new run completes having sent nothing
    assert second["run_id"] != first["run_id"]
    assert (second["status"], second["enqueued"], second["skipped"]) == ("complete", 0, 1_000)
    assert sum(sent.per_product().values()) == 501
    assert nothing == []
