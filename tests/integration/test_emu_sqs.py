"""End to end through a real SQS FIFO queue: outbox -> relay -> SQS -> event source -> Emu -> index."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

import lambdas.bootstrap
import lambdas.emu
from refarch import catalog
from refarch.db import connect
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.lanes.topology import DEFAULT_TOPOLOGY
from refarch.pelican.listener import OutboxRelay
from refarch.runtime import Runtime
from refarch_local.event_source import EventSourcePoller
from refarch_local.stepfunctions import run_bootstrap
from tests.integration.emu_support import (
    assert_index_matches_database,
    change,
    configure_emu,
    delete_product,
    edit_product,
    embed_calls_recorded,
    ledger_entries,
    ledger_errors,
    new_product,
    query_one,
    start_pinecone,
)

# The stand-in fixtures, shared by the Emu test modules.
pytest_plugins = ["tests.integration.emu_fixtures"]


@pytest.fixture
def queue(local_settings) -> SyncQueue:
    """The test's FIFO queue (visibility timeout 2 s, DLQ after 5 receives)."""
    return SyncQueue.for_lane(make_sqs_client(local_settings), local_settings, "live")


@pytest.fixture
def poller(local_settings) -> EventSourcePoller:
    """The local event source mapping on the test's queue."""
    return EventSourcePoller(make_sqs_client(local_settings), local_settings.queue_url("live"), concurrency=2)


def relay_outbox(dsn: str, queue: SyncQueue) -> int:
    """Send every captured change to SQS, as the Pelican listener does."""
    conn = connect(dsn)
    try:
        return OutboxRelay(dsn, queue).drain(conn)
    finally:
        conn.close()


def process_queue(poller: EventSourcePoller, queue: SyncQueue, *, timeout: float = 30.0) -> None:
    """Invoke Emu batch by batch until the queue is empty (failed messages return after 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            received = poller.poll_once(lambdas.emu.handler)
        except BatchProcessingError:  # every record failed: nothing deleted, all of them come back
            received = 0
        if received:
            continue
        depth = queue.depth()
        if depth == {"visible": 0, "in_flight": 0}:
            return
        assert time.monotonic() < deadline, f"queue not drained: {depth}"
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("embedder", "index"),
    [
        ("local", "pgvector"),
        ("local", "pinecone"),
        ("openai", "pgvector"),
        ("openai", "pinecone"),
        ("bedrock", "pinecone"),
    ],
)
def test_changes_flow_through_sqs_into_either_index_with_either_embedder(
    monkeypatch,
    dsn,
    local_settings,
    queue,
    poller,
    openai_standin,
    bedrock_standin,
    pinecone_standins,
    embedder,
    index,
):
    # Given Emu wired to this embedder and index, and 15 products captured in the outbox
    dimension = {"local": 384, "openai": 64, "bedrock": 256}[embedder]  # Bedrock: Titan at 256
    pinecone = start_pinecone(pinecone_standins, dimension) if index == "pinecone" else None
    emu = configure_emu(
        monkeypatch,
        dsn,
        embedder=embedder,
        index=index,
        openai=openai_standin,
        pinecone=pinecone,
        bedrock=bedrock_standin if embedder == "bedrock" else None,
        dimensions=dimension,
    )
    conn = connect(dsn)
    assert catalog.seed(conn, 15) == 15
    conn.close()
    # When the relay sends the changes and the event source feeds them to the handler
    assert relay_outbox(dsn, queue) == 15
    process_queue(poller, queue)
    # Then the index equals the table, each batch cost exactly one embed call, and none failed
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    assert poller.invocations >= 2  # FIFO batches hold at most 10 messages
    assert embed_calls_recorded(dsn) == poller.invocations
    assert poller.failed_records == 0
    if embedder == "openai":
        assert openai_standin.embed_calls == poller.invocations
    if embedder == "bedrock":  # Titan: one request per text, each text once
        assert bedrock_standin.embed_calls == bedrock_standin.texts == 15

    # When a price changes, a description changes, a row is deleted and one is added
    calls, invocations = embed_calls_recorded(dsn), poller.invocations
    edit_product(dsn, 1, price=Decimal("1.23"))
    edit_product(dsn, 2, description="Rebuilt from recycled aluminium.")
    delete_product(dsn, 3)
    new_product(dsn, 99)
    relay_outbox(dsn, queue)
    process_queue(poller, queue)
    # Then the index follows, embedding at most once per batch (and only for the two new texts)
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    assert 1 <= embed_calls_recorded(dsn) - calls <= poller.invocations - invocations
    assert query_one(dsn, "SELECT sum(texts) FROM embed_calls") == 15 + 2
    assert ledger_entries(dsn)[3].status == "deleted"


def test_rerunning_the_bootstrap_embeds_nothing(monkeypatch, dsn, local_settings, openai_standin):
    # Given a catalog loaded before any listener ran (the outbox is never relayed in this test),
    # and Emu serving the bulk lane, where the bootstrap sends its work
    monkeypatch.setenv("REFARCH_EMU_LANE", "bulk")
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin)
    monkeypatch.setattr(lambdas.bootstrap, "runtime", Runtime(application_name="bootstrap"))
    conn = connect(dsn)
    catalog.seed(conn, 30)
    conn.close()
    queue = SyncQueue.for_lane(make_sqs_client(local_settings), local_settings, "bulk")
    poller = EventSourcePoller(make_sqs_client(local_settings), queue.url, lane=DEFAULT_TOPOLOGY.bulk, concurrency=3)

    def bootstrap_and_sync() -> dict:
        """One bootstrap (Plan -> Map(Batch) -> Finalize), then bulk-lane Emu, 3 concurrent invocations, until idle."""
        result = run_bootstrap(range_size=10)
        worker = threading.Thread(target=poller.run)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while queue.depth() != {"visible": 0, "in_flight": 0}:
                assert time.monotonic() < deadline, "Emu did not drain the bootstrap"
                time.sleep(0.2)
        finally:
            poller.stop.set()
            worker.join()
            poller.stop.clear()
        return result

    # When the bootstrap runs
    first = bootstrap_and_sync()
    # Then every row was sent (3 bulk messages of 10) and indexed, with one embed call per delivery
    assert (first["status"], first["enqueued"]) == ("complete", 30)
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    calls = embed_calls_recorded(dsn)
    assert calls == openai_standin.embed_calls <= poller.invocations
    # (a delivery whose visibility ran out during the batching window is delivered again: the ledger skips it)
    assert query_one(dsn, "SELECT sum(texts) FROM embed_calls") == 30
    # When every price changes (all versions move past the ledger) and the bootstrap runs again
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("UPDATE products SET price = price + 1")
    second = bootstrap_and_sync()
    # Then all 30 rows were re-sent, yet nothing was embedded: the texts are unchanged
    assert second["enqueued"] == 30
    assert embed_calls_recorded(dsn) == openai_standin.embed_calls == calls
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    # And a third run has nothing to send at all
    assert run_bootstrap(range_size=10)["enqueued"] == 0


def test_only_the_failed_message_returns_to_the_queue(monkeypatch, dsn, local_settings, queue, poller, openai_standin):
    # Given a valid change and a poison message on the queue
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin)
    row = new_product(dsn, 1)
    queue.send([change(row.id, op="insert")])
    queue.client.send_message(
        QueueUrl=queue.url, MessageBody="{poison", MessageGroupId="poison", MessageDeduplicationId="poison-1"
    )
    # When the event source delivers them in one batch
    assert poller.poll_once(lambdas.emu.handler) == 2
    # Then the valid one was deleted and the poison one is invisible until its timeout, then back
    assert poller.failed_records == 1
    assert queue.depth() == {"visible": 0, "in_flight": 1}
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    deadline = time.monotonic() + 10
    while queue.depth()["visible"] != 1:
        assert time.monotonic() < deadline, "the failed message never came back"
        time.sleep(0.2)


def test_a_batch_that_always_fails_reaches_the_dlq_and_a_redrive_succeeds(
    monkeypatch,
    dsn,
    local_settings,
    queue,
    poller,
    openai_standin,
):
    # Given the provider is down (every request answers 500) and the SDK does not retry
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin, max_retries=0)
    openai_standin.fault_kinds, openai_standin.fault_rate = ("server_error",), 1.0
    row = new_product(dsn, 1)
    relay_outbox(dsn, queue)
    dlq = local_settings.dlq_url("live")

    def dlq_messages() -> list[dict]:
        return queue.client.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
            "Messages", []
        )

    # When the event source keeps polling
    whole_batch_failures = 0
    deadline = time.monotonic() + 40
    while not (dead := dlq_messages()):
        assert time.monotonic() < deadline, "the message never reached the DLQ"
        try:
            poller.poll_once(lambdas.emu.handler)
        except BatchProcessingError:  # Powertools: every record failed; the event source deletes nothing
            whole_batch_failures += 1
        time.sleep(0.2)
    # Then it was tried maxReceiveCount times, never deleted, and moved to the DLQ intact
    assert whole_batch_failures == DEFAULT_TOPOLOGY.max_receive_count
    assert queue.depth() == {"visible": 0, "in_flight": 0}
    (message,) = dead
    # And the ledger shows the failure, its reason and every attempt
    entry = ledger_entries(dsn)[row.id]
    assert (entry.status, entry.attempts) == ("failed", DEFAULT_TOPOLOGY.max_receive_count)
    assert "InternalServerError" in ledger_errors(dsn)[row.id]
    # When the provider recovers and an operator redrives the message (a new dedup id: FIFO
    # deduplicates an identical id for five minutes)
    openai_standin.fault_rate = 0.0
    queue.client.send_message(
        QueueUrl=queue.url,
        MessageBody=message["Body"],
        MessageGroupId=str(row.id),
        MessageDeduplicationId=f"{row.id}-1-redrive",
    )
    queue.client.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
    process_queue(poller, queue)
    # Then it succeeds and the ledger is clean again
    assert ledger_entries(dsn)[row.id].status == "indexed"
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
