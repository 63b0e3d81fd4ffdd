"""Pelican's outbox listener under failure, against a real Postgres and a real local SQS FIFO queue.

Most tests run `python -m refarch_cli pelican listen` as a child process (the Fargate entrypoint) and
kill, stop or starve it; the queue is drained concurrently, as Emu would.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import boto3
import psycopg2
import pytest
from botocore.config import Config

from refarch import catalog
from refarch.db import migrate
from refarch.lanes.messages import SyncMessage
from refarch.lanes.queues import PartialSendError, SyncQueue, make_sqs_client
from refarch.observability import metrics
from refarch.pelican import outbox
from refarch.pelican.listener import OutboxRelay
from refarch_local.database import LocalDatabase
from refarch_local.sqs import start_server
from tests.conftest import free_port
from tests.integration.emu_support import assert_index_matches_database
from tests.integration.pelican_support import (
    REPO,
    QueueDrain,
    RefarchProcess,
    SendRecorder,
    edit_products,
    product_versions,
    query,
    refarch_env,
    unsent_outbox_rows,
    wait_for,
)

CLAIM_SIZE = 500  # OutboxRelay's default claim: what one in-flight send covers
MARK_GATE = 18_001  # advisory lock key of the gate that holds a relay between send and mark


@pytest.fixture
def start_listener(local_settings, dsn, tmp_path) -> Iterator[Callable[..., RefarchProcess]]:
    """Start `refarch pelican listen` children (polling every 0.5 s); any left running are SIGKILLed."""
    started: list[RefarchProcess] = []

    def start(database: str | None = None) -> RefarchProcess:
        env = refarch_env(local_settings, database or dsn)
        process = RefarchProcess(
            ["pelican", "listen", "--poll-seconds", "0.5"], env, tmp_path / f"listener-{len(started)}.log"
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def backends(
    dsn: str, application: str, state: str | None = None, waiting_on_lock: bool = False, *, watcher: Any = None
) -> int:
    """Connections of this database with this application name (optionally in a state / waiting on a lock).

    `watcher`: an autocommit connection to ask on (each statement sees the backends anew), for tight polls.
    """
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s"
    params: list[Any] = [application]
    if state:
        sql += " AND state = %s"
        params.append(state)
    if waiting_on_lock:
        sql += " AND wait_event_type = 'Lock'"
    if watcher is None:
        return query(dsn, sql, tuple(params))[0][0]
    with watcher.cursor() as cur:
        cur.execute(sql, tuple(params))
        return int(cur.fetchone()[0])


def health(settings, dsn: str, max_age: float) -> subprocess.CompletedProcess:
    """`refarch pelican health --max-age N` (the ECS container health check)."""
    return subprocess.run(
        [sys.executable, "-m", "refarch_cli", "pelican", "health", "--max-age", str(max_age)],
        env=refarch_env(settings, dsn),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextmanager
def editing(dsn: str, product_ids: list[int]) -> Iterator[None]:
    """Make these edits (one transaction each) in a background thread while the block runs; wait for them."""
    editor = threading.Thread(target=edit_products, args=(dsn, product_ids), name="editor")
    editor.start()
    try:
        yield
    finally:
        editor.join(timeout=120)


def kill_with_a_send_in_flight(dsn: str, listener: RefarchProcess) -> None:
    """SIGKILL the listener while it holds a claim open, i.e. between claiming rows and committing their mark.

    The claim's transaction is "idle in transaction" only while its rows are being sent to SQS (or
    just sent, not yet marked). The listener is frozen (SIGSTOP) when one is seen; if the claim is
    still open once the frozen process can no longer commit, the kill provably lands mid-send.
    Otherwise it is thawed and the next claim is tried.
    """
    deadline = time.monotonic() + 60
    # One connection for the whole watch: a new one every 2 ms would cost Postgres a backend each time.
    watcher = psycopg2.connect(dsn)
    watcher.autocommit = True
    try:
        while time.monotonic() < deadline:
            if not backends(dsn, "pelican-drain", state="idle in transaction", watcher=watcher):
                time.sleep(0.002)
                continue
            listener.signal(signal.SIGSTOP)
            time.sleep(0.2)  # let Postgres act on anything the process sent just before it froze
            if backends(dsn, "pelican-drain", state="idle in transaction", watcher=watcher):
                listener.kill()
                return
            listener.signal(signal.SIGCONT)
    finally:
        watcher.close()
    raise AssertionError(f"no claim was caught in flight within 60 s:\n{listener.output()}")


def test_listener_killed_during_1000_edits_loses_no_change(conn, dsn, local_settings, start_listener):
    # Given 200 products and a listener that has relayed their inserts
    catalog.seed(conn, 200)
    edits = [1 + (i * 7) % 200 for i in range(1_000)]  # every product edited once per 200 edits
    with QueueDrain(local_settings) as drain:
        first = start_listener()
        wait_for(lambda: unsent_outbox_rows(dsn) == 0, 60, "the seed to be relayed")
        # When 1,000 edits are made while the listener is SIGKILLed twice, each time with a claim
        # open and its send to SQS in flight: once during the first 500 edits, then (restarted)
        # during the next 100; the last 400 (two per product) wait in the outbox for a third start
        with editing(dsn, edits[:500]):
            kill_with_a_send_in_flight(dsn, first)
        second = start_listener()
        with editing(dsn, edits[500:600]):
            kill_with_a_send_in_flight(dsn, second)
        edit_products(dsn, edits[600:])
        waiting_while_down = unsent_outbox_rows(dsn)
        start_listener()
        wait_for(lambda: unsent_outbox_rows(dsn) == 0, 60, "every change to be relayed")
        drain.settle()
    # Then every product's latest version reached the queue (intermediate versions may be
    # coalesced into one message: Emu re-reads the row)
    assert waiting_while_down >= 400
    assert set(product_versions(dsn).values()) == {6}
    assert drain.latest_versions() == product_versions(dsn)


def test_listener_killed_after_sqs_accepted_a_claim_and_before_marking_it_resends_it_harmlessly(
    conn, dsn, local_settings, start_listener, emu_runtime
):
    # Given 30 captured inserts, and a gate in the database that holds the statement marking outbox
    # rows enqueued (a trigger waiting on an advisory lock the test holds): a relay reaches that
    # statement only after SQS accepted every message of its claim
    catalog.seed(conn, 30)
    query(
        dsn,
        f"""
        CREATE FUNCTION hold_outbox_marks() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock_shared({MARK_GATE}); RETURN NULL; END $$;
        CREATE TRIGGER hold_outbox_marks BEFORE UPDATE OF enqueued_at ON sync_outbox
            FOR EACH STATEMENT EXECUTE FUNCTION hold_outbox_marks();
        """,
    )
    gate = psycopg2.connect(dsn)
    gate.autocommit = True
    with gate.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (MARK_GATE,))
    with QueueDrain(local_settings) as drain:
        # When the listener sends its claim and is SIGKILLed while marking it
        listener = start_listener()
        wait_for(lambda: backends(dsn, "pelican-drain", waiting_on_lock=True), 60, "the claim to be sent, then held")
        listener.kill()
        first_send = list(drain.settle())
        # Then SQS has every change while the outbox still has every row unsent
        assert sorted(m["product_id"] for m in first_send) == list(range(1, 31))
        assert unsent_outbox_rows(dsn) == 30
        # When 10 products are edited while it is down, the gate opens and the listener restarts
        edit_products(dsn, list(range(1, 11)))
        gate.close()
        start_listener()
        wait_for(lambda: unsent_outbox_rows(dsn) == 0, 60, "every row to be relayed")
        received = drain.settle()
    # Then every change arrived: the killed claim again (its products now twice) and the edits
    assert Counter(m["product_id"] for m in received) == dict.fromkeys(range(1, 31), 2)
    assert drain.latest_versions() == product_versions(dsn)
    # And the duplicates are harmless: Emu, given every message one by one, embeds each product once,
    # skips every second copy, and the index ends equal to the table
    outcomes = [emu_runtime.emu.process({str(n): json.dumps(strip_sqs_fields(m))}) for n, m in enumerate(received)]
    assert [o.failures for o in outcomes if o.failures] == []
    assert (sum(o.embedded for o in outcomes), sum(o.skipped for o in outcomes)) == (30, 30)
    assert_index_matches_database(emu_runtime.db, emu_runtime.index, emu_runtime.embedder.model_id)


def strip_sqs_fields(message: dict[str, Any]) -> dict[str, Any]:
    """A received message's body as sent (QueueDrain adds the SQS group and dedup ids)."""
    return {k: v for k, v in message.items() if not k.startswith("sqs_")}


def test_two_listeners_never_send_the_same_outbox_row(conn, dsn, local_settings, start_listener):
    # Given 1,500 captured changes and a record of which database session marks each row enqueued.
    # "Sent twice" means: a row marked enqueued by two sends (each mark follows an accepted send in
    # the claiming transaction), or one outbox id carried by two messages.
    catalog.seed(conn, 1_500)
    query(
        dsn,
        """
        CREATE TABLE outbox_marks (outbox_id bigint NOT NULL, marked_by integer NOT NULL);
        CREATE FUNCTION record_outbox_mark() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO outbox_marks VALUES (NEW.id, pg_backend_pid()); RETURN NULL; END $$;
        CREATE TRIGGER record_outbox_mark AFTER UPDATE OF enqueued_at ON sync_outbox
            FOR EACH ROW WHEN (NEW.enqueued_at IS NOT NULL) EXECUTE FUNCTION record_outbox_mark();
    """,
    )
    # And two listeners held at a gate (a table lock) until both are about to claim
    gate = psycopg2.connect(dsn)
    with gate.cursor() as cur:
        cur.execute("LOCK TABLE sync_outbox IN EXCLUSIVE MODE")
    with QueueDrain(local_settings) as drain:
        start_listener()
        start_listener()
        wait_for(lambda: backends(dsn, "pelican-drain", waiting_on_lock=True) == 2, 60, "both listeners at the gate")
        # When the gate opens, and 300 more edits arrive while both run
        gate.commit()
        gate.close()
        edit_products(dsn, [1 + (i * 13) % 1_500 for i in range(300)])
        wait_for(lambda: unsent_outbox_rows(dsn) == 0, 90, "every change to be relayed")
        received = drain.settle()
    # Then every outbox row was marked exactly once, and both listeners did part of the work
    marks = dict(query(dsn, "SELECT outbox_id, count(*) FROM outbox_marks GROUP BY outbox_id"))
    all_rows = {row[0] for row in query(dsn, "SELECT id FROM sync_outbox")}
    assert len(all_rows) == 1_800
    assert marks == dict.fromkeys(all_rows, 1)
    assert len(query(dsn, "SELECT DISTINCT marked_by FROM outbox_marks")) == 2
    # And no outbox id travelled in two messages; each message names a row that was marked
    outbox_ids = [m["outbox_id"] for m in received]
    assert len(outbox_ids) == len(set(outbox_ids))
    assert set(outbox_ids) <= all_rows
    assert drain.latest_versions() == product_versions(dsn)


def test_listener_recovers_from_a_database_restart_and_loses_nothing(local_settings, start_listener, tmp_path_factory):
    # Given a database of its own (so it can be restarted) with 300 products, and a running listener
    database = LocalDatabase(tmp_path_factory.mktemp("pgr"))
    own_dsn = database.start()
    try:
        migrate(own_dsn)
        seed_conn = psycopg2.connect(own_dsn)
        catalog.seed(seed_conn, 300)
        seed_conn.close()
        with QueueDrain(local_settings) as drain:
            listener = start_listener(own_dsn)
            wait_for(lambda: unsent_outbox_rows(own_dsn) == 0, 60, "the seed to be relayed")
            # When edits are committed and the server restarts at once (every connection is cut)
            edit_products(own_dsn, list(range(1, 301)))
            database.restart()
            restarted_at = query(own_dsn, "SELECT pg_postmaster_start_time()")[0][0]
            # And more edits arrive after it is back
            edit_products(own_dsn, list(range(1, 301, 2)))
            wait_for(lambda: unsent_outbox_rows(own_dsn) == 0, 90, "every change to be relayed")
            drain.settle()
            # Then the same listener process reconnected (no restart of the process needed)...
            assert listener.proc.poll() is None, listener.output()
            reconnected = query(
                own_dsn,
                "SELECT min(backend_start) FROM pg_stat_activity"
                " WHERE application_name IN ('pelican-listen', 'pelican-drain')",
            )[0][0]
            assert reconnected is not None and reconnected >= restarted_at
        # ...and every product's latest version reached the queue
        assert drain.latest_versions() == product_versions(own_dsn)
        assert set(product_versions(own_dsn).values()) == {2, 3}
    finally:
        database.stop()


def test_sigterm_finishes_the_send_in_flight_and_health_follows_the_heartbeat(
    conn, dsn, local_settings, start_listener
):
    # Given 2,000 captured changes (four claims) and no listener ever started: unhealthy
    catalog.seed(conn, 2_000)
    never_ran = health(local_settings, dsn, max_age=60)
    assert never_ran.returncode == 1 and never_ran.stdout.strip() == "no loop yet"
    with QueueDrain(local_settings) as drain:
        # When SIGTERM arrives while a claim is being sent
        listener = start_listener()
        wait_for(lambda: backends(dsn, "pelican-drain", state="idle in transaction"), 60, "a claim in flight")
        listener.signal(signal.SIGTERM)
        # Then the listener exits 0 having finished that send (claims are all-or-nothing) and not started all
        assert listener.wait(timeout=60) == 0, listener.output()
        marked = {row[0] for row in query(dsn, "SELECT id FROM sync_outbox WHERE enqueued_at IS NOT NULL")}
        assert len(marked) in (CLAIM_SIZE, 2 * CLAIM_SIZE, 3 * CLAIM_SIZE), len(marked)
        first_received = list(drain.settle())
        assert {m["outbox_id"] for m in first_received} == marked
        # When a new listener drains the rest
        second = start_listener()
        wait_for(lambda: unsent_outbox_rows(dsn) == 0, 60, "the rest to be relayed")
        # Then it reports healthy while running...
        live = health(local_settings, dsn, max_age=30)
        assert live.returncode == 0 and live.stdout.startswith("last loop"), live.stdout
        # ...exits 0 on SIGTERM when idle, and is reported unhealthy once its heartbeat is older than max-age
        second.signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, second.output()
        wait_for(lambda: health(local_settings, dsn, max_age=1).returncode == 1, 30, "the heartbeat to go stale")
        received = drain.settle()
    # And every change was sent, the in-flight claim exactly once
    assert {m["outbox_id"] for m in received} == {row[0] for row in query(dsn, "SELECT id FROM sync_outbox")}
    assert len(received) == 2_000


class RefuseEntries:
    """A real SQS client that reports chosen entries of SendMessageBatch as failed; the others really go.

    moto cannot refuse part of a batch on a FIFO queue (its only per-entry failure, an invalid
    DelaySeconds, fails the whole request on FIFO), so the refusal is reported here in the shape
    SQS uses for a partial failure (a per-entry Code, SenderFault false).
    """

    def __init__(self, client: Any, *, refuse: Callable[[dict[str, Any]], bool], times: int) -> None:
        self._client = client
        self.refuse = refuse
        self.times = times
        self.calls: list[list[str]] = []

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Forward the entries not refused; report the refused ones as failed (for the first `times` calls)."""
        self.calls.append([e["MessageDeduplicationId"] for e in Entries])
        refusing = len(self.calls) <= self.times
        refused = [e for e in Entries if refusing and self.refuse(e)]
        accepted = [e for e in Entries if e not in refused]
        response = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=accepted) if accepted else {}
        return {
            "Successful": response.get("Successful", []),
            "Failed": response.get("Failed", [])
            + [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"} for e in refused],
        }


def odd_product(entry: dict[str, Any]) -> bool:
    return int(entry["MessageGroupId"]) % 2 == 1


def test_entries_refused_in_a_batch_are_resent_and_only_they(local_settings):
    # Given a queue that refuses the odd products of the first batch
    client = RefuseEntries(make_sqs_client(local_settings), refuse=odd_product, times=1)
    queue = SyncQueue.for_lane(client, local_settings, "live")
    messages = [SyncMessage(product_id=pid, version=1, op="sync", source="bootstrap") for pid in range(1, 26)]
    # When 25 messages are sent
    with QueueDrain(local_settings) as drain:
        queue.send(messages)
        received = drain.settle()
    # Then the refused five were resent on their own, before the next batch, and each arrived once
    assert client.calls[0] == [f"{pid}-1" for pid in range(1, 11)]
    assert client.calls[1] == [f"{pid}-1" for pid in range(1, 11, 2)]
    assert client.calls[2:] == [[f"{pid}-1" for pid in range(11, 21)], [f"{pid}-1" for pid in range(21, 26)]]
    assert sorted(m["product_id"] for m in received) == list(range(1, 26))


def test_rows_are_marked_only_after_sqs_accepted_them(conn, dsn, local_settings):
    # Given 20 captured changes and a queue that keeps refusing the odd products
    catalog.seed(conn, 20)
    refusing = SyncQueue(
        RefuseEntries(make_sqs_client(local_settings), refuse=odd_product, times=10**6),
        local_settings.queue_url("live"),
        lane="live",
    )
    # When the relay drains: retries run out
    with pytest.raises(PartialSendError, match="5 of 10 entries refused"):
        OutboxRelay(dsn, refusing).drain(conn)
    # Then no row is marked enqueued: the claim was rolled back, nothing is lost
    assert unsent_outbox_rows(dsn) == 20
    # When the queue accepts again
    accepting = SyncQueue.for_lane(make_sqs_client(local_settings), local_settings, "live")
    with QueueDrain(local_settings) as drain:
        sent = OutboxRelay(dsn, accepting).drain(conn)
        drain.settle()
    # Then every row is sent and marked (products the refusing queue accepted went twice: FIFO dedup drops one)
    assert sent == 20 and unsent_outbox_rows(dsn) == 0
    assert drain.latest_versions() == product_versions(dsn)


def test_listener_keeps_running_through_an_sqs_outage(conn, dsn, local_settings, monkeypatch):
    # Given a relay whose SQS endpoint is unreachable (nothing listens on its port yet)
    port = free_port()
    sqs = SendRecorder(
        boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name=local_settings.aws_region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
        )
    )
    relay = OutboxRelay(dsn, SyncQueue.for_lane(sqs, local_settings, "live"), poll_seconds=0.2)
    catalog.seed(conn, 50)
    runner = threading.Thread(target=relay.run, name="relay")
    runner.start()
    server = None
    try:
        # When changes keep coming while sends fail
        edit_products(dsn, list(range(1, 51)))
        wait_for(lambda: sqs.attempts >= 3, 30, "three failed send attempts")
        # Then the relay is still running and has marked nothing
        assert runner.is_alive()
        assert unsent_outbox_rows(dsn) == 100
        # When SQS is reachable again on that address (same in-memory queues)
        monkeypatch.setenv("MOTO_PORT", str(local_settings.resolved_sqs_endpoint()).rsplit(":", 1)[1])
        server = start_server(port)
        with QueueDrain(local_settings) as drain:
            wait_for(lambda: unsent_outbox_rows(dsn) == 0, 30, "the backlog to be relayed")
            drain.settle()
        # Then everything is sent
        assert drain.latest_versions() == product_versions(dsn) == dict.fromkeys(range(1, 51), 2)
    finally:
        relay.stop.set()
        runner.join(timeout=30)
        if server is not None:
            server.stop()


def test_coalescing_sends_one_message_per_product_and_pruning_keeps_unsent_rows(conn, dsn, local_settings):
    # Given product 1 inserted and edited twice, and product 2 inserted
    catalog.seed(conn, 2)
    edit_products(dsn, [1, 1])
    relay = OutboxRelay(dsn, SyncQueue.for_lane(make_sqs_client(local_settings), local_settings, "live"))
    rows = query(dsn, "SELECT id, product_id, version, created_at FROM sync_outbox ORDER BY id")
    # When the relay drains
    with QueueDrain(local_settings) as drain:
        assert relay.drain(conn) == 4
        received = sorted(drain.settle(), key=lambda m: m["product_id"])
    # Then one message per product: the newest change, timed from the oldest, naming the newest row
    assert [(m["product_id"], m["version"], m["op"], m["outbox_id"]) for m in received] == [
        (1, 3, "update", rows[3][0]),
        (2, 1, "insert", rows[1][0]),
    ]
    assert datetime.fromisoformat(received[0]["changed_at"]) == rows[0][3]
    assert unsent_outbox_rows(dsn) == 0
    # Given rows sent two days ago and a row left unsent for two days
    edit_products(dsn, [2])
    query(
        dsn,
        "UPDATE sync_outbox SET created_at = now() - interval '2 days',"
        " enqueued_at = CASE WHEN enqueued_at IS NOT NULL THEN now() - interval '2 days' END",
    )
    # When pruning rows enqueued more than 24 hours ago
    with conn:
        pruned = outbox.prune(conn, 24)
    # Then the sent rows are gone and the unsent one stays, visible in the backlog
    assert pruned == 4
    with conn:
        assert outbox.backlog(conn)[0] == 1
    assert query(dsn, "SELECT product_id, version, enqueued_at FROM sync_outbox") == [(2, 2, None)]


def test_maintenance_publishes_backlog_metrics_even_when_sends_fail(conn, dsn, local_settings, capsys, monkeypatch):
    # Given metrics on (the test session turns them off), 20 captured changes and a queue that refuses every entry
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    metrics.clear_metrics()
    catalog.seed(conn, 20)
    refusing = SyncQueue(
        RefuseEntries(make_sqs_client(local_settings), refuse=lambda _: True, times=10**6),
        local_settings.queue_url("live"),
        lane="live",
    )
    relay = OutboxRelay(dsn, refusing)
    with pytest.raises(PartialSendError):
        relay.drain(conn)
    capsys.readouterr()
    # When the relay runs its maintenance
    relay.maintain(conn)
    # Then it prints one CloudWatch embedded-metric-format line: 20 pending, none sent, an age
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {"OutboxBacklog", "OutboxOldestPendingAge", "OutboxSent"}
    assert emf["OutboxBacklog"] == [20] and emf["OutboxSent"] == [0] and emf["OutboxOldestPendingAge"][0] > 0

    # When the queue accepts again and the relay drains, Then the next report counts the rows sent
    relay.queue = SyncQueue.for_lane(make_sqs_client(local_settings), local_settings, "live")
    with QueueDrain(local_settings) as drain:
        relay.drain(conn)
        drain.settle()
    relay.maintain(conn)
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf["OutboxBacklog"] == [0] and emf["OutboxSent"] == [20]
