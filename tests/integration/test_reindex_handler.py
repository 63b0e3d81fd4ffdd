"""The reindex Lambda (the Reindex state machine's steps, docs/reindex.md) against real Postgres and the local SQS.

Fast on purpose: a small catalog and the OpenAI stand-in for both generations (64-d, then
32-d). The heavy end-to-end re-index (search during the switch, crash re-runs) is in
test_reindex.py; this checks the handler's contract: start is idempotent and says when no
re-index is needed, progress reports whether the lanes are idle, switch refuses with the error
the state machine catches, gc drops; and one local execution of the state machine end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import lambdas.bootstrap
import lambdas.reindex
from refarch import catalog
from refarch.db import connect
from refarch.generations import GenerationError, IncompleteGenerationError, reindex_flow
from refarch.index.pgvector_index import PgVectorIndex
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.lanes.topology import BOOTSTRAP_FINALIZE_HANDLER, DEFAULT_TOPOLOGY, EMU_HANDLER, REINDEX_HANDLER
from refarch.runtime import Runtime
from refarch_local.event_source import EventSourcePoller
from refarch_local.handlers import invoke, load_handler
from refarch_local.stepfunctions import run_bootstrap, run_reindex
from tests.conftest import SHORT_BATCHING_WINDOW
from tests.integration.emu_support import (
    change,
    configure_emu,
    edit_product,
    failed_ids,
    invoke_emu,
    query_one,
    sqs_event,
    start_pinecone,
)
from tests.integration.pelican_support import wait_for

pytest_plugins = ["tests.integration.emu_fixtures"]

ROWS = 30
# The Reindex definition polls every 60 s; the interpreter's clock runs 300 times faster here (every 0.2 s).
POLL_EVERY_0_2_S = 1 / 300


@dataclass
class Lanes:
    """Both lanes' queues, and a local event source per lane invoking the Emu handler."""

    live: SyncQueue
    bulk: SyncQueue
    pollers: list[EventSourcePoller]

    def drain(self) -> None:
        """Invoke Emu until both lanes are empty (each message processed once, deleted on success)."""
        handler = load_handler(EMU_HANDLER)
        while sum(poller.poll_once(handler) for poller in self.pollers):
            pass


@pytest.fixture
def lanes(monkeypatch, dsn, local_settings, openai_standin) -> Lanes:
    """A seeded catalog, Emu embedding with the 64-d stand-in into pgvector, both lanes empty."""
    for name, value in SHORT_BATCHING_WINDOW.items():
        monkeypatch.setenv(name, value)
    configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin, dimensions=64)
    monkeypatch.setattr(lambdas.bootstrap, "runtime", Runtime(application_name="bootstrap"))
    conn = connect(dsn)
    try:
        catalog.seed(conn, ROWS)
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE sync_outbox SET enqueued_at = now()")  # a bootstrap sends them instead
    finally:
        conn.close()
    client = make_sqs_client(local_settings)
    live = SyncQueue.for_lane(client, local_settings, "live")
    bulk = SyncQueue.for_lane(client, local_settings, "bulk")
    pollers = [
        EventSourcePoller(client, live.url, lane=DEFAULT_TOPOLOGY.live),
        EventSourcePoller(client, bulk.url, lane=DEFAULT_TOPOLOGY.bulk),
    ]
    return Lanes(live, bulk, pollers)


@pytest.fixture
def configure(monkeypatch) -> Callable[[int], None]:
    """Deploy the reindex Lambda with the stand-in model at this dimension (a cold start with new settings)."""

    def deploy(dimensions: int) -> None:
        monkeypatch.setenv("REFARCH_OPENAI_DIMENSIONS", str(dimensions))
        monkeypatch.setattr(lambdas.reindex, "runtime", Runtime(application_name="reindex"))

    return deploy


def reindex(event: dict) -> dict:
    """One invocation of the reindex Lambda, by its handler string."""
    return invoke(REINDEX_HANDLER, event)


def test_on_the_active_model_no_reindex_is_needed_and_generation_1_is_recorded(lanes, configure, dsn):
    # Given a database whose generation 1 no runtime has recorded yet (a first deploy)
    configure(64)
    # When the state machine's first step runs, twice
    first, second = reindex({"action": "start"}), reindex({"action": "start"})
    # Then no re-index is needed, and generation 1 records the configured model
    assert first == second == {"generation": 1, "needed": False}
    assert query_one(dsn, "SELECT model_id FROM index_generations WHERE id = 1") == "openai:text-embedding-3-small:64"


def test_start_is_idempotent_and_refuses_a_third_model_while_one_builds(lanes, configure, dsn):
    # Given generation 1 on the 64-d model, When a deploy configures the 32-d one and the start step runs twice
    configure(64)
    reindex({"action": "start"})
    configure(32)
    first, again = reindex({"action": "start"}), reindex({"action": "start"})
    # Then one building generation is created, with its table, and the second call finds the same one
    assert first == again == {"generation": 2, "needed": True}
    assert query_one(dsn, "SELECT count(*) FROM index_generations WHERE status = 'building'") == 1
    assert query_one(dsn, "SELECT to_regclass('product_vectors_g2')::text") == "product_vectors_g2"
    # And a third model while it builds is refused
    configure(16)
    with pytest.raises(GenerationError, match="generation 2 .* is building"):
        reindex({"action": "start"})


def test_progress_switch_rollback_and_gc_through_the_handler(lanes, configure, dsn):
    # Given generation 2 (32-d) building, nothing sent yet
    configure(64)
    reindex({"action": "start"})
    configure(32)
    assert reindex({"action": "start"})["generation"] == 2
    # Then its progress says every row is missing, and both lanes are idle (time to fill it)
    progress = reindex({"action": "progress", "generation": 2})
    assert (progress["rows"], progress["missing"], progress["complete"], progress["lanes_idle"]) == (
        ROWS,
        ROWS,
        False,
        True,
    )
    # And a switch is refused with the error the state machine catches (it waits and polls again)
    with pytest.raises(IncompleteGenerationError) as refused:
        reindex({"action": "switch", "generation": 2})
    assert refused.typename == "IncompleteGenerationError"
    # When a bootstrap run sends the rows to the bulk lane, Then the lanes are busy
    run_bootstrap(generation=2)
    assert reindex({"action": "progress", "generation": 2})["lanes_idle"] is False
    # When Emu has processed them, Then generation 2 is complete and the lanes idle
    lanes.drain()
    progress = reindex({"action": "progress", "generation": 2})
    assert (progress["indexed"], progress["complete"], progress["lanes_idle"]) == (ROWS, True, True)
    # And the switch makes it active
    assert reindex({"action": "switch", "generation": 2}) == {"previous": 1, "active": 2}
    # And a retried switch step (its switch committed, its answer was lost) gets the same answer, changing nothing
    retired_at = query_one(dsn, "SELECT retired_at FROM index_generations WHERE id = 1")
    assert reindex({"action": "switch", "generation": 2}) == {"previous": 1, "active": 2}
    assert query_one(dsn, "SELECT retired_at FROM index_generations WHERE id = 1") == retired_at
    # And a progress step naming it is refused (it is no longer building)
    with pytest.raises(GenerationError, match="generation 2 is not building"):
        reindex({"action": "progress", "generation": 2})
    # When rolled back, generation 1 (kept in sync meanwhile) is active again
    assert reindex({"action": "rollback"}) == {"previous": 2, "active": 1}
    # And gc keeps the retired generation 2 within the grace period, and drops it after
    assert reindex({"action": "gc"}) == {"dropped": []}
    assert reindex({"action": "gc", "grace_hours": 0}) == {"dropped": [2]}
    assert query_one(dsn, "SELECT to_regclass('product_vectors_g2')") is None
    # And an unknown action is refused before anything runs
    with pytest.raises(ValueError, match="action"):
        reindex({"action": "reindex-everything"})


class FinishingQueue(SyncQueue):
    """The bulk lane's real queue, where Emu finishes every message just before the queue is first looked at."""

    def __init__(self, queue: SyncQueue, lanes: Lanes) -> None:
        super().__init__(queue.client, queue.url, lane=queue.lane)
        self.lanes = lanes
        self.drained = False

    def depth(self) -> dict[str, int]:
        if not self.drained:
            self.lanes.drain()
            self.drained = True
        return super().depth()


def test_emu_finishing_while_progress_is_read_is_not_taken_for_lost_rows(lanes, configure, dsn):
    # Given generation 2 building, its rows sent to the bulk lane and not yet embedded
    configure(64)
    reindex({"action": "start"})
    configure(32)
    assert reindex({"action": "start"})["generation"] == 2
    run_bootstrap(generation=2)
    # When Emu finishes the last messages while the progress step runs (between its reads)
    bulk = FinishingQueue(lanes.bulk, lanes)
    progress = reindex_flow.building_progress(lambdas.reindex.runtime.targets, 2, lanes=[lanes.live, bulk])
    # Then the answer is consistent: never rows missing with idle lanes (a needless Fill), here complete
    assert (progress["missing"], progress["complete"], progress["lanes_idle"]) == (0, True, True)


@pytest.fixture
def running_lanes(lanes: Lanes) -> Iterator[Lanes]:
    """Both lanes' event sources polling in threads, as Lambda's would."""
    threads = [threading.Thread(target=poller.run, daemon=True) for poller in lanes.pollers]
    for thread in threads:
        thread.start()
    yield lanes
    for poller in lanes.pollers:
        poller.stop.set()
    for thread in threads:
        thread.join(timeout=60)


def test_a_local_execution_of_the_state_machine_builds_and_switches(running_lanes, configure, dsn):
    # Given generation 1 built on the 64-d model (the first deploy's execution finds nothing to do)
    configure(64)
    assert run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=60) == {"generation": 1, "needed": False}
    run_bootstrap()
    # When a deploy configures the 32-d model and the Reindex state machine runs
    configure(32)
    switched = run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=120)
    # Then it filled generation 2 through the bulk lane and switched to it
    assert switched == {"previous": 1, "active": 2}
    assert query_one(dsn, "SELECT count(*) FROM product_vectors_g2") == ROWS
    assert query_one(dsn, "SELECT model_id FROM index_generations WHERE status = 'active'") == (
        "openai:text-embedding-3-small:32"
    )


def test_the_cli_reindexes_by_running_the_deployed_state_machine(running_lanes, configure, dsn):
    # Given generation 1 built on the 64-d model
    configure(64)
    assert run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=60) == {"generation": 1, "needed": False}
    run_bootstrap()
    # When `refarch reindex` is asked for the 32-d model (a process of its own, as a person runs it)
    env = {**os.environ, "REFARCH_OPENAI_DIMENSIONS": "64"}
    done = subprocess.run(
        [sys.executable, "-m", "refarch_cli", "reindex", "--openai-dimensions", "32", "--timeout", "240"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Then the Reindex state machine filled generation 2 through the bulk lane, showing progress, and switched
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "generation 2 is active; 1 retired (rollback possible)"
    assert f"{ROWS}/{ROWS} rows" in done.stderr
    assert query_one(dsn, "SELECT count(*) FROM product_vectors_g2") == ROWS
    assert query_one(dsn, "SELECT model_id FROM index_generations WHERE status = 'active'") == (
        "openai:text-embedding-3-small:32"
    )
    # And asked again, the state machine's first step finds the model in use: nothing to do
    again = subprocess.run(
        [sys.executable, "-m", "refarch_cli", "reindex", "--openai-dimensions", "32"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "generation 2 already uses this embedder and index: nothing to re-index" in again.stdout


def refarch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own (as a person runs it), with this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "refarch_cli", *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def take_all(queue: SyncQueue) -> int:
    """Receive and delete every message of the queue (lost, as far as Emu is concerned); how many."""
    taken = 0
    while batch := queue.client.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            queue.client.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
        taken += len(batch)
    return taken


def test_the_state_machine_re_sends_what_was_lost_once_the_lanes_fall_idle(lanes, configure, dsn):
    # Given generation 1 built on the 64-d model, and a deploy configuring the 32-d one
    configure(64)
    reindex({"action": "start"})
    run_bootstrap()
    lanes.drain()
    configure(32)
    # When the Reindex state machine runs, and every message of its first Fill is lost before Emu sees one
    # (Emu's event sources only start polling afterwards)
    fills: list[dict] = []
    threads = [threading.Thread(target=poller.run, daemon=True) for poller in lanes.pollers]

    def lose_the_first_fill(handler: str, result: Any) -> None:
        if handler == BOOTSTRAP_FINALIZE_HANDLER:
            fills.append(result)
            if len(fills) == 1:
                take_all(lanes.bulk)
                for thread in threads:
                    thread.start()

    try:
        switched = run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=120, on_result=lose_the_first_fill)
    finally:
        for poller in lanes.pollers:
            poller.stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=60)
    # Then its Progress found rows missing with both lanes idle, Fill ran again and sent them, and it switched
    assert [fill["enqueued"] for fill in fills] == [ROWS, ROWS]
    assert switched == {"previous": 1, "active": 2}
    assert query_one(dsn, "SELECT count(*) FROM product_vectors_g2") == ROWS


def test_the_cli_without_waiting_starts_and_fills_through_the_state_machine_and_a_later_run_switches(
    running_lanes, configure, dsn
):
    # Given generation 1 built on the 64-d model (a pgvector stage)
    configure(64)
    assert run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=60) == {"generation": 1, "needed": False}
    run_bootstrap()
    # When `refarch reindex --no-wait` is asked for the 32-d model
    done = refarch("reindex", "--openai-dimensions", "32", "--no-wait", "--timeout", "240")
    # Then the Reindex state machine's Start created generation 2 and its Fill sent every row to the bulk lane,
    # and the command returned without switching (the execution stopped as it entered its Wait)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].startswith("generation 2 is building")
    assert f"{ROWS} rows sent to the bulk lane" in done.stderr
    assert query_one(dsn, "SELECT status FROM index_generations WHERE id = 2") == "building"
    # And Emu fills it meanwhile, while search still reads generation 1
    wait_for(lambda: query_one(dsn, "SELECT count(*) FROM product_vectors_g2") == ROWS, 120, "generation 2 filled")
    assert query_one(dsn, "SELECT id FROM index_generations WHERE status = 'active'") == 1
    # When the state machine runs again for the same model, Then it resumes generation 2 and switches to it
    configure(32)
    assert run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=120) == {"previous": 1, "active": 2}
    # And --pinecone-index on a pgvector stage is refused before anything runs
    refused = refarch("reindex", "--pinecone-index", "elsewhere")
    assert refused.returncode == 2 and "--pinecone-index needs the Pinecone backend" in refused.stderr


def test_the_cli_builds_in_the_pinecone_index_it_is_given_through_the_state_machine(
    running_lanes, configure, dsn, monkeypatch, openai_standin, pinecone_standins
):
    # Given generation 1 built in pgvector, and the stage's settings moved to Pinecone (the configured index
    # by its host) with the same model
    configure(64)
    assert run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=60) == {"generation": 1, "needed": False}
    run_bootstrap()
    pinecone = start_pinecone(pinecone_standins, dimension=64)
    monkeypatch.setenv("PINECONE_CONTROLLER_HOST", pinecone.url)
    configure_emu(monkeypatch, dsn, embedder="openai", index="pinecone", openai=openai_standin, pinecone=pinecone,
                  dimensions=64)  # fmt: skip
    # When `refarch reindex --pinecone-index refarch-chosen` runs
    done = refarch("reindex", "--pinecone-index", "refarch-chosen", "--timeout", "240")
    # Then the Reindex state machine created that index, filled generation 2 in it and switched
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "generation 2 is active; 1 retired (rollback possible)"
    assert pinecone.indexes["refarch-chosen"]["schema"]["fields"]["_values"]["dimension"] == 64
    target = query_one(dsn, "SELECT target FROM index_generations WHERE status = 'active'")
    assert (target["index_name"], target["namespace"]) == ("refarch-chosen", "products-g2")
    product_ids = query_one(dsn, "SELECT array_agg(id::text ORDER BY id) FROM products")
    assert sorted(pinecone.vectors("products-g2", index="refarch-chosen"), key=int) == product_ids
    # And nothing went to the index the settings configure by its host
    assert pinecone.vectors("products-g2") == {}
    # And asked again, the state machine's Start finds that embedder in that index: nothing to do
    again = refarch("reindex", "--pinecone-index", "refarch-chosen")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "generation 2 already uses this embedder and index: nothing to re-index" in again.stdout


def test_a_deploy_that_moves_the_index_to_pinecone_rebuilds_there_and_switches(
    running_lanes, configure, dsn, monkeypatch, openai_standin, pinecone_standins
):
    # Given generation 1 built in pgvector (the first deploy's execution finds nothing to do)
    configure(64)
    assert run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=60) == {"generation": 1, "needed": False}
    run_bootstrap()
    # When a deploy moves the stage to Pinecone with the same model: every function gets the new settings
    pinecone = start_pinecone(pinecone_standins, dimension=64)
    configure_emu(monkeypatch, dsn, embedder="openai", index="pinecone", openai=openai_standin, pinecone=pinecone,
                  dimensions=64)  # fmt: skip
    configure(64)
    # Then the Reindex state machine builds generation 2 in Pinecone through the bulk lane and switches to it
    assert run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=120) == {"previous": 1, "active": 2}
    assert query_one(dsn, "SELECT backend FROM index_generations WHERE status = 'active'") == "pinecone"
    stored = pinecone.vectors("products-g2")
    product_ids = query_one(dsn, "SELECT array_agg(id::text ORDER BY id) FROM products")
    assert sorted(stored, key=int) == product_ids
    assert {vector.metadata["version"] for vector in stored.values()} == {1}
    # And the next deploy's execution finds the model and the index in use: nothing to do
    assert run_reindex(time_scale=POLL_EVERY_0_2_S, timeout_seconds=60) == {"generation": 2, "needed": False}


def test_a_gc_whose_index_removal_fails_leaves_the_generation_dropped_and_the_next_gc_removes_it(
    lanes, configure, dsn, monkeypatch
):
    # Given generation 2 built, switched to and rolled back from: retired, its table kept
    configure(64)
    reindex({"action": "start"})
    configure(32)
    reindex({"action": "start"})
    run_bootstrap(generation=2)
    lanes.drain()
    reindex({"action": "switch", "generation": 2})
    reindex({"action": "rollback"})

    # When gc drops it and removing its table fails
    def refuse(index: PgVectorIndex) -> None:
        raise OSError("the table could not be dropped")

    real_drop = PgVectorIndex.drop
    monkeypatch.setattr(PgVectorIndex, "drop", refuse)
    with pytest.raises(GenerationError, match=r"generation\(s\) \[2\] keep their index for now"):
        reindex({"action": "gc", "grace_hours": 0})
    # Then generation 2 is dropped all the same: no rollback can return to it, and no writer touches it
    assert query_one(dsn, "SELECT status FROM index_generations WHERE id = 2") == "dropped"
    with pytest.raises(GenerationError, match="no retired generation"):
        reindex({"action": "rollback"})
    edited = edit_product(dsn, 3, name="Edited after the gc")
    assert failed_ids(invoke_emu(sqs_event(change(3, version=edited.version)))) == set()
    assert query_one(dsn, "SELECT count(*) FROM sync_state WHERE generation = 2") == 0
    # When the next gc runs, Then it removes the table it left, and records that
    monkeypatch.setattr(PgVectorIndex, "drop", real_drop)
    assert reindex({"action": "gc", "grace_hours": 0}) == {"dropped": []}
    assert query_one(dsn, "SELECT to_regclass('product_vectors_g2')") is None
    assert query_one(dsn, "SELECT target ->> 'index_removed' FROM index_generations WHERE id = 2") == "true"
