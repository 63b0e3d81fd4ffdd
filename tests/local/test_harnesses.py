"""The fault harness and the benchmark run end to end on the real local stack (their quick variants)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from refarch_local.relevance import CLASSES
from refarch_local.search_bench import exact_intent_hit_at_1
from tests.conftest import SHORT_BATCHING_WINDOW

pytestmark = pytest.mark.slow


def run_refarch(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, **SHORT_BATCHING_WINDOW}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "refarch_cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_quick_chaos_with_bedrock_loses_nothing_when_throttled_timed_out_or_killed(tmp_path: Path):
    # Given the whole local stack embedding with Bedrock (Titan: one request per row) through boto3
    # and the Bedrock stand-in; When the two scenarios that hit the provider run (a third of the calls
    # throttled, failing or hanging; every Emu worker killed while a batch waits for Bedrock)
    out = tmp_path / "chaos-bedrock.json"
    scenarios = ("--scenario", "emu_killed", "--scenario", "embedder_faults")
    result = run_refarch("chaos", "--quick", "--embedder", "bedrock", *scenarios, "--json", str(out), timeout=600)
    # Then each ends converged: nothing lost, nothing stale
    assert out.exists(), result.stderr[-5000:]
    ran = json.loads(out.read_text())
    assert [s["scenario"] for s in ran] == ["emu worker killed mid-batch", "embedder failing 30% of calls"]
    assert [s for s in ran if not s["ok"]] == [], result.stderr[-3000:]
    assert ran[0]["detail"].startswith("2 of 2 kills made mid-batch")
    # And Bedrock's throttling was among the faults injected
    assert "'rate_limit'" in ran[1]["detail"]
    assert result.returncode == 0


def test_quick_chaos_loses_nothing_in_any_scenario(tmp_path: Path):
    # Given the whole local stack, When every fault scenario runs (listener and worker killed, embedder
    # failing 30% of calls, duplicates and reordering, database restart, a poison message, the queue
    # server killed with deletes in flight, mixed writers with random kills)
    out = tmp_path / "chaos.json"
    result = run_refarch("chaos", "--quick", "--json", str(out), timeout=900)
    # Then each ends converged: nothing lost, nothing stale, and the poison message is in the DLQ
    assert out.exists(), result.stderr[-5000:]
    scenarios = json.loads(out.read_text())
    assert [s["scenario"] for s in scenarios] == [
        "listener killed during edits",
        "emu worker killed mid-batch",
        "embedder failing 30% of calls",
        "duplicate and reordered deliveries, concurrent workers",
        "database restarted under load",
        "poison message",
        "queue server killed with deletes in flight",
        "mixed writers with random kills",
    ]
    failed = [s for s in scenarios if not s["ok"]]
    assert failed == [], result.stderr[-3000:]
    assert all(s["changes"] > 0 for s in scenarios)
    assert "'timeout'" in scenarios[2]["detail"] or "'rate_limit'" in scenarios[2]["detail"]
    assert "DLQ depth 1" in scenarios[5]["detail"]
    # The concurrent deliveries ran, and none of them raised or failed a record (no fault was injected)
    assert re.match(r"[1-9]\d* batches delivered, 0 errors", scenarios[3]["detail"]), scenarios[3]["detail"]
    # Both Emu kills were made while a batch was in flight
    assert scenarios[1]["detail"].startswith("2 of 2 kills made mid-batch")
    # The deletes were in the queue when its server died, and the random faults did happen
    assert re.match(r"[1-9]\d* deletes among [1-9]\d* queued messages lost with the server", scenarios[6]["detail"])
    assert scenarios[7]["detail"].startswith("faults: ") and scenarios[7]["changes"] > 0
    assert result.returncode == 0
    # And the terminal shows progress and the table, never a metric record or a JSON log line (those
    # go to log files)
    assert '"_aws"' not in result.stdout + result.stderr
    assert '{"level":' not in result.stdout + result.stderr


def test_quick_bench_reports_every_measure_and_embeds_nothing_twice(tmp_path: Path):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    result = run_refarch("bench", "--quick", "--json", str(out), "--markdown", str(md), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["bootstrap"]["rows"] == 300 and report["bootstrap"]["rows_per_s"] > 0
    assert report["raw_model"]["texts_per_s_batch_10"] > 0
    # The bootstrap went through the bulk lane: 3 messages of 100 products, requests of up to 64 texts
    assert report["bootstrap"]["sqs_messages"] == 3
    assert 5 <= report["bootstrap"]["embed_calls"] <= 10
    # Live edits made while a bootstrap was indexed were all found at their new version
    busy = report["change_latency_during_bootstrap_ms"]
    assert busy["edits"] >= 1 and busy["measured"] == busy["edits"] and busy["not_found"] == 0
    # ... each one on the timeline the plot draws, next to the bootstrap's progress up to every row
    assert len(busy["timeline"]) == busy["edits"] and all(ms is not None for _, ms in busy["timeline"])
    assert busy["bootstrap_progress"][-1][1] >= 300
    # The plots are written next to the tables
    assert sorted(p.name for p in tmp_path.glob("bench-*.svg")) == [
        "bench-edit-latency-during-bootstrap.svg",
        "bench-search-latency.svg",
        "bench-throughput.svg",
    ]
    # Every edit was measured on the search path: found at its new version, none given up on
    latency = report["change_latency_ms"]
    assert latency["edits"] == 20 and latency["measured"] == 20 and latency["not_found"] == 0
    assert set(report["search_latency"]) == {"300", "2000"}
    assert all(set(by_mode) == {"hybrid", "semantic", "lexical"} for by_mode in report["search_latency"].values())
    # Relevance was measured for every query class in every mode, and a repeated query cost no embedding
    relevance = report["search"]["relevance"]
    assert set(relevance) == set(CLASSES)
    assert all(set(by_mode) == {"hybrid", "semantic", "lexical"} for by_mode in relevance.values())
    # ... on the stored query set (bench/relevance_queries.json, the same as a full run's), hybrid is never worse
    # than its best part in any class, in hit@1 or nDCG@10, and meets the bar on exact intent and misspellings
    below = [
        (cls, metric, modes["hybrid"][metric], max(modes["semantic"][metric], modes["lexical"][metric]))
        for cls, modes in relevance.items()
        for metric in ("hit_at_1", "ndcg_at_10")
        if modes["hybrid"][metric] < max(modes["semantic"][metric], modes["lexical"][metric])
    ]
    assert below == [], below
    assert exact_intent_hit_at_1(relevance, "hybrid") >= 0.9
    assert relevance["misspelled"]["hybrid"]["ndcg_at_10"] >= 0.8
    cache = report["search"]["query_cache"]
    assert cache["repeated"]["embedding_requests"] == 0 < cache["fresh"]["embedding_requests"]
    assert "| sku (20) |" in md.read_text()
    # Re-running the bootstrap or re-delivering every row computes no embedding (the cost guarantee)
    assert report["rebootstrap_unchanged"]["bootstrap_embeddings"] == 0
    assert report["rebootstrap_unchanged"]["redelivery_embeddings"] == 0
    # And Emu really received every re-delivered message, and skipped each as already indexed
    assert report["rebootstrap_unchanged"]["redelivered"] == 300
    # Re-delivered as 3 bulk messages of 100 products: Emu received them and skipped every product
    assert report["rebootstrap_unchanged"]["redelivery_messages"] == 3
    assert report["rebootstrap_unchanged"]["redelivery_emu_received"] == 3
    assert report["rebootstrap_unchanged"]["redelivery_emu_skipped"] == 300
    assert {"emu", "emu-bulk", "listener", "sqs", "web"} <= set(report["peak_memory_mb"])
    # Where the bootstrap's CPU went: Emu and Postgres did work; the parts add up to the total.
    cpu = report["bootstrap_cpu_ms_per_row"]
    total = next(value for key, value in cpu.items() if key.startswith("all"))
    assert cpu["emu-bulk"] > 0 and cpu["postgres"] > 0
    assert abs(sum(v for k, v in cpu.items() if not k.startswith("all")) - total) < 0.1
    assert "| Pipeline / best raw (batches of 64) |" in md.read_text()
    assert report["raw_model"]["bulk_processes"] >= 1 and report["raw_model"]["ratio"] > 0
    # And the terminal shows progress and the tables, never a metric record or a JSON log line
    assert '"_aws"' not in result.stdout + result.stderr
    assert '{"level":' not in result.stdout + result.stderr


def test_quick_chaos_on_the_articles_source_loses_nothing(tmp_path: Path):
    # Given the whole local stack syncing the second example (uuid keys, changed keys, metadata-only
    # and unnamed-column edits); When its processes are killed, the queue server dies with deletes in
    # flight, and concurrent workers get duplicated and reordered deliveries
    out = tmp_path / "chaos-articles.json"
    scenarios = ("listener_killed", "emu_killed", "queue_killed_with_deletes_in_flight", "duplicates_and_reordering")
    chosen = [arg for name in scenarios for arg in ("--scenario", name)]
    result = run_refarch("chaos", "--quick", "--source", "articles", *chosen, "--json", str(out), timeout=600)
    # Then each ends converged: the index holds exactly the articles, nothing lost, nothing stale
    assert out.exists(), result.stderr[-5000:]
    ran = json.loads(out.read_text())
    assert len(ran) == 4 and [s for s in ran if not s["ok"]] == [], result.stderr[-3000:]
    assert all(s["changes"] > 0 and s["lost"] == 0 and s["stale"] == 0 for s in ran)
    assert ran[1]["detail"].startswith("2 of 2 kills made mid-batch")
    assert result.returncode == 0
