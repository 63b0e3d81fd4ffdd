"""The Emu Lambda handler fed real SQS-shaped events, against a real Postgres and both indexes."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg2
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from refarch.db import Database, connect
from refarch.emu import ledger
from refarch.emu.worker import content_hash
from refarch.index.pgvector_index import PgVectorIndex
from refarch.index.port import DimensionMismatchError, SearchFilter, held_rows
from refarch.products import MAX_DESCRIPTION_CHARS
from tests.integration.emu_support import (
    OPENAI_DIMENSIONS,
    assert_index_matches_database,
    change,
    configure_emu,
    delete_product,
    edit_product,
    embed_calls_recorded,
    failed_ids,
    invoke_emu,
    ledger_entries,
    ledger_errors,
    new_product,
    query_one,
    shared_local_embedder,
    sqs_event,
    start_pinecone,
)

# The stand-in fixtures, shared by the Emu test modules.
pytest_plugins = ["tests.integration.emu_fixtures"]


@pytest.fixture
def emu(monkeypatch, dsn, openai_standin):
    """The handler wired to the OpenAI stand-in and pgvector (the fastest real pair)."""
    return configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin)


@pytest.fixture
def emu_pinecone(monkeypatch, dsn, openai_standin, pinecone_standins):
    """The handler wired to the OpenAI stand-in and the Pinecone stand-in."""
    pinecone = start_pinecone(pinecone_standins, OPENAI_DIMENSIONS)
    return configure_emu(
        monkeypatch, dsn, embedder="openai", index="pinecone", openai=openai_standin, pinecone=pinecone
    )


# -- the message contract --------------------------------------------------------------------


def test_malformed_messages_fail_alone_with_a_logged_reason(emu, dsn, openai_standin, caplog):
    # Given two real products and five bodies that break the contract, each in its own group
    a, b = new_product(dsn, 1), new_product(dsn, 2)
    bad_bodies = {
        "not json": "bad-1",
        json.dumps({"product_id": -4, "version": 1, "op": "update", "source": "change"}): "bad-2",
        json.dumps({"product_id": 3, "version": 1, "op": "explode", "source": "change"}): "bad-3",
        json.dumps({"product_id": 3, "version": 1, "op": "update", "source": "change", "sql": "DROP"}): "bad-4",
        "": "bad-5",
    }
    event = sqs_event(change(a.id, op="insert"), *bad_bodies.items(), change(b.id, op="insert"))
    # When the handler processes the batch
    response = invoke_emu(event)
    # Then exactly the malformed records are reported for retry (and so reach the DLQ)
    bad_ids = {r["messageId"] for r in event["Records"][1:6]}
    assert failed_ids(response) == bad_ids
    # And each rejection was logged with its message id and a reason naming the problem
    rejections = {r.message_id: r.reason for r in caplog.records if r.getMessage() == "rejecting message"}
    assert set(rejections) == bad_ids
    assert "op" in rejections[event["Records"][3]["messageId"]]
    assert "sql" in rejections[event["Records"][4]["messageId"]]
    # And the valid products were indexed in the same batch
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    assert openai_standin.embed_calls == 1


def test_a_failure_holds_back_later_messages_of_its_group_only(emu, dsn):
    # Given a malformed body in product 1's group, followed by a valid message of the same group,
    # and a message of another product
    a, b = new_product(dsn, 1), new_product(dsn, 2)
    event = sqs_event(("{broken", str(a.id)), change(a.id, op="insert"), change(b.id, op="insert"))
    # When processed
    response = invoke_emu(event)
    # Then the FIFO processor also fails the later message of the failed group (order is kept),
    # while the other group succeeds
    records = event["Records"]
    assert failed_ids(response) == {records[0]["messageId"], records[1]["messageId"]}
    # Emu synced product 1 anyway (it re-reads rows), so the retried message will be a no-op
    assert ledger_entries(dsn)[a.id].status == "indexed"
    calls = embed_calls_recorded(dsn)
    assert failed_ids(invoke_emu(sqs_event(change(a.id, op="insert")))) == set()
    assert embed_calls_recorded(dsn) == calls


# -- processing a batch ----------------------------------------------------------------------


def test_a_batch_is_embedded_in_one_call_and_indexed_with_its_metadata(emu, dsn, openai_standin):
    # Given ten new products and a batch of their messages (one duplicated)
    rows = [new_product(dsn, n) for n in range(1, 10)]
    messages = [change(r.id, op="insert") for r in rows]
    # When the handler processes the batch
    response = invoke_emu(sqs_event(*messages, messages[0]))
    # Then nothing failed, one provider call embedded the nine texts, and the audit recorded it
    assert response == {"batchItemFailures": []}
    assert openai_standin.embed_calls == 1
    assert openai_standin.texts == 9
    assert embed_calls_recorded(dsn) == 1
    assert query_one(dsn, "SELECT texts FROM embed_calls") == 9
    # And every vector carries the link back to Postgres and the filterable fields
    match = emu.index.query(emu.embedder.embed([rows[3].embedding_text()])[0], top_k=1)[0]
    assert match.id == rows[3].id
    assert match.metadata == {
        "sku": "T-0004",
        "name": "Widget 4",
        "category": "tools",
        "price": 14.0,
        "version": 1,
        "content_hash": content_hash(emu.embedder.model_id, rows[3].embedding_text()),
    }
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_unchanged_content_is_never_embedded_again(emu, dsn, openai_standin):
    # Given indexed products
    rows = [new_product(dsn, n) for n in range(1, 6)]
    invoke_emu(sqs_event(*[change(r.id, op="insert") for r in rows]))
    assert openai_standin.embed_calls == 1
    # When the same messages arrive again (a duplicate delivery, a bootstrap re-run)
    response = invoke_emu(sqs_event(*[change(r.id, op="sync") for r in rows]))
    # Then nothing is embedded and nothing fails
    assert failed_ids(response) == set()
    assert openai_standin.embed_calls == 1
    assert embed_calls_recorded(dsn) == 1


@pytest.mark.parametrize("wiring", ["emu", "emu_pinecone"])
def test_a_price_change_updates_metadata_without_embedding(request, dsn, openai_standin, wiring):
    emu = request.getfixturevalue(wiring)
    # Given an indexed product
    row = new_product(dsn, 1, price=Decimal("20.00"))
    invoke_emu(sqs_event(change(row.id, op="insert")))
    # When only its price changes
    edited = edit_product(dsn, row.id, price=Decimal("35.50"))
    assert edited.version == 2
    response = invoke_emu(sqs_event(change(row.id, version=2)))
    # Then no embedding happened, but the price filter and the version follow the row
    assert failed_ids(response) == set()
    assert openai_standin.embed_calls == 1
    vector = emu.embedder.embed([row.embedding_text()])[0]
    assert [m.id for m in emu.index.query(vector, top_k=5, filter=SearchFilter(min_price=35, max_price=36))] == [row.id]
    assert emu.index.query(vector, top_k=5, filter=SearchFilter(max_price=30)) == []
    assert ledger_entries(dsn)[row.id].indexed_version == 2
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_a_text_change_is_re_embedded(emu, dsn, openai_standin):
    row = new_product(dsn, 1)
    invoke_emu(sqs_event(change(row.id, op="insert")))
    edit_product(dsn, row.id, description="Now with a walnut handle.")
    invoke_emu(sqs_event(change(row.id, version=2)))
    assert openai_standin.embed_calls == 2
    assert openai_standin.received[-1][1].body["input"] == ["Widget 1. tools. Now with a walnut handle."]
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


@pytest.mark.parametrize("wiring", ["emu", "emu_pinecone"])
def test_a_deleted_row_loses_its_vector_and_the_ledger_says_deleted(request, dsn, wiring):
    emu = request.getfixturevalue(wiring)
    # Given two indexed products
    keep, gone = new_product(dsn, 1), new_product(dsn, 2)
    invoke_emu(sqs_event(change(keep.id, op="insert"), change(gone.id, op="insert")))
    # When one is deleted and its tombstone message arrives (twice)
    delete_product(dsn, gone.id)
    response = invoke_emu(sqs_event(change(gone.id, version=2, op="delete")))
    invoke_emu(sqs_event(change(gone.id, version=2, op="delete")))
    # Then its vector is gone and the ledger records the deletion past every version it had
    assert failed_ids(response) == set()
    assert [pid for pid, _ in emu.index.scan()] == [keep.id]
    entry = ledger_entries(dsn)[gone.id]
    assert (entry.status, entry.indexed_version) == ("deleted", 2)
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_a_late_insert_message_for_a_deleted_row_does_not_resurrect_it(emu, dsn, openai_standin):
    # Given a product that was created and deleted before Emu saw anything
    row = new_product(dsn, 1)
    delete_product(dsn, row.id)
    # When the messages arrive out of order: the delete first, then the stale insert
    invoke_emu(sqs_event(change(row.id, version=2, op="delete")))
    invoke_emu(sqs_event(change(row.id, version=1, op="insert")))
    # Then the index stays empty and nothing was embedded
    assert emu.index.count() == 0
    assert openai_standin.embed_calls == 0
    assert ledger_entries(dsn)[row.id].status == "deleted"


def test_an_id_deleted_and_inserted_again_before_emu_saw_the_delete_is_synced_at_its_new_state(emu, dsn):
    # Given a product indexed at version 3
    row = new_product(dsn, 1)
    edit_product(dsn, row.id, name="Widget One")
    edit_product(dsn, row.id, name="Widget 1")
    invoke_emu(sqs_event(change(row.id, version=3)))
    # When it is deleted and inserted again under the same id in one transaction: the same text, another price
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM products WHERE id = %s", (row.id,))
        cur.execute(
            "INSERT INTO products (id, sku, name, description, category, price) VALUES (%s, %s, %s, %s, %s, 999.00)",
            (row.id, row.sku, "Widget 1", row.description, row.category),
        )
        cur.execute("SELECT version FROM products WHERE id = %s", (row.id,))
        (version,) = cur.fetchone()
    conn.close()
    # Then its version continues past the delete's (4), not 1, which the ledger would take as indexed already
    assert version == 5
    # And until Emu has seen it, it is pending, not indexed
    assert query_one(dsn, "SELECT status FROM product_sync_status WHERE product_id = %s", (row.id,)) == "pending"
    # When the delete and the insert arrive, Then the index holds the new row: its price and version
    assert failed_ids(invoke_emu(sqs_event(change(row.id, version=4, op="delete")))) == set()
    assert failed_ids(invoke_emu(sqs_event(change(row.id, version=5, op="insert")))) == set()
    metadata = emu.index.fetch_metadata([row.id])[row.id]
    assert (metadata["version"], Decimal(str(metadata["price"]))) == (5, Decimal("999.00"))
    assert query_one(dsn, "SELECT status FROM product_sync_status WHERE product_id = %s", (row.id,)) == "indexed"
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_an_id_never_repeats_a_version_across_a_delete_and_an_insert(emu, dsn):
    # Given a product indexed at version 1, then edited (version 2) and deleted (its tombstone: 3) before
    # Emu saw either: the ledger still says 1, and the live lane's FIFO queue has seen "1-2" and "1-3"
    row = new_product(dsn, 1)
    invoke_emu(sqs_event(change(row.id, op="insert")))
    edit_product(dsn, row.id, name="Widget One")
    delete_product(dsn, row.id)
    # When the id is inserted again and edited
    query_one(
        dsn,
        "INSERT INTO products (id, sku, name, description, category, price)"
        " VALUES (%s, 'T-0001', 'Widget 1', 'Back again.', 'tools', 5) RETURNING id",
        (row.id,),
    )
    edit_product(dsn, row.id, name="Widget Again")
    # Then its versions continue (4, 5): no change of the new row shares a deduplication id with the old one's
    sql = "SELECT array_agg(version ORDER BY id) FROM sync_outbox WHERE product_id = %s"
    assert query_one(dsn, sql, (row.id,)) == [1, 2, 3, 4, 5]


def test_an_insert_waits_for_a_concurrent_delete_of_its_id_and_starts_past_its_tombstone(emu, dsn):
    # Given a product at version 2, being deleted by a transaction that has not committed yet (tombstone: 3)
    row = new_product(dsn, 1)
    edit_product(dsn, row.id, name="Widget One")
    deleter = psycopg2.connect(dsn)
    with deleter.cursor() as cur:
        cur.execute("DELETE FROM products WHERE id = %s", (row.id,))
    # When another transaction inserts the same id meanwhile
    inserted: dict[str, int] = {}

    def insert() -> None:
        inserter = psycopg2.connect(dsn)
        try:
            with inserter, inserter.cursor() as cur:
                cur.execute(
                    "INSERT INTO products (id, sku, name, description, category, price)"
                    " VALUES (%s, 'T-0001', 'Widget 1', 'Back again.', 'tools', 5) RETURNING version",
                    (row.id,),
                )
                inserted["version"] = cur.fetchone()[0]
        finally:
            inserter.close()

    thread = threading.Thread(target=insert)
    thread.start()
    deadline = time.monotonic() + 30
    while not query_one(dsn, "SELECT count(*) FROM pg_locks WHERE NOT granted"):
        assert time.monotonic() < deadline and thread.is_alive(), "the insert never waited for the delete"
        time.sleep(0.05)
    # Then it waits for the delete, and once that commits it starts past the tombstone (4), repeating no version
    deleter.commit()
    deleter.close()
    thread.join(30)
    assert inserted == {"version": 4}
    sql = "SELECT array_agg(version ORDER BY id) FROM sync_outbox WHERE product_id = %s"
    assert query_one(dsn, sql, (row.id,)) == [1, 2, 3, 4]


def test_stale_messages_never_move_the_ledger_backwards(emu, dsn, openai_standin):
    # Given a product indexed at version 3
    row = new_product(dsn, 1)
    edit_product(dsn, row.id, name="Widget One")
    edit_product(dsn, row.id, name="Widget Uno")
    invoke_emu(sqs_event(change(row.id, version=3)))
    # When older versions' messages arrive late
    invoke_emu(sqs_event(change(row.id, version=1, op="insert"), change(row.id, version=2)))
    # Then nothing is re-embedded and the ledger still says version 3
    assert openai_standin.embed_calls == 1
    assert ledger_entries(dsn)[row.id].indexed_version == 3
    # And the ledger's own guard refuses to record an older version even if asked to
    conn = connect(dsn)
    with conn:
        ledger.record_indexed(conn, [(row.id, 2, "older", "indexed")], generation=1)
    conn.close()
    assert ledger_entries(dsn)[row.id].indexed_version == 3
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_a_forced_repair_re_embeds_current_content(emu, dsn, openai_standin):
    row = new_product(dsn, 1)
    invoke_emu(sqs_event(change(row.id, op="insert")))
    invoke_emu(sqs_event(change(row.id, op="sync", force=True).model_copy(update={"source": "repair"})))
    assert openai_standin.embed_calls == 2


def test_over_long_descriptions_are_chunked_within_the_model_limit(emu, dsn, openai_standin):
    # Given a product with the longest description the table allows (far over 8191 tokens)
    row = new_product(dsn, 1, description="lorem ipsum " * (MAX_DESCRIPTION_CHARS // 12))
    # When Emu indexes it, Then the provider accepted every chunk (the stand-in refuses over-long inputs)
    assert failed_ids(invoke_emu(sqs_event(change(row.id, op="insert")))) == set()
    assert openai_standin.embed_calls == 1
    # And the row is several vectors, one per chunk the provider embedded, none of its text left out
    [held] = held_rows(emu.index.scan()).values()
    assert len(held.chunks) == openai_standin.texts > 20 and held.complete
    assert held.chunks[len(held.chunks) - 1]["chunk_end"] >= len(row.embedding_text()) - 1
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_the_local_model_indexes_into_pinecone(monkeypatch, dsn, pinecone_standins):
    # Given the local all-MiniLM-L6-v2 model and a 384-d Pinecone index
    pinecone = start_pinecone(pinecone_standins, 384)
    emu = configure_emu(monkeypatch, dsn, embedder="local", index="pinecone", pinecone=pinecone)
    rows = [
        new_product(dsn, 1, name="Cast iron skillet", description="Heavy pan for searing steak."),
        new_product(dsn, 2, name="Garden hose", description="Fifty feet of flexible rubber hose."),
    ]
    # When the handler indexes them
    assert failed_ids(invoke_emu(sqs_event(*[change(r.id, op="insert") for r in rows]))) == set()
    # Then a plain-language query finds the right one first
    query = shared_local_embedder().embed(["something to fry meat in"])[0]
    assert emu.index.query(query, top_k=2)[0].id == rows[0].id
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


# -- failures --------------------------------------------------------------------------------


def test_an_outage_fails_the_whole_batch_records_it_and_a_retry_succeeds(monkeypatch, dsn, openai_standin):
    # Given the provider fails every attempt the SDK makes (1 try + 2 retries)
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin, max_retries=2)
    rows = [new_product(dsn, n) for n in (1, 2)]
    event = sqs_event(*[change(r.id, op="insert") for r in rows])
    openai_standin.fail_next("server_error", times=3)
    # When the batch is processed, Then every record failed, so Powertools raises and Lambda
    # (or the local event source) returns the whole batch to the queue
    with pytest.raises(BatchProcessingError, match="All records failed"):
        invoke_emu(event)
    # And the ledger says failed, why, and how often
    entries, errors = ledger_entries(dsn), ledger_errors(dsn)
    for r in rows:
        assert (entries[r.id].status, entries[r.id].attempts) == ("failed", 1)
        assert "InternalServerError" in errors[r.id]
    assert embed_calls_recorded(dsn) == 0
    # When the provider recovers and the batch is redelivered
    response = invoke_emu(event)
    # Then it succeeds and the ledger forgets the failure
    assert failed_ids(response) == set()
    assert all(e.status == "indexed" and e.attempts == 0 for e in ledger_entries(dsn).values())
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_only_the_products_that_failed_are_retried(monkeypatch, dsn, openai_standin):
    # Given one product already indexed (it will be skipped) and one new product
    configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin, max_retries=0)
    done, new = new_product(dsn, 1), new_product(dsn, 2)
    invoke_emu(sqs_event(change(done.id, op="insert")))
    openai_standin.fail_next("server_error")
    # When a batch with both fails at the provider
    event = sqs_event(change(done.id, op="sync"), change(new.id, op="insert"))
    response = invoke_emu(event)
    # Then only the new product's message is reported for retry
    assert failed_ids(response) == {event["Records"][1]["messageId"]}
    assert ledger_entries(dsn)[done.id].status == "indexed"
    assert ledger_entries(dsn)[new.id].status == "failed"


def test_timeouts_count_attempts_until_the_provider_answers(monkeypatch, dsn, openai_standin):
    # Given an embedder with a 0.5 s timeout and no SDK retries, and a provider that hangs twice
    emu = configure_emu(
        monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin, timeout_seconds=0.5, max_retries=0
    )
    row = new_product(dsn, 1)
    event = sqs_event(change(row.id, op="insert"))
    openai_standin.fail_next("timeout", times=2)
    # When the message is delivered three times
    for _ in range(2):
        with pytest.raises(BatchProcessingError):
            invoke_emu(event)
    # Then each timed-out delivery counted an attempt, with the reason
    assert ledger_entries(dsn)[row.id].attempts == 2
    assert "Timeout" in ledger_errors(dsn)[row.id]
    assert failed_ids(invoke_emu(event)) == set()
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_an_index_failure_fails_the_records_and_keeps_the_old_version(emu_pinecone, dsn, pinecone_standins):
    # Given an indexed product, then a text change
    pinecone = pinecone_standins[0]
    row = new_product(dsn, 1)
    invoke_emu(sqs_event(change(row.id, op="insert")))
    edit_product(dsn, row.id, name="Widget Prime")
    # When Pinecone fails more often than its SDK retries (1 try + 3 retries)
    pinecone.fail_next("server_error", times=4)
    with pytest.raises(BatchProcessingError):
        invoke_emu(sqs_event(change(row.id, version=2)))
    # Then the ledger keeps the version the index really holds, marked failed
    entry = ledger_entries(dsn)[row.id]
    assert (entry.status, entry.indexed_version) == ("failed", 1)
    assert "upsert failed" in ledger_errors(dsn)[row.id]
    # And the retry brings the index up to date
    assert failed_ids(invoke_emu(sqs_event(change(row.id, version=2)))) == set()
    idx = emu_pinecone.index
    assert_index_matches_database(emu_pinecone.db, idx, emu_pinecone.embedder.model_id)


def test_a_failing_index_delete_fails_the_record_and_keeps_the_vector_until_a_retry(
    emu_pinecone, dsn, pinecone_standins
):
    # Given an indexed product whose row is then deleted
    pinecone = pinecone_standins[0]
    row = new_product(dsn, 1)
    invoke_emu(sqs_event(change(row.id, op="insert")))
    delete_product(dsn, row.id)
    # When its tombstone arrives while Pinecone fails every try of the delete (1 try + 3 retries)
    pinecone.fail_next("server_error", times=4)
    with pytest.raises(BatchProcessingError):
        invoke_emu(sqs_event(change(row.id, version=2, op="delete")))
    # Then the delete really was what failed: the vector is still there, and the ledger says so
    assert [name for name, _ in pinecone.received][-4:] == ["delete"] * 4
    assert pinecone.faults == {"server_error": 4}
    assert [pid for pid, _ in emu_pinecone.index.scan()] == [row.id]
    entry = ledger_entries(dsn)[row.id]
    assert (entry.status, entry.indexed_version) == ("failed", 1)
    assert "delete failed" in ledger_errors(dsn)[row.id]
    # And the redelivered tombstone removes the vector and records the deletion
    assert failed_ids(invoke_emu(sqs_event(change(row.id, version=2, op="delete")))) == set()
    assert list(emu_pinecone.index.scan()) == []
    entry = ledger_entries(dsn)[row.id]
    assert (entry.status, entry.indexed_version) == ("deleted", 2)
    assert_index_matches_database(emu_pinecone.db, emu_pinecone.index, emu_pinecone.embedder.model_id)


def test_a_failing_metadata_update_fails_the_record_and_keeps_the_old_version(
    emu_pinecone, dsn, openai_standin, pinecone_standins
):
    # Given an indexed product whose price (only) then changes
    pinecone = pinecone_standins[0]
    row = new_product(dsn, 1, price=Decimal("20.00"))
    invoke_emu(sqs_event(change(row.id, op="insert")))
    edit_product(dsn, row.id, price=Decimal("35.50"))
    # When the change arrives while Pinecone fails every try of the metadata update
    pinecone.fail_next("server_error", times=4)
    with pytest.raises(BatchProcessingError):
        invoke_emu(sqs_event(change(row.id, version=2)))
    # Then the metadata update really was what failed (nothing was embedded), the vector keeps its
    # old price and version, and the ledger keeps the version the index holds, marked failed
    assert [name for name, _ in pinecone.received][-4:] == ["update"] * 4
    assert pinecone.faults == {"server_error": 4}
    assert openai_standin.embed_calls == 1
    [(_, metadata)] = emu_pinecone.index.scan()
    assert (metadata["version"], metadata["price"]) == (1, 20.0)
    entry = ledger_entries(dsn)[row.id]
    assert (entry.status, entry.indexed_version) == ("failed", 1)
    assert "metadata update failed" in ledger_errors(dsn)[row.id]
    # And the redelivered change brings the vector to the row's version
    assert failed_ids(invoke_emu(sqs_event(change(row.id, version=2)))) == set()
    assert_index_matches_database(emu_pinecone.db, emu_pinecone.index, emu_pinecone.embedder.model_id)


# -- configuration ---------------------------------------------------------------------------


def test_a_pgvector_table_of_another_dimension_is_a_clear_error(monkeypatch, dsn, openai_standin):
    # Given product_vectors built for the 384-d local model before index generations were recorded
    PgVectorIndex(Database(dsn), 384).ensure()
    # When Emu starts with a 64-d OpenAI embedder (and records generation 1 with it)
    configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin)
    row = new_product(dsn, 1)
    # Then the handler refuses to run, naming both sizes and how to fix it
    with pytest.raises(DimensionMismatchError, match="holds 384-d vectors but the embedder produces 64-d"):
        invoke_emu(sqs_event(change(row.id, op="insert")))
    assert openai_standin.embed_calls == 0


def test_a_new_embedder_in_the_settings_leaves_the_active_generation_on_its_own_model(monkeypatch, dsn, openai_standin):
    # Given generation 1 built with the 384-d local model
    row = new_product(dsn, 1)
    configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    invoke_emu(sqs_event(change(row.id, op="insert")))
    # When Emu restarts configured with a 64-d OpenAI embedder (the model for the next re-index)
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=openai_standin)
    edit_product(dsn, row.id, name="Widget One")
    failed = failed_ids(invoke_emu(sqs_event(change(row.id, version=2))))
    # Then the change is indexed with the model generation 1 records: search never breaks, nothing is refused
    assert failed == set() and openai_standin.embed_calls == 0
    assert emu.index.fetch_metadata([row.id])[row.id]["version"] == 2
    assert emu.emu.embedder.model_id == "local:all-MiniLM-L6-v2:384"


def test_a_pinecone_index_of_another_dimension_is_a_clear_error(
    monkeypatch,
    dsn,
    openai_standin,
    pinecone_standins,
):
    pinecone = start_pinecone(pinecone_standins, 1536)
    configure_emu(monkeypatch, dsn, embedder="openai", index="pinecone", openai=openai_standin, pinecone=pinecone)
    row = new_product(dsn, 1)
    with pytest.raises(DimensionMismatchError, match="dimension 1536 but the embedder produces 64-d"):
        invoke_emu(sqs_event(change(row.id, op="insert")))
    assert pinecone.calls["upsert"] == 0


# -- concurrency -----------------------------------------------------------------------------


def test_a_product_locked_by_another_worker_is_waited_for_then_read_fresh(emu, dsn, openai_standin):
    # Given another worker holds product 1's lock (as while it embeds)
    row = new_product(dsn, 1)
    holder = psycopg2.connect(dsn)
    holder.autocommit = False
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (row.id,))
    # When this worker receives a message for the same product
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(invoke_emu(sqs_event(change(row.id, op="insert")))))
    worker.start()
    # Then it waits on the lock instead of working on the product concurrently
    deadline = time.monotonic() + 10
    while not query_one(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
        assert time.monotonic() < deadline, "the worker never waited for the lock"
        time.sleep(0.02)
    assert openai_standin.embed_calls == 0
    # And when the row changes meanwhile and the lock is released, it indexes the newer state
    edit_product(dsn, row.id, name="Widget Renamed")
    holder.rollback()
    holder.close()
    worker.join(timeout=10)
    assert result == {"batchItemFailures": []}
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    assert ledger_entries(dsn)[row.id].indexed_version == 2


def test_concurrent_invocations_each_report_only_their_own_failures(emu, dsn):
    # Given six indexed products, and batches that each hold one poison message and one valid message
    rows = [new_product(dsn, n) for n in range(1, 7)]
    invoke_emu(sqs_event(*[change(r.id, op="insert") for r in rows]))
    events = [sqs_event((f"{{poison {i}", f"poison-{i}"), change(rows[i % 6].id, op="sync")) for i in range(150)]
    # When concurrent invocations in one process handle them (as the local event source does),
    # with threads switching often to widen any race
    usual = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(invoke_emu, events))
    finally:
        sys.setswitchinterval(usual)
    # Then every response names exactly its own poison message: no batch state is shared
    for event, response in zip(events, responses, strict=True):
        assert failed_ids(response) == {event["Records"][0]["messageId"]}


def test_a_warmed_up_worker_has_its_embedder_and_index_before_the_first_change(monkeypatch, dsn):
    # Given Emu's runtime as a local worker builds it (nothing built yet), counting the indexes it builds
    import refarch.generations.targets

    built: list[int] = []
    make_index = refarch.generations.targets.make_index

    def counting_make_index(*args, **kwargs):
        built.append(1)
        return make_index(*args, **kwargs)

    monkeypatch.setattr(refarch.generations.targets, "make_index", counting_make_index)
    emu_runtime = configure_emu(monkeypatch, dsn, embedder="local", index="pgvector")
    # When it warms up (the worker does, before it polls)
    emu_runtime.emu.warm_up()
    # Then the active generation's index was built then (generation 1 recorded first), and the first
    # change builds nothing more
    at_warm_up = len(built)
    assert at_warm_up >= 1
    row = new_product(dsn, 1)
    invoke_emu(sqs_event(change(row.id, op="insert")))
    assert len(built) == at_warm_up and ledger_entries(dsn)[row.id].status == "indexed"


def test_a_failed_warm_up_is_logged_and_left_for_the_first_change(monkeypatch, caplog):
    # Given a runtime whose database cannot be reached
    emu_runtime = configure_emu(monkeypatch, "postgresql://nobody@127.0.0.1:1/none", embedder="local", index="pgvector")
    # When it warms up, Then the worker is not stopped: the failure is logged, to be met again by the first change
    emu_runtime.emu.warm_up()
    assert "warm-up failed" in caplog.text
