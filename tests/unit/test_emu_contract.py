"""The message contract between Pelican and Emu, and what Emu hashes (pure logic, no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from refarch.embeddings import OpenAIEmbedder
from refarch.emu.worker import content_hash, parse_message
from refarch.generations.targets import check_dimensions
from refarch.index.pinecone_index import PineconeIndex
from refarch.index.port import DimensionMismatchError
from refarch.lanes.messages import SyncMessage
from refarch_local.standins import PineconeStandIn

VALID = {
    "product_id": 7,
    "version": 3,
    "op": "update",
    "source": "change",
    "outbox_id": 41,
    "changed_at": "2030-01-02T03:04:05+00:00",
}


def test_a_message_survives_the_queue_unchanged():
    # Given a message as Pelican builds it
    sent = SyncMessage(**VALID)
    # When it is serialised into an SQS body and parsed by Emu
    received = parse_message(sent.model_dump_json())
    # Then it is the same message, with the schema version stamped in
    assert received == sent
    assert json.loads(sent.model_dump_json())["schema_version"] == 1
    assert received.changed_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_group_is_the_product_and_dedup_is_product_plus_version():
    message = SyncMessage(**VALID)
    assert message.group_id == "7"
    assert message.deduplication_id == "7-3"
    # Two sends of the same version deduplicate; a new version does not.
    assert SyncMessage(**{**VALID, "outbox_id": 99}).deduplication_id == "7-3"
    assert SyncMessage(**{**VALID, "version": 4}).deduplication_id == "7-4"


def test_forced_repairs_are_never_deduplicated_against_the_change_they_repair():
    # Given a repair of a version already sent once
    repair = SyncMessage(**{**VALID, "source": "repair", "force": True})
    later = SyncMessage(**{**VALID, "source": "repair", "force": True, "changed_at": "2030-01-02T03:04:06+00:00"})
    # Then its dedup id differs from the change's and from another repair's
    assert repair.deduplication_id != SyncMessage(**VALID).deduplication_id
    assert repair.deduplication_id != later.deduplication_id
    assert repair.deduplication_id.startswith("7-3-repair-")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (dict(VALID, product_id=0), "product_id"),
        (dict(VALID, product_id="seven"), "product_id"),
        (dict(VALID, version=0), "version"),
        (dict(VALID, op="upsert"), "op"),
        (dict(VALID, source="cron"), "source"),
        (dict(VALID, schema_version=2), "schema_version"),
        (dict(VALID, surprise=True), "surprise"),
        ({k: v for k, v in VALID.items() if k != "product_id"}, "product_id"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason_naming_the_field(body, field):
    # When Emu parses a body that breaks the contract
    with pytest.raises(ValueError, match="malformed message") as caught:
        parse_message(json.dumps(body))
    # Then the reason names the offending field, so the DLQ entry is actionable
    assert field in str(caught.value)


@pytest.mark.parametrize("body", ["", "not json", "[]", "null", '{"product_id": 1'])
def test_bodies_that_are_not_a_json_object_are_rejected(body):
    with pytest.raises(ValueError, match="malformed message"):
        parse_message(body)


def test_messages_are_immutable():
    message = SyncMessage(**VALID)
    with pytest.raises(ValidationError):
        message.version = 9  # type: ignore[misc]


def test_content_hash_covers_the_text_and_the_model():
    # The same text under the same model hashes the same; changing either changes the hash.
    assert content_hash("local:m:384", "A lamp.") == content_hash("local:m:384", "A lamp.")
    assert content_hash("local:m:384", "A lamp.") != content_hash("local:m:384", "A lamp!")
    assert content_hash("local:m:384", "A lamp.") != content_hash("openai:m:1536", "A lamp.")


def test_emu_refuses_an_index_of_another_dimension_and_names_both():
    # Given a 384-d index and a 64-d embedder (real adapters; nothing is called yet)
    with PineconeStandIn(dimension=384) as pinecone:
        index = PineconeIndex(api_key=pinecone.api_key, dimension=384, host=pinecone.url)
        embedder = OpenAIEmbedder(
            api_key="sk-test", model="text-embedding-3-small", dimensions=64, base_url="http://127.0.0.1:9/v1"
        )
        # When an index generation is served by them, Then it is refused with both sizes and the model named
        with pytest.raises(DimensionMismatchError, match="384") as caught:
            check_dimensions(embedder, index)
    assert "64" in str(caught.value)
    assert "openai:text-embedding-3-small:64" in str(caught.value)
