"""The relay routes a huge outbox backlog (one UPDATE touching many rows) to the bulk lane, edits to the live lane."""

from __future__ import annotations

from refarch import catalog
from refarch.db import connect
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.pelican.listener import OutboxRelay
from tests.integration.pelican_support import QueueDrain, edit_products, unsent_outbox_rows


def test_a_backlog_above_the_threshold_goes_bulk_and_a_single_edit_goes_live(conn, dsn, local_settings):
    # Given 300 changes in the outbox at once (a mass update) and a relay whose bulk threshold is 100
    catalog.seed(conn, 300)
    client = make_sqs_client(local_settings)
    relay = OutboxRelay(
        dsn,
        SyncQueue.for_lane(client, local_settings, "live"),
        bulk_queue=SyncQueue.for_lane(client, local_settings, "bulk"),
        bulk_threshold=100,
    )
    drain_conn = connect(dsn)
    try:
        with QueueDrain(local_settings, lane="bulk") as bulk, QueueDrain(local_settings) as live:
            # When the relay drains
            assert relay.drain(drain_conn) == 300
            bulk_received, live_received = bulk.settle(), live.settle()
            # Then the backlog went to the bulk lane, 100 products per message, and nothing to the live lane
            assert len(bulk.bulk_bodies) == 3 and {b["source"] for b in bulk.bulk_bodies} == {"backlog"}
            assert sorted(m["product_id"] for m in bulk_received) == list(range(1, 301))
            assert live_received == [] and relay.sent_bulk == 300

            # When one product is edited afterwards (the backlog is gone)
            edit_products(dsn, [42])
            assert relay.drain(drain_conn) == 1
            live_received = live.settle()
        # Then that edit takes the live lane, as a one-product FIFO message
        assert [(m["product_id"], m["version"], m["sqs_group_id"]) for m in live_received] == [(42, 2, "42")]
        assert unsent_outbox_rows(dsn) == 0
    finally:
        drain_conn.close()
