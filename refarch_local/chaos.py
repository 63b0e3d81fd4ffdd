"""`refarch chaos`: faults injected into the running local stack, each scenario ending with a
full convergence check (index equals database: ids, versions, content hashes).

The stack is the real one (Postgres, SQS server, listener and Emu worker processes); Emu embeds
through the real `openai` client against the OpenAI-compatible stand-in (or, with
`--embedder bedrock`, the real boto3 client against the Bedrock stand-in), so that embedder faults
(429 / ThrottlingException, 500, timeouts) exercise the client's own retry path and scenarios run fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from refarch_local.chaos_harness import ChaosEmbedder, ScenarioResult
from refarch_local.chaos_scenarios import SCENARIOS, ChaosScenarios


def run_chaos(
    *,
    quick: bool,
    only: tuple[str, ...] = (),
    json_path: Path | None = None,
    embedder: ChaosEmbedder = "openai",
) -> list[ScenarioResult]:
    """Run the scenarios (all unless `only`) with this embedder, print the table, write JSON; return the results."""
    console = Console(stderr=True)
    harness = ChaosScenarios(
        rows=200 if quick else 2000, edits=150 if quick else 1000, console=console, embedder=embedder
    )
    scenarios = only or SCENARIOS
    try:
        harness.start()
        for name in scenarios:
            getattr(harness, name)()
    finally:
        harness.stop()
        # The stack's data and logs are only worth their disk space when something went wrong (a
        # scenario that failed, or one that raised: then fewer results than scenarios).
        if len(harness.results) == len(scenarios) and all(r.ok for r in harness.results):
            shutil.rmtree(harness.home, ignore_errors=True)
        else:
            console.print(f"[yellow]kept {harness.home} (logs in logs/)[/yellow]")
    table = Table(title=f"refarch chaos ({embedder})")
    for column in ("Scenario", "Changes", "Lost", "Stale", "Seconds", "Result", "Detail"):
        table.add_column(column)
    for r in harness.results:
        detail = " ".join([*r.problems, r.detail]).strip()
        table.add_row(
            r.name, str(r.changes), str(r.lost), str(r.stale), f"{r.seconds:.1f}", "ok" if r.ok else "FAILED", detail
        )
    console.print(table)
    if json_path:
        json_path.write_text(json.dumps([r.as_dict() for r in harness.results], indent=2))
    return harness.results
