"""Reconciliation finds vectors deleted, corrupted or left behind the system's back, and repairs them."""

from __future__ import annotations

import json

from click.testing import CliRunner

import lambdas.emu
from refarch import catalog
from refarch.cli import main
from refarch.local.event_source import EventSourcePoller
from refarch.messages import SyncMessage
from refarch.queue import make_sqs_client
from refarch.reconcile import find_drift, repair


def drain(settings) -> int:
    poller = EventSourcePoller(make_sqs_client(settings), settings.resolved_queue_url())
    total = 0
    while n := poller.poll_once(lambdas.emu.handler):
        total += n
    return total


def test_drift_is_reported_and_repaired_through_the_queue(emu_runtime, local_settings, conn):
    # Given 40 products indexed by Emu
    catalog.seed(conn, 40)
    outcome = emu_runtime.emu.process(
        {
            str(i): SyncMessage(product_id=i, version=1, op="sync", source="bootstrap").model_dump_json()
            for i in range(1, 41)
        }
    )
    assert outcome.failures == {} and outcome.embedded == 40
    model_id = emu_runtime.embedder.model_id
    assert find_drift(emu_runtime.db, emu_runtime.index, model_id).clean

    # When vectors are deleted, corrupted, re-versioned and invented behind the system's back
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM product_vectors WHERE product_id = 3")
        cur.execute("UPDATE product_vectors SET content_hash = 'corrupted' WHERE product_id = 5")
        cur.execute("UPDATE product_vectors SET version = 99 WHERE product_id = 7")
        cur.execute(
            "INSERT INTO product_vectors SELECT 9999, embedding, sku, name, category, price, version,"
            " content_hash, updated_at FROM product_vectors WHERE product_id = 1"
        )

    # Then reconcile reports exactly that drift
    report = find_drift(emu_runtime.db, emu_runtime.index, model_id)
    assert (report.missing, report.extra, report.stale) == ([3], [9999], [5, 7])
    assert report.products == 40 and report.vectors == 40

    # When it repairs, Then the forced messages flow through the queue and Emu, and the drift is gone
    assert repair(emu_runtime.db, emu_runtime.queue, report) == 4
    assert drain(local_settings) == 4
    after = find_drift(emu_runtime.db, emu_runtime.index, model_id)
    assert after.clean and after.ledger_drift == [] and after.vectors == 40


def test_cli_reports_drift_with_a_failing_exit_code(emu_runtime, local_settings, conn, monkeypatch):
    catalog.seed(conn, 5)
    emu_runtime.emu.process(
        {
            str(i): SyncMessage(product_id=i, version=1, op="sync", source="bootstrap").model_dump_json()
            for i in range(1, 6)
        }
    )
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM product_vectors WHERE product_id = 2")
    monkeypatch.setattr("refarch.runtime.Runtime.embedder", emu_runtime.embedder)

    result = CliRunner().invoke(main, ["reconcile", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["missing"] == 1 and report["missing_sample"] == [2] and not report["clean"]

    result = CliRunner().invoke(main, ["reconcile", "--repair", "--json"])
    assert result.exit_code == 0
    assert drain(local_settings) == 1
    result = CliRunner().invoke(main, ["reconcile", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout.strip().splitlines()[-1])["clean"]


def test_a_delete_lost_or_dead_lettered_after_indexing_is_found_as_extra_and_repaired(
    emu_runtime, local_settings, conn, monkeypatch
):
    # Given 10 products indexed by Emu: the ledger says `indexed` for each
    catalog.seed(conn, 10)
    outcome = emu_runtime.emu.process(
        {
            str(i): SyncMessage(product_id=i, version=1, op="sync", source="bootstrap").model_dump_json()
            for i in range(1, 11)
        }
    )
    assert outcome.failures == {} and outcome.embedded == 10
    # When products 4 and 6 are deleted, and neither delete reaches Emu: 4's message is lost (its
    # outbox row is marked sent, the message never arrives), 6's is dead-lettered (it sits in the
    # DLQ, where SQS moves a message after maxReceiveCount failed receives)
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM products WHERE id IN (4, 6)")
        cur.execute("UPDATE sync_outbox SET enqueued_at = now() WHERE product_id IN (4, 6)")
    dead_letter = SyncMessage(product_id=6, version=2, op="delete", source="change")
    make_sqs_client(local_settings).send_message(
        QueueUrl=local_settings.resolved_dlq_url(),
        MessageBody=dead_letter.model_dump_json(),
        MessageGroupId=dead_letter.group_id,
        MessageDeduplicationId=dead_letter.deduplication_id,
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT product_id, status FROM sync_state WHERE product_id IN (4, 6) ORDER BY product_id")
        assert cur.fetchall() == [(4, "indexed"), (6, "indexed")]
    # Then reconcile finds their vectors as extra (vectors of rows that no longer exist) and fails
    monkeypatch.setattr("refarch.runtime.Runtime.embedder", emu_runtime.embedder)
    result = CliRunner().invoke(main, ["reconcile", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["extra"], report["extra_sample"], report["missing"], report["stale"]) == (2, [4, 6], 0, 0)
    # When it repairs, Then forced deletes flow through the queue and Emu: the vectors are gone,
    # the ledger says deleted, and reconcile is clean
    result = CliRunner().invoke(main, ["reconcile", "--repair", "--json"])
    assert result.exit_code == 0, result.output
    assert drain(local_settings) == 2
    assert sorted(pid for pid, _ in emu_runtime.index.scan()) == [1, 2, 3, 5, 7, 8, 9, 10]
    with conn, conn.cursor() as cur:
        cur.execute("SELECT product_id, status FROM sync_state WHERE product_id IN (4, 6) ORDER BY product_id")
        assert cur.fetchall() == [(4, "deleted"), (6, "deleted")]
    after = find_drift(emu_runtime.db, emu_runtime.index, emu_runtime.embedder.model_id)
    assert after.clean and after.ledger_drift == [] and after.vectors == 8
