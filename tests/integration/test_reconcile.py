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
from refarch.topology import DEFAULT_TOPOLOGY


def drain(settings) -> int:
    """Run bulk-lane Emu (where repairs go) until its queue is empty; return the messages delivered."""
    poller = EventSourcePoller(
        make_sqs_client(settings), settings.resolved_bulk_queue_url(), lane=DEFAULT_TOPOLOGY.bulk
    )
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
            "INSERT INTO product_vectors SELECT 9999, embedding, sku, name, category, price, version,"
            " content_hash, updated_at FROM product_vectors WHERE product_id = 1"
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
