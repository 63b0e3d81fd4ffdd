""" "Synced" means index == database, deletes included, whatever messages were lost before.

Real Postgres, the real local SQS queue, the real Emu and bootstrap handlers, the local model.
"""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

import lambdas.bootstrap
import lambdas.emu
from refarch import catalog
from refarch.db import Database, connect
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.lanes.topology import DEFAULT_TOPOLOGY
from refarch.runtime import Runtime
from refarch.status import sync_counts
from refarch_local.event_source import EventSourcePoller
from refarch_local.stepfunctions import run_bootstrap
from tests.integration.emu_support import assert_index_matches_database, configure_emu, delete_product, query_one
from tests.integration.test_emu_sqs import process_queue, relay_outbox

pytest_plugins = ["tests.integration.emu_fixtures"]


def counts(dsn: str) -> dict:
    conn = connect(dsn)
    try:
        return sync_counts(conn)
    finally:
        conn.close()


def test_lost_deletes_are_pending_until_a_bootstrap_resends_them(conn, dsn, local_settings, monkeypatch):
    # Given 40 products, bootstrapped and indexed through the queue by Emu
    emu = configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    monkeypatch.setattr(lambdas.bootstrap, "runtime", Runtime(local_settings, application_name="bootstrap"))
    client = make_sqs_client(local_settings)
    queue = SyncQueue.for_lane(client, local_settings, "live")
    poller = EventSourcePoller(client, queue.url, concurrency=2)
    # The bootstrap's work goes to the bulk lane
    bulk_queue = SyncQueue.for_lane(client, local_settings, "bulk")
    bulk_poller = EventSourcePoller(client, bulk_queue.url, lane=DEFAULT_TOPOLOGY.bulk, concurrency=2)
    catalog.seed(conn, 40)
    run_bootstrap(range_size=16)
    process_queue(bulk_poller, bulk_queue)
    relay_outbox(dsn, queue)  # the seed's own changes: already covered, nothing left to do
    process_queue(poller, queue)
    assert counts(dsn)["pending"] == 0 and emu.index.count() == 40

    # When 6 products are deleted, their deletes are relayed, and the queue loses them (a purge)
    for pid in (3, 4, 17, 18, 33, 40):
        delete_product(dsn, pid)
    assert relay_outbox(dsn, queue) == 6
    client.purge_queue(QueueUrl=queue.url)

    # Then the status does not call this synced: the index still holds six deleted products
    status = counts(dsn)
    assert (status["products"], status["indexed"]) == (34, 34)
    assert (status["pending"], status["pending_deletes"], status["failed"]) == (6, 6, 0)
    assert status["outbox_backlog"] == 0 and emu.index.count() == 40

    # When a bootstrap runs and the bulk queue drains
    result = run_bootstrap(range_size=16)
    process_queue(bulk_poller, bulk_queue)

    # Then it sent exactly the six deletes (the rest is indexed at its version), and index == database
    assert result["enqueued"] == 6 and result["skipped"] == 34
    assert_index_matches_database(Database(dsn), emu.index, emu.embedder.model_id)
    status = counts(dsn)
    assert (status["pending"], status["pending_deletes"], status["failed"]) == (0, 0, 0)


def test_a_delete_that_keeps_failing_is_counted_failed_not_synced(conn, dsn, local_settings, monkeypatch):
    # Given an indexed product whose vector-index delete fails on every attempt
    emu = configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    monkeypatch.setattr(lambdas.bootstrap, "runtime", Runtime(local_settings, application_name="bootstrap"))
    client = make_sqs_client(local_settings)
    queue = SyncQueue.for_lane(client, local_settings, "live")
    poller = EventSourcePoller(client, queue.url, concurrency=2)
    bulk_queue = SyncQueue.for_lane(client, local_settings, "bulk")
    catalog.seed(conn, 5)
    run_bootstrap(range_size=10)
    process_queue(EventSourcePoller(client, bulk_queue.url, lane=DEFAULT_TOPOLOGY.bulk), bulk_queue)

    def refuse(ids: list[int]) -> None:
        raise ConnectionError("index unavailable")

    monkeypatch.setattr(emu.index, "delete", refuse)

    # When the product is deleted and Emu tries to apply it
    delete_product(dsn, 2)
    relay_outbox(dsn, queue)
    with pytest.raises(BatchProcessingError):  # its only record failed: the batch comes back
        poller.poll_once(lambdas.emu.handler)

    # Then the status reports a failure (not synced, not silently pending forever) with the reason kept
    status = counts(dsn)
    assert (status["products"], status["failed"], status["pending_deletes"]) == (4, 1, 0)
    assert "index unavailable" in query_one(dsn, "SELECT last_error FROM sync_state WHERE product_id = 2")
