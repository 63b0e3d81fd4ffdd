"""The bench plots: drawn from a results file alone, reproducible, and skipped when their numbers are missing."""

from __future__ import annotations

import json
from pathlib import Path

from refarch_local.bench_plots import PLOT_NAMES, write_plots

REPO = Path(__file__).resolve().parents[2]


def test_the_recorded_full_run_gives_the_throughput_and_search_plots_and_skips_the_timeline(tmp_path: Path):
    # Given the recorded full run (transcribed from docs/benchmarks.md: no per-edit timeline)
    results = json.loads((REPO / "bench" / "results.json").read_text())
    # When every plot is drawn
    written, skipped = write_plots(results, tmp_path)
    # Then the two it has numbers for are written, and the timeline is named as skipped
    assert sorted(p.name for p in written) == ["bench-search-latency.svg", "bench-throughput.svg"]
    assert skipped == ["edit-latency-during-bootstrap"]


def test_a_quick_run_gives_every_plot_and_the_same_results_give_the_same_files(tmp_path: Path):
    # Given a recorded quick run (with its edits' timeline)
    results = json.loads((REPO / "bench" / "results-quick.json").read_text())
    # When the plots are drawn twice
    first, skipped = write_plots(results, tmp_path / "first")
    second, _ = write_plots(results, tmp_path / "second")
    # Then every plot is written, byte for byte the same each time (no date, fixed ids)
    assert skipped == [] and len(first) == len(PLOT_NAMES)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_only_the_plots_asked_for_are_drawn(tmp_path: Path):
    results = json.loads((REPO / "bench" / "results-quick.json").read_text())
    written, skipped = write_plots(results, tmp_path, only=("throughput",))
    assert [p.name for p in written] == ["bench-throughput.svg"] and skipped == []
