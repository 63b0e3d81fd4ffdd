"""Reconciliation finds vectors deleted, corrupted or left behind the system's back, and repairs them."""

from __future__ import annotations

import json

from click.testing import CliRunner

import lambdas.emu
import lambdas.reconcile
from refarch import catalog
from refarch.index.id_shards import Shard
from refarch.lanes.messages import SyncMessage
from refarch.lanes.queues import make_sqs_client
from refarch.lanes.topology import DEFAULT_TOPOLOGY
from refarch.reconcile import find_drift, plan_shards, repair
from refarch_cli.commands import main
from refarch_local.event_source import EventSourcePoller
from refarch_local.stepfunctions import run_reconcile


def drain(settings) -> int:
    """Run bulk-lane Emu (where repairs go) until its queue is empty; return the messages delivered."""
    poller = EventSourcePoller(make_sqs_client(settings), settings.queue_url("bulk"), lane=DEFAULT_TOPOLOGY.bulk)
    total = 0
    while n := poller.poll_once(lambdas.emu.handler):
        total += n
    return total


def test_drift_is_reported_and_repaired_through_the_queue(emu_runtime, local_settings, conn, monkeypatch):
    # Given 40 products indexed by Emu (the function serving the bulk lane, where repairs go)
    monkeypatch.setattr(emu_runtime.settings, "emu_lane", "bulk")
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
            "INSERT INTO product_vectors (product_id, embedding, sku, name, category, price, version, content_hash,"
            " metadata) SELECT 9999, embedding, sku, name, category, price, version, content_hash,"
            " metadata FROM product_vectors WHERE product_id = 1"
        )

    # Then reconcile reports exactly that drift
    report = find_drift(emu_runtime.db, emu_runtime.index, model_id)
    assert (report.missing, report.extra, report.stale) == ([3], [9999], [5, 7])
    assert report.products == 40 and report.vectors == 40

    # When it repairs, Then the forced repairs flow through the bulk lane (one message) and Emu, and the drift is gone
    assert repair(emu_runtime.db, emu_runtime.bulk_queue, report) == 4
    assert drain(local_settings) == 1
    after = find_drift(emu_runtime.db, emu_runtime.index, model_id)
    assert after.clean and after.ledger_drift == [] and after.vectors == 40


def test_cli_reports_drift_with_a_failing_exit_code(emu_runtime, local_settings, conn, monkeypatch):
    monkeypatch.setattr(emu_runtime.settings, "emu_lane", "bulk")
    # The reconcile state machine's handlers, wired to this test's database, index and queue
    monkeypatch.setattr(lambdas.reconcile, "runtime", emu_runtime)
    catalog.seed(conn, 5)
    emu_runtime.emu.process(
        {
            str(i): SyncMessage(product_id=i, version=1, op="sync", source="bootstrap").model_dump_json()
            for i in range(1, 6)
        }
    )
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM product_vectors WHERE product_id = 2")

    # (metrics on, as for a person running it: the test session turns them off)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    result = CliRunner().invoke(main, ["reconcile", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["missing"] == 1 and report["missing_sample"] == [2] and not report["clean"]
    # And the handlers' metric records went to the home's metrics log, not into the command's output
    assert '"_aws"' not in result.output
    logged = (local_settings.home / "logs" / "metrics.log").read_text().splitlines()
    assert sum(json.loads(line).get("DriftMissing", [0])[0] for line in logged) == 1

    result = CliRunner().invoke(main, ["reconcile", "--repair", "--json"])
    assert result.exit_code == 0
    assert drain(local_settings) == 1
    result = CliRunner().invoke(main, ["reconcile", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout.strip().splitlines()[-1])["clean"]


def test_a_catalog_reconciles_shard_by_shard_whatever_its_ids(emu_runtime, local_settings, conn, monkeypatch):
    # Given products whose ids have one to seven digits, indexed by Emu
    monkeypatch.setattr(lambdas.reconcile, "runtime", emu_runtime)
    catalog.seed(conn, 12)
    with conn, conn.cursor() as cur:
        for pid in (123, 4_567, 89_012, 345_678, 1_234_567):
            cur.execute(
                "INSERT INTO products (id, sku, name, description, category, price) OVERRIDING SYSTEM VALUE"
                " VALUES (%s, %s, %s, 'A product far along the id space.', 'software', 1)",
                (pid, f"FAR-{pid}", f"Far product {pid}"),
            )
        cur.execute("SELECT id FROM products")
        ids = sorted(r[0] for r in cur.fetchall())
    messages = {pid: SyncMessage(product_id=pid, version=1, op="sync", source="bootstrap") for pid in ids}
    outcome = emu_runtime.emu.process({str(pid): m.model_dump_json() for pid, m in messages.items()})
    assert outcome.failures == {} and outcome.embedded == 17

    # Then the plan splits the id space by two-digit prefixes, plus one shard for the one-digit ids
    shards = plan_shards(emu_runtime.db)
    assert shards[0] == Shard(below=10) and [s.prefix for s in shards[1:]] == [str(p) for p in range(10, 100)]
    # And every id belongs to exactly one shard, on both sides
    owners = {pid: [s for s in shards if any(lo <= pid <= hi for lo, hi in s.ranges())] for pid in ids}
    assert all(len(found) == 1 for found in owners.values()), owners

    # When vectors go missing, stale and extra in different shards behind the system's back
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM product_vectors WHERE product_id IN (4, 345678)")
        cur.execute("UPDATE product_vectors SET content_hash = 'corrupted' WHERE product_id = 89012")
        cur.execute(
            "INSERT INTO product_vectors (product_id, embedding, sku, name, category, price, version, content_hash,"
            " metadata) SELECT 7777777, embedding, sku, name, category, price, version, content_hash,"
            " metadata FROM product_vectors WHERE product_id = 1"
        )

    # Then the fanned-out reconcile finds exactly that drift, summed over the shards
    report = run_reconcile(repair=False)
    assert (report["missing_sample"], report["stale_sample"], report["extra_sample"]) == (
        [4, 345678],
        [89012],
        [7777777],
    )
    assert report["products"] == 17 and report["vectors"] == 16 and report["shards"] == 91
    assert not report["clean"]

    # When it runs with repair and Emu drains the queue, Then the index equals the database again
    assert run_reconcile(repair=True)["repaired"] == 4
    assert drain(local_settings) == 4
    assert run_reconcile(repair=False)["clean"]


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
        QueueUrl=local_settings.dlq_url("live"),
        MessageBody=dead_letter.model_dump_json(),
        MessageGroupId=dead_letter.group_id,
        MessageDeduplicationId=dead_letter.deduplication_id,
    )
    with conn, conn.cursor() as cur:
        cur.execute("SELECT product_id, status FROM sync_state WHERE product_id IN (4, 6) ORDER BY product_id")
        assert cur.fetchall() == [(4, "indexed"), (6, "indexed")]
    # Then reconcile finds their vectors as extra (vectors of rows that no longer exist) and fails
    monkeypatch.setattr(lambdas.reconcile, "runtime", emu_runtime)
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
