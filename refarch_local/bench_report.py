"""The `refarch bench` report: the results as a table on the terminal and as markdown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from refarch_local import bench_reindex
from refarch_local.process_stats import machine_description


def publish(
    results: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
    *,
    json_path: Path | None,
    markdown_path: Path | None,
) -> dict[str, Any]:
    """A benchmark's results with the machine they ran on: printed as markdown tables, and written as JSON and
    markdown where asked (`refarch bench relevance | search | budget`)."""
    results["machine"] = machine_description()
    table = f"Machine: {results['machine']}\n\n" + markdown(results)
    print(table)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
    if markdown_path:
        markdown_path.write_text(table)
    return results


def render(results: dict[str, Any], console: Console) -> str:
    """Print a table and return the same as markdown."""
    rows = _pipeline_rows(results) if "raw_model" in results else []
    if "reindex" in results:
        rows += bench_reindex.render_rows(results["reindex"])
    table = Table(title=f"refarch bench — {results['machine']}")
    for column in ("Measure", "Result", "Target"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    lines = [f"Machine: {results['machine']}", "", "| Measure | Result | Target |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b_} | {c} |" for a, b_, c in rows]
    if "search" not in results:
        return "\n".join(lines) + "\n"
    from refarch_local.search_bench import markdown as search_markdown

    search_tables = search_markdown(results["search"])
    console.print(search_tables)
    return "\n".join(lines) + "\n\n" + search_tables


def _pipeline_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The table's rows for the full run's measurements."""
    b, raw, lat = results["bootstrap"], results["raw_model"], results["change_latency_ms"]
    busy = results["change_latency_during_bootstrap_ms"]
    re, search, mem = results["rebootstrap_unchanged"], results["search_latency"], results["peak_memory_mb"]
    cpu = results["bootstrap_cpu_ms_per_row"]
    batch = raw["emu_batch_size"]
    rows = [
        (
            "Bootstrap throughput (end to end, bulk lane)",
            f"{b['rows_per_s']} rows/s ({b['rows']} rows in {b['seconds']} s)",
            "",
        ),
        (
            f"Bootstrap of {b['rows']} rows: embedding requests / SQS messages",
            f"{b['embed_calls']} / {b['sqs_messages']} ({b['texts_per_call']} texts per request)",
            "≤ 200 each",
        ),
        ("Raw model, same texts, batches of 10, one process", f"{raw['texts_per_s_batch_10']} texts/s", ""),
        (
            f"Raw model, same texts, batches of {batch} (Emu's), one process",
            f"{raw['texts_per_s_emu_batch']} texts/s",
            "",
        ),
        (
            f"Raw model, same texts, batches of {batch}, {raw['bulk_processes']} process(es) (as the bulk workers)",
            f"{raw['texts_per_s_emu_batch_bulk_processes']} texts/s",
            "",
        ),
        (f"Pipeline / best raw (batches of {batch})", f"{raw['ratio']}", "≥ 0.90"),
        (
            "Live edit → searchable during a bootstrap p50 / p95 / max",
            f"{busy['p50']} / {busy['p95']} / {busy['max']} ms "
            f"({busy['measured']} of {busy['edits']} edits found, {busy['pace_per_s']}/s, while {b['rows']} rows "
            f"were bootstrapped in {busy['bootstrap_seconds']} s; {busy['not_found']} not found within "
            f"{busy['not_found_after_s']} s)",
            "p95 ≤ 1 s",
        ),
        (
            "Change → searchable when idle p50 / p95 / p99",
            f"{lat['p50']} / {lat['p95']} / {lat['p99']} ms "
            f"({lat['measured']} of {lat['edits']} edits found by search, {lat['pace_per_s']}/s; "
            f"{lat['not_found']} not found within {lat['not_found_after_s']} s)",
            "p95 ≤ 500 ms",
        ),
    ]
    for size, by_mode in search.items():
        for mode, s in by_mode.items():
            target = "p95 ≤ 50 ms" if mode == "hybrid" else ""
            rows.append((f"Search p50 / p95 at {size} products, {mode}", f"{s['p50_ms']} / {s['p95_ms']} ms", target))
    rows.append(
        (
            "Re-bootstrap, nothing changed",
            f"{re['bootstrap_embeddings']} embeddings, "
            f"{re['bootstrap_enqueued']} enqueued, {re['bootstrap_seconds']} s",
            "0 embeddings",
        )
    )
    rows.append(
        (
            "Re-delivery of every row (bulk lane)",
            f"{re['redelivery_embeddings']} embeddings, {re['redelivered']} rows in {re['redelivery_messages']} "
            f"messages sent, {re['redelivery_emu_received']} received and {re['redelivery_emu_skipped']} rows "
            f"skipped by Emu, in {re['redelivery_seconds']} s",
            "0 embeddings",
        )
    )
    for name, ms in cpu.items():
        rows.append((f"Bootstrap CPU per row: {name}", f"{ms} ms", ""))
    for name, mb in mem.items():
        rows.append((f"Peak memory: {name}", f"{mb} MB", ""))
    return rows
