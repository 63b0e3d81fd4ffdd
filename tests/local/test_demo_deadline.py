"""`refarch demo --exit-when-synced --timeout S`: every wait after start-up ends at the deadline.

The waits run against a real Postgres whose products nothing will ever index (no Emu runs), the
state a stuck pipeline leaves behind; the stack's other processes are not needed for this.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from refarch import catalog
from refarch.db import connect
from refarch.emu import ledger
from refarch.settings import Settings
from refarch_local.demo import _wait_synced, follow_indexing
from refarch_local.supervisor import Supervisor
from tests.conftest import free_port

# Generous: the deadline is ~1 s; this only tells "returned" from "hung".
HANG = 60


@pytest.fixture
def stuck_stack(dsn: str, tmp_path: Path) -> Supervisor:
    """A supervisor over a database with 3 products that are pending and will stay so."""
    conn = connect(dsn)
    try:
        catalog.seed(conn, 3)
    finally:
        conn.close()
    supervisor = Supervisor(Settings(home=tmp_path / "home"), web_port=free_port())
    supervisor.dsn = dsn
    return supervisor


def run_with_hang_guard(target, *args) -> dict:
    """Run target(*args) in a thread; fail the test if it has not returned after HANG seconds."""
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(value=target(*args)), daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"{target.__name__} did not stop at its deadline"
    return outcome


def test_following_the_bootstrap_stops_at_the_deadline_when_rows_stay_pending(stuck_stack: Supervisor):
    # Given products that stay pending and an enqueue that has finished
    enqueue_finished, stop = threading.Event(), threading.Event()
    enqueue_finished.set()
    seen: list[dict] = []
    # When the bootstrap is followed with a deadline one second away
    outcome = run_with_hang_guard(
        follow_indexing, stuck_stack, seen.append, enqueue_finished, stop, time.monotonic() + 1
    )
    # Then it gives up (False: not everything was indexed) after showing the real status
    assert outcome["value"] is False
    assert seen and seen[-1]["pending"] == 3


def test_waiting_for_sync_returns_1_at_the_deadline(stuck_stack: Supervisor):
    # Given products that stay pending, When waiting for the sync with a deadline one second away
    outcome = run_with_hang_guard(_wait_synced, stuck_stack, time.monotonic() + 1)
    # Then it gives up with exit code 1
    assert outcome["value"] == 1


def test_a_deadline_that_already_passed_in_the_bootstrap_ends_the_wait_at_once(stuck_stack: Supervisor):
    # Given the deadline passed while the bootstrap was followed, When waiting for the sync
    outcome = run_with_hang_guard(_wait_synced, stuck_stack, time.monotonic() - 1)
    # Then it does not start another wait
    assert outcome["value"] == 1


def test_waiting_for_sync_ends_0_when_indexed_and_1_when_a_product_failed_for_good(stuck_stack: Supervisor, dsn: str):
    # Given every product indexed at its version and the outbox relayed
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        ledger.record_indexed(conn, [(pid, 1, "hash", "indexed") for pid in (1, 2, 3)], generation=1)
        cur.execute("UPDATE sync_outbox SET enqueued_at = now()")
    # Then following the bootstrap and waiting for the sync both end, without a deadline, with success
    enqueue_finished = threading.Event()
    enqueue_finished.set()
    assert run_with_hang_guard(follow_indexing, stuck_stack, lambda s: None, enqueue_finished, threading.Event())[
        "value"
    ]
    assert run_with_hang_guard(_wait_synced, stuck_stack, None)["value"] == 0
    # When one product is marked failed and nothing is left in the queue (its messages are in the DLQ)
    with conn:
        ledger.record_failed(conn, {2: "embed/upsert failed: test"}, generation=1)
    conn.close()
    # Then the wait ends with exit code 1
    assert run_with_hang_guard(_wait_synced, stuck_stack, None)["value"] == 1
