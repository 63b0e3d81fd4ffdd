"""Two lanes into one index: bulk deliveries in provider-sized chunks, and correctness when the lanes meet.

Real Postgres, the real local SQS queues (FIFO live lane, standard bulk lane, each with its DLQ),
the real Emu handler, the real local model or the OpenAI/Pinecone stand-ins through the real SDKs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

import lambdas.emu
import refarch.emu.worker
from refarch import catalog, products
from refarch.db import connect
from refarch.lanes.messages import bulk_messages
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.lanes.topology import DEFAULT_TOPOLOGY
from refarch_local.event_source import EventSourcePoller
from refarch_local.standins import OpenAIStandIn, hashed_embedding
from tests.integration.emu_support import (
    OPENAI_DIMENSIONS,
    assert_index_matches_database,
    configure_emu,
    edit_product,
    ledger_entries,
    ledger_errors,
    new_product,
    query_one,
    start_pinecone,
)
from tests.integration.test_emu_sqs import relay_outbox

pytest_plugins = ["tests.integration.emu_fixtures"]

POISON = "POISON"


@pytest.fixture
def lanes(local_settings) -> dict[str, tuple[SyncQueue, EventSourcePoller]]:
    """Each lane's queue and local event source (live: FIFO, batch 10; bulk: standard, batch 100 + window)."""
    client = make_sqs_client(local_settings)
    live = SyncQueue.for_lane(client, local_settings, "live")
    bulk = SyncQueue.for_lane(client, local_settings, "bulk")
    return {
        "live": (live, EventSourcePoller(client, live.url, lane=DEFAULT_TOPOLOGY.live)),
        "bulk": (bulk, EventSourcePoller(client, bulk.url, lane=DEFAULT_TOPOLOGY.bulk)),
    }


def seed_as_bootstrapped(dsn: str, rows: int) -> None:
    """Load catalog rows whose outbox changes are already covered (as after a bootstrap sent them)."""
    conn = connect(dsn)
    try:
        catalog.seed(conn, rows)
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE sync_outbox SET enqueued_at = now()")
    finally:
        conn.close()


def product(dsn: str, pid: int) -> products.Product:
    conn = connect(dsn)
    try:
        with conn:
            return products.get_many(conn, [pid])[pid]
    finally:
        conn.close()


class HoldingEmbedder:
    """The real embedder, except that the call embedding `held_text` waits until the test releases it.

    It runs inside Emu's chunk transaction, so while it waits that chunk's product locks are held.
    """

    def __init__(self, inner, held_text: str) -> None:
        self.inner = inner
        self.model_id, self.dimension, self.batch_size = inner.model_id, inner.dimension, inner.batch_size
        self.held_text = held_text
        self.holding = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: list[str]) -> list[list[float]]:
        if self.held_text in texts and not self.holding.is_set():
            self.holding.set()
            assert self.release.wait(60), "the test never released the held chunk"
        return self.inner.embed(texts)


def waiting_for_a_product_lock(dsn: str) -> bool:
    """True while some transaction waits for an advisory (per-product) lock."""
    return bool(query_one(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))


def run_in_thread(target) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as err:  # reported to the test, which asserts there were none
            errors.append(err)

    thread = threading.Thread(target=body)
    thread.start()
    return thread, errors


def test_a_bulk_delivery_is_embedded_in_chunks_of_the_providers_batch_size(monkeypatch, dsn, lanes):
    # Given 150 products named by two bulk messages (100 + 50), and Emu on the local model (batch 64)
    emu = configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    seed_as_bootstrapped(dsn, 150)
    bulk, poller = lanes["bulk"]
    messages = bulk_messages([(pid, 1, "sync") for pid in range(1, 151)], source="bootstrap")
    bulk.send(messages)
    # When the bulk event source delivers them in one invocation
    assert poller.poll_once(lambdas.emu.handler) == 2
    # Then they were embedded in requests of 64, 64 and 22 texts (one per chunk), and all are indexed
    assert embed_call_sizes(dsn) == [64, 64, 22]
    assert poller.failed_records == 0 and bulk.depth() == {"visible": 0, "in_flight": 0}
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_pinecone_upserts_stay_within_100_vectors_per_call(monkeypatch, dsn, lanes, openai_standin, pinecone_standins):
    # Given 250 products in three bulk messages, Emu on OpenAI (one request per 512 texts) and Pinecone
    pinecone = start_pinecone(pinecone_standins, OPENAI_DIMENSIONS)
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index="pinecone", openai=openai_standin, pinecone=pinecone)
    seed_as_bootstrapped(dsn, 250)
    bulk, poller = lanes["bulk"]
    bulk.send(bulk_messages([(pid, 1, "sync") for pid in range(1, 251)], source="bootstrap"))
    # When they are delivered together
    assert poller.poll_once(lambdas.emu.handler) == 3
    # Then one embedding request carried all 250 texts, and Pinecone got upserts of at most 100 vectors
    assert openai_standin.embed_calls == 1 and openai_standin.texts == 250
    upserts = [len(request.body["vectors"]) for route, request in pinecone.received if route == "upsert"]
    assert upserts == [100, 100, 50]
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_a_product_edited_live_while_its_bulk_chunk_is_being_indexed_ends_at_its_latest_version(
    monkeypatch, dsn, lanes
):
    # Given 150 products in a bulk delivery, whose second chunk (products 65-128) is being embedded
    # (its products locked) when product 100 is edited and the edit reaches the live lane
    runtime = configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    seed_as_bootstrapped(dsn, 150)
    held = HoldingEmbedder(runtime.embedder, product(dsn, 100).embedding_text())
    runtime.__dict__["embedder"] = held
    emu = runtime.emu
    (live, live_poller), (bulk, bulk_poller) = lanes["live"], lanes["bulk"]
    bulk.send(bulk_messages([(pid, 1, "sync") for pid in range(1, 151)], source="bootstrap"))
    bulk_thread, bulk_errors = run_in_thread(lambda: bulk_poller.poll_once(lambdas.emu.handler))
    assert held.holding.wait(60), "the bulk delivery never reached product 100's chunk"

    # When the edit commits and the live lane's Emu runs at that moment
    edited = edit_product(dsn, 100, description="A limited edition in saffron yellow with a lighthouse on it.")
    assert edited.version == 2
    assert relay_outbox(dsn, live) == 1
    live_thread, live_errors = run_in_thread(lambda: live_poller.poll_once(lambdas.emu.handler))
    deadline = time.monotonic() + 30
    while not waiting_for_a_product_lock(dsn):  # the live invocation waits for the bulk chunk's lock
        assert time.monotonic() < deadline, "the live invocation never waited for product 100's lock"
        time.sleep(0.05)
    held.release.set()
    bulk_thread.join(60)
    live_thread.join(60)

    # Then both lanes succeeded, and product 100 is indexed at version 2 with its new text
    assert bulk_errors == [] and live_errors == []
    assert bulk_poller.failed_records == 0 and live_poller.failed_records == 0
    assert ledger_entries(dsn)[100].indexed_version == 2
    assert dict(emu.index.scan())[100]["version"] == 2
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_a_product_deleted_and_inserted_again_while_its_chunk_is_embedded_ends_indexed_as_the_new_row(
    monkeypatch, dsn, lanes
):
    # Given 20 products in a bulk delivery, whose chunk is being embedded (product 5's text held)
    runtime = configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    seed_as_bootstrapped(dsn, 20)
    old = product(dsn, 5)
    held = HoldingEmbedder(runtime.embedder, old.embedding_text())
    runtime.__dict__["embedder"] = held
    (live, live_poller), (bulk, bulk_poller) = lanes["live"], lanes["bulk"]
    bulk.send(bulk_messages([(pid, 1, "sync") for pid in range(1, 21)], source="bootstrap"))
    bulk_thread, bulk_errors = run_in_thread(lambda: bulk_poller.poll_once(lambdas.emu.handler))
    assert held.holding.wait(60), "the bulk delivery never reached product 5's chunk"
    # When product 5 is deleted and inserted again under its id at that moment: the same text, another price
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM products WHERE id = 5")
        cur.execute(
            "INSERT INTO products (id, sku, name, description, category, price) VALUES (5, %s, %s, %s, %s, 999.00)",
            (old.sku, old.name, old.description, old.category),
        )
        cur.execute("SELECT version FROM products WHERE id = 5")
        (version,) = cur.fetchone()
    conn.close()
    # Then the new row's version is past the delete's (2), so nothing can take it for the old row
    assert version == 3
    # When the chunk (embedding the old row, at version 1) finishes, and the delete and insert reach the live lane
    held.release.set()
    bulk_thread.join(60)
    assert bulk_errors == []
    assert relay_outbox(dsn, live) == 2
    while live_poller.poll_once(lambdas.emu.handler):
        pass
    assert live_poller.failed_records == 0 and live.depth() == {"visible": 0, "in_flight": 0}
    # Then the index holds the new row: its version and its price
    stored = dict(runtime.emu.index.scan())[5]
    assert (stored["version"], float(stored["price"])) == (3, 999.0)
    assert_index_matches_database(runtime.db, runtime.emu.index, runtime.embedder.model_id)


def test_a_stale_bulk_item_after_a_live_edit_changes_nothing(monkeypatch, dsn, lanes):
    # Given 20 products indexed, then product 7 edited and indexed by the live lane at version 2
    emu = configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    seed_as_bootstrapped(dsn, 20)
    (live, live_poller), (bulk, bulk_poller) = lanes["live"], lanes["bulk"]
    bulk.send(bulk_messages([(pid, 1, "sync") for pid in range(1, 21)], source="bootstrap"))
    bulk_poller.poll_once(lambdas.emu.handler)
    edit_product(dsn, 7, description="Now with a hot-air balloon printed on it.")
    relay_outbox(dsn, live)
    live_poller.poll_once(lambdas.emu.handler)
    calls = query_one(dsn, "SELECT count(*) FROM embed_calls")
    # When a bulk message naming product 7 at version 1 arrives late (a repair, a re-run bootstrap)
    bulk.send(bulk_messages([(7, 1, "sync")], source="bootstrap"))
    bulk_poller.poll_once(lambdas.emu.handler)
    # Then the version guard and the content hash keep version 2, and nothing was embedded
    assert ledger_entries(dsn)[7].indexed_version == 2
    assert query_one(dsn, "SELECT count(*) FROM embed_calls") == calls
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


@pytest.fixture
def poisoned_openai() -> Iterator[OpenAIStandIn]:
    """An OpenAI stand-in that returns an all-zero vector for a text containing POISON (Pinecone refuses those)."""

    def embed(texts: list[str], dimension: int) -> list[list[float]]:
        return [[0.0] * dimension if POISON in t else hashed_embedding(t, dimension) for t in texts]

    with OpenAIStandIn(embed_fn=embed, seed=7) as stand_in:
        yield stand_in


def test_one_failing_product_does_not_cost_its_neighbours_and_its_message_reaches_the_bulk_dlq(
    monkeypatch, dsn, local_settings, lanes, poisoned_openai, pinecone_standins
):
    # Given 30 products in one bulk message; Pinecone refuses product 17's vector on every attempt
    pinecone = start_pinecone(pinecone_standins, OPENAI_DIMENSIONS)
    emu = configure_emu(
        monkeypatch, dsn, embedder="openai", index="pinecone", openai=poisoned_openai, pinecone=pinecone
    )
    for n in range(1, 31):
        new_product(dsn, n, **({"description": f"A widget that is {POISON} to index."} if n == 17 else {}))
    query_one(dsn, "UPDATE sync_outbox SET enqueued_at = now() RETURNING 1")
    bulk, poller = lanes["bulk"]
    bulk.send(bulk_messages([(pid, 1, "sync") for pid in range(1, 31)], source="bootstrap"))

    # When the bulk lane's Emu receives it (its only record fails, so the whole delivery is retried)
    with pytest.raises(BatchProcessingError):
        poller.poll_once(lambdas.emu.handler)
    # Then its 29 neighbours were indexed on this first attempt; only product 17 is failed, with the reason
    entries = ledger_entries(dsn)
    assert {pid for pid, e in entries.items() if e.status == "indexed"} == set(range(1, 31)) - {17}
    assert entries[17].status == "failed" and "non-zero" in (ledger_errors(dsn)[17] or "")
    assert len(pinecone.vectors("products")) == 29
    texts_after_first = poisoned_openai.texts

    # When the message comes back and fails again until maxReceiveCount (5)
    client = make_sqs_client(local_settings)
    dlq_url = local_settings.dlq_url("bulk")
    receives = 1
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "the message never reached the bulk DLQ"
        try:
            received = poller.poll_once(lambdas.emu.handler)
        except BatchProcessingError:
            received = 1
        if received:
            receives += 1
            # Then each retry re-embeds only product 17: the ledger skips its indexed neighbours
            assert poisoned_openai.texts - texts_after_first == receives - 1
            continue
        dlq = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
        if int(dlq["Attributes"]["ApproximateNumberOfMessages"]) == 1:
            break
        time.sleep(0.3)

    # Then after 5 receives the message is in the bulk DLQ, naming all 30 products; only 17 is failed
    assert receives == DEFAULT_TOPOLOGY.max_receive_count
    [dead] = client.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert POISON not in dead["Body"] and '"product_id":17' in dead["Body"].replace(" ", "")
    entries = ledger_entries(dsn)
    assert [pid for pid, e in entries.items() if e.status != "indexed"] == [17]
    assert entries[17].attempts == DEFAULT_TOPOLOGY.max_receive_count
    assert bulk.depth() == {"visible": 0, "in_flight": 0}
    assert emu.index.count() == 29


def test_a_delivery_bigger_than_the_time_left_stops_between_chunks_and_the_retry_embeds_only_the_rest(monkeypatch, dsn):
    # Given 150 products in two bulk messages (100 + 50), Emu on the local model (chunks of 64)
    emu = configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    seed_as_bootstrapped(dsn, 150)
    bodies = {
        f"m{n}": m.model_dump_json()
        for n, m in enumerate(bulk_messages([(pid, 1, "sync") for pid in range(1, 151)], source="bootstrap"))
    }
    # When the invocation has time for one chunk only (60 s left before it, 5 s after: under the margin)
    seconds_left = iter([60.0])
    outcome = emu.emu.process(bodies, time_left=lambda: next(seconds_left, 5.0))
    # Then the first chunk was indexed, and it stopped before the next one instead of being cut off
    assert embed_call_sizes(dsn) == [64]
    assert outcome.not_started == 150 - 64 and outcome.not_started_messages == {"m0", "m1"}
    assert set(outcome.failures) == {"m0", "m1"} and "not started: 5.0 s left" in outcome.failures["m1"]
    # And the products it did not reach are untouched in the ledger (not counted as failed attempts)
    assert set(ledger_entries(dsn)) == set(range(1, 65))
    # When both messages are retried with time enough
    assert emu.emu.process(bodies).failures == {}
    # Then only the rest was embedded (each product once), and the index equals the table
    assert embed_call_sizes(dsn) == [64, 64, 22]
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_messages_the_time_ran_out_for_go_back_to_the_queue_at_once_without_using_up_their_receives(
    monkeypatch, dsn, local_settings, lanes
):
    # Given the bulk lane's function, two bulk messages, and invocations with less time left than Emu needs
    emu = configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    monkeypatch.setattr(lambdas.emu.runtime.settings, "emu_lane", "bulk")
    seed_as_bootstrapped(dsn, 30)
    bulk, poller = lanes["bulk"]
    bulk.send(bulk_messages([(pid, 1, "sync") for pid in range(1, 31)], source="bootstrap", per_message=15))
    margin = refarch.emu.worker.MIN_TIME_LEFT_SECONDS
    monkeypatch.setattr(refarch.emu.worker, "MIN_TIME_LEFT_SECONDS", DEFAULT_TOPOLOGY.bulk.timeout_seconds + 1)
    # When the bulk lane's Emu receives them more often than the queue's maxReceiveCount
    for _ in range(DEFAULT_TOPOLOGY.max_receive_count + 1):
        assert poller.poll_once(lambdas.emu.handler) == 2
        # Then each time nothing was embedded, and both are visible again at once (not after the visibility timeout)
        assert embed_call_sizes(dsn) == []
        assert bulk.depth() == {"visible": 2, "in_flight": 0}
    # And they were sent again as new messages, so work never started used up none of their receives: none is
    # in the DLQ, and each is received for the first time
    client = bulk.client
    dlq = client.get_queue_attributes(
        QueueUrl=local_settings.dlq_url("bulk"), AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert dlq["Attributes"]["ApproximateNumberOfMessages"] == "0"
    peek = client.receive_message(
        QueueUrl=bulk.url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"], VisibilityTimeout=0
    )["Messages"]
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in peek] == ["1", "1"]
    # And with time enough, the next delivery indexes them all
    monkeypatch.setattr(refarch.emu.worker, "MIN_TIME_LEFT_SECONDS", margin)
    assert poller.poll_once(lambdas.emu.handler) == 2
    assert bulk.depth() == {"visible": 0, "in_flight": 0}
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_a_message_with_a_product_that_failed_is_not_handed_back_as_not_started(
    monkeypatch, dsn, poisoned_openai, pinecone_standins
):
    # Given 30 products in two bulk messages (1-15, 16-30), Pinecone refusing product 5's vector, chunks of 10
    pinecone = start_pinecone(pinecone_standins, OPENAI_DIMENSIONS)
    runtime = configure_emu(
        monkeypatch, dsn, embedder="openai", index="pinecone", openai=poisoned_openai, pinecone=pinecone
    )
    for n in range(1, 31):
        new_product(dsn, n, **({"description": f"A widget that is {POISON} to index."} if n == 5 else {}))
    emu = refarch.emu.worker.Emu(runtime.db, runtime.targets, chunk_size=10)
    first, second = bulk_messages([(pid, 1, "sync") for pid in range(1, 31)], source="bootstrap", per_message=15)
    # When the invocation has time for the first chunk only (products 1-10: product 5 fails)
    seconds_left = iter([60.0])
    outcome = emu.process(
        {"m1": first.model_dump_json(), "m2": second.model_dump_json()}, time_left=lambda: next(seconds_left, 5.0)
    )
    # Then both messages fail, but only the one whose products were not even tried counts as not started
    # (it goes back as a new message); the one with a real failure is retried as it is, using up a receive
    assert set(outcome.failures) == {"m1", "m2"} and "product 5" in outcome.failures["m1"]
    assert outcome.not_started_messages == {"m2"}


def embed_call_sizes(dsn: str) -> list[int]:
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT texts FROM embed_calls ORDER BY id")
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
