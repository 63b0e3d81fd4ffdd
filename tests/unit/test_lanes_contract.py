"""The two-lane contract: bulk messages (schema 2), their grouping, and the lane decisions (pure logic)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from refarch.emu.worker import chunked, is_input_error, parse_message
from refarch.index.pinecone_index import upsert_batches
from refarch.lanes.messages import BULK_MESSAGE_MAX_ITEMS, BulkSyncMessage, SyncMessage, bulk_messages
from refarch.lanes.queues import SyncQueue
from refarch.pelican.listener import relay_lane

OLD_BODY = {"product_id": 7, "version": 3, "op": "update", "source": "change"}


def test_a_version_1_body_still_parses_with_or_without_its_schema_version():
    # Given bodies written before schema 2 existed (with and without the version stamp)
    # When Emu parses them
    stamped = parse_message(json.dumps({**OLD_BODY, "schema_version": 1}))
    unstamped = parse_message(json.dumps(OLD_BODY))
    # Then both are the one-product live message they always were
    assert isinstance(stamped, SyncMessage) and isinstance(unstamped, SyncMessage)
    assert [(w.product_id, w.version) for w in unstamped.work()] == [(7, 3)]


def test_a_bulk_message_round_trips_and_names_every_product():
    # Given a bulk message of three products, one of them a delete
    sent = BulkSyncMessage(
        items=[
            {"product_id": 1, "version": 2},
            {"product_id": 5, "version": 1, "op": "delete"},
            {"product_id": 9, "version": 4},
        ],
        source="bootstrap",
    )
    # When it crosses the queue
    received = parse_message(sent.model_dump_json())
    # Then it is schema 2 and yields one work item per product, in order
    assert received == sent and json.loads(sent.model_dump_json())["schema_version"] == 2
    assert [(w.product_id, w.version, w.op) for w in received.work()] == [
        (1, 2, "sync"),
        (5, 1, "delete"),
        (9, 4, "sync"),
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"schema_version": 2, "items": [], "source": "bootstrap"}, "at least 1"),
        (
            {
                "schema_version": 2,
                "items": [{"product_id": i, "version": 1} for i in range(1, 102)],
                "source": "repair",
            },
            "at most 100",
        ),
        ({"schema_version": 2, "items": [{"product_id": 0, "version": 1}], "source": "bootstrap"}, "greater than 0"),
        ({"schema_version": 2, "items": [{"product_id": 1, "version": 1}], "source": "gossip"}, "source"),
        ({"schema_version": 3, "product_id": 1}, "schema_version"),
        ({"schema_version": "x", "product_id": 1}, "schema_version"),
    ],
)
def test_malformed_bulk_bodies_are_refused_with_a_reason(body: dict, reason: str):
    # When Emu parses a malformed body, Then it refuses it, saying why (the message then goes to the DLQ)
    with pytest.raises(ValueError, match="malformed message") as refused:
        parse_message(json.dumps(body))
    assert reason in str(refused.value)


@pytest.mark.parametrize(("items", "sizes"), [(0, []), (1, [1]), (100, [100]), (101, [100, 1]), (10_000, [100] * 100)])
def test_work_is_grouped_into_messages_of_at_most_100_products(items: int, sizes: list[int]):
    # Given a range's work list When it is grouped for the bulk lane
    messages = bulk_messages([(pid, 1, "sync") for pid in range(1, items + 1)], source="bootstrap")
    # Then every product is in exactly one message, 100 at most per message (10,000 rows: 100 messages)
    assert [len(m.items) for m in messages] == sizes
    assert [i.product_id for m in messages for i in m.items] == list(range(1, items + 1))
    assert all(len(m.model_dump_json()) < 256 * 1024 for m in messages)
    assert BULK_MESSAGE_MAX_ITEMS == 100


@pytest.mark.parametrize(
    ("backlog", "threshold", "bulk_available", "lane"),
    [
        (0, 2000, True, "live"),
        (2000, 2000, True, "live"),
        (2001, 2000, True, "bulk"),
        (50_000, 2000, True, "bulk"),
        (50_000, 2000, False, "live"),  # no bulk queue configured: everything stays live
    ],
)
def test_the_relay_sends_only_a_backlog_above_the_threshold_to_the_bulk_lane(
    backlog: int, threshold: int, bulk_available: bool, lane: str
):
    assert relay_lane(backlog, threshold, bulk_available=bulk_available) == lane


class _Refused(Exception):
    def __init__(self, **attributes: object) -> None:
        super().__init__("refused")
        self.__dict__.update(attributes)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_Refused(status_code=400), True),  # OpenAI BadRequestError
        (_Refused(status=400), True),  # Pinecone PineconeApiException
        (_Refused(status_code=413), True),
        (_Refused(status_code=429), False),  # throttled: splitting would only multiply calls
        (_Refused(status=503), False),
        (ConnectionError("down"), False),
    ],
)
def test_only_a_refusal_of_the_content_splits_a_chunk(error: Exception, expected: bool):
    assert is_input_error(error) is expected


@pytest.mark.parametrize(("n", "size", "sizes"), [(0, 64, []), (64, 64, [64]), (150, 64, [64, 64, 22])])
def test_a_delivery_is_cut_into_provider_sized_chunks(n: int, size: int, sizes: list[int]):
    assert [len(c) for c in chunked(list(range(n)), size)] == sizes


def test_upserts_stay_within_100_vectors_and_the_request_size():
    # Given 250 vectors of 1536 floats (OpenAI's size), ~30 KB of JSON each
    vectors = [{"id": str(i), "values": [0.0123456789012345] * 1536, "metadata": {"sku": f"S{i}"}} for i in range(250)]
    # When they are batched for Pinecone's upsert
    batches = upsert_batches(vectors, max_vectors=100, max_bytes=1_900_000)
    # Then no batch has more than 100 vectors or 2 MB of JSON, and none is lost
    assert sum(len(b) for b in batches) == 250
    assert all(len(b) <= 100 and len(json.dumps(b)) < 2 * 1024 * 1024 for b in batches)
    assert len(batches) > 3  # the size, not the count, bound here
    # And small vectors go 100 at a time
    small = [{"id": str(i), "values": [0.5] * 8, "metadata": {}} for i in range(250)]
    assert [len(b) for b in upsert_batches(small, max_vectors=100, max_bytes=1_900_000)] == [100, 100, 50]


def test_a_bulk_message_cannot_be_sent_to_the_fifo_lane():
    # Given the live lane's FIFO queue (no client call is made before the check)
    fifo = SyncQueue(client=None, queue_url="http://127.0.0.1:9324/000000000000/refarch-sync.fifo", lane="live")
    # When a bulk message is sent there, Then it is refused
    with pytest.raises(TypeError, match="bulk message"):
        fifo.send(bulk_messages([(1, 1, "sync")], source="bootstrap"))


def test_validation_errors_do_not_leak_as_pydantic_types():
    with pytest.raises(ValueError) as refused:
        parse_message("{not json")
    assert not isinstance(refused.value, ValidationError)
