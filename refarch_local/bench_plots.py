"""The `refarch bench` plots: what the results table says, as pictures (docs/benchmarks.md shows them).

Drawn from the results JSON alone (`refarch bench --json`, or `refarch bench plot --from F`), so a
saved run can be re-plotted without running anything. A plot whose numbers a results file lacks
(an older run, a `--reindex-only` run) is skipped and named in the returned list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# matplotlib's pyplot keeps figures in a global registry and picks a GUI backend; the object API
# with the Agg canvas needs neither (no display, no leaked figures).
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

SEARCH_MODE_COLOURS = {"hybrid": "#3b6fb6", "semantic": "#7fa7d9", "lexical": "#c9c9c9"}
PIPELINE_COLOUR, MODEL_COLOUR = "#d9822b", "#3b6fb6"
FOUND_COLOUR, NOT_FOUND_COLOUR, PROGRESS_COLOUR = "#3b6fb6", "#c23b22", "#8a8a8a"


@dataclass(frozen=True)
class Plot:
    """One picture: its name and the function drawing it from the results (None: the numbers are missing)."""

    name: str
    draw: Callable[[dict[str, Any]], Figure | None]

    @property
    def file_name(self) -> str:
        """The SVG file it is written to."""
        return f"bench-{self.name}.svg"


def _run_label(results: dict[str, Any]) -> str:
    """A subtitle saying which run the numbers come from."""
    size = "quick run (small sizes)" if results.get("quick") else "full run"
    return f"refarch bench, {size} — {results.get('machine', 'machine not recorded')}"


def _figure(title: str, results: dict[str, Any], *, width: float = 8.0, height: float = 4.2) -> Figure:
    """A white figure with a title and the run as a subtitle, in the size docs pages show well."""
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    figure.suptitle(title, fontsize=13, fontweight="bold")
    figure.supxlabel(_run_label(results), fontsize=8, color="#666666")
    return figure


def edit_latency_during_bootstrap(results: dict[str, Any]) -> Figure | None:
    """Each live edit's commit → searchable latency over the bootstrap's time, with the rows indexed so far."""
    busy = results.get("change_latency_during_bootstrap_ms") or {}
    timeline = busy.get("timeline")
    if not timeline:
        return None
    figure = _figure("Live edits → searchable while a bootstrap runs", results, height=4.6)
    latency_axis = figure.add_subplot()
    found = [(t, ms) for t, ms in timeline if ms is not None]
    missed = [t for t, ms in timeline if ms is None]
    latency_axis.scatter(
        [t for t, _ in found], [ms for _, ms in found], s=12, color=FOUND_COLOUR, label="edit → searchable", zorder=3
    )
    if missed:
        ceiling = 1000 * busy.get("not_found_after_s", 30)
        latency_axis.scatter(
            missed,
            [ceiling] * len(missed),
            marker="x",
            color=NOT_FOUND_COLOUR,
            label=f"not found within {busy.get('not_found_after_s', 30)} s",
            zorder=3,
        )
    if busy.get("p95") is not None:
        latency_axis.axhline(busy["p95"], color=FOUND_COLOUR, linestyle="--", linewidth=1)
        latency_axis.annotate(
            f"p95 {busy['p95']:.0f} ms",
            (1, busy["p95"]),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color=FOUND_COLOUR,
        )
    latency_axis.set_yscale("log")
    latency_axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    latency_axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    latency_axis.yaxis.set_minor_formatter(NullFormatter())
    latency_axis.set_xlabel("seconds since the bootstrap started")
    latency_axis.set_ylabel("commit → searchable (ms, log scale)")
    latency_axis.grid(True, which="major", alpha=0.3)
    handles, labels = latency_axis.get_legend_handles_labels()
    progress = busy.get("bootstrap_progress")
    if progress:
        rows_axis = latency_axis.twinx()
        rows_axis.plot(
            [t for t, _ in progress],
            [rows for _, rows in progress],
            color=PROGRESS_COLOUR,
            linewidth=1.5,
            label="rows indexed (bootstrap, bulk lane)",
        )
        rows_axis.set_ylabel("rows indexed", color=PROGRESS_COLOUR)
        rows_axis.tick_params(axis="y", colors=PROGRESS_COLOUR)
        more_handles, more_labels = rows_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    # Head room on the log scale for the legend above the highest point.
    low, high = latency_axis.get_ylim()
    latency_axis.set_ylim(low, high * 3)
    if progress:
        rows_axis.set_ylim(0, max(rows for _, rows in progress) * 1.45)
    latency_axis.legend(handles, labels, loc="upper left", ncol=len(labels), fontsize=8, framealpha=0.9)
    return figure


def throughput_against_raw_model(results: dict[str, Any]) -> Figure | None:
    """Bootstrap throughput end to end next to the raw model's on the same texts."""
    bootstrap, raw = results.get("bootstrap"), results.get("raw_model")
    if not bootstrap or not raw:
        return None
    batch = raw["emu_batch_size"]
    bars = [
        ("bootstrap, end to end\n(bulk lane → Emu → index)", bootstrap["rows_per_s"], PIPELINE_COLOUR),
        (f"raw model,\nbatches of {batch} (Emu's)", raw["texts_per_s_emu_batch"], MODEL_COLOUR),
        ("raw model,\nbatches of 10", raw["texts_per_s_batch_10"], MODEL_COLOUR),
    ]
    if raw.get("bulk_processes", 1) > 1:
        bars.insert(
            2,
            (
                f"raw model, batches of {batch},\n{raw['bulk_processes']} processes",
                raw["texts_per_s_emu_batch_bulk_processes"],
                MODEL_COLOUR,
            ),
        )
    figure = _figure(f"Bootstrap throughput against the raw model ({bootstrap['rows']:,} rows)", results)
    axis = figure.add_subplot()
    labels = [label for label, _, _ in bars]
    values = [value for _, value, _ in bars]
    drawn = axis.barh(labels, values, color=[colour for _, _, colour in bars])
    axis.bar_label(drawn, labels=[f"{v:.1f}/s" for v in values], padding=4, fontsize=9)
    axis.invert_yaxis()
    axis.set_xlabel("texts (rows) per second")
    axis.set_xlim(0, max(values) * 1.3)
    axis.grid(True, axis="x", alpha=0.3)
    axis.set_title(f"pipeline / best raw = {raw['ratio']:.2f} (target ≥ 0.90)", fontsize=10)
    return figure


def search_latency_by_size(results: dict[str, Any]) -> Figure | None:
    """Search p50 and p95 per mode at each catalog size (query embedding included)."""
    by_size = results.get("search_latency")
    if not by_size:
        return None
    sizes = list(by_size)
    modes = [mode for mode in SEARCH_MODE_COLOURS if all(mode in by_size[size] for size in sizes)]
    figure = _figure("Search latency per mode and catalog size", results)
    axes = figure.subplots(1, 2, sharey=True)
    width = 0.8 / len(modes)
    for axis, percentile in zip(axes, ("p50_ms", "p95_ms"), strict=True):
        for i, mode in enumerate(modes):
            values = [by_size[size][mode][percentile] for size in sizes]
            drawn = axis.bar(
                [s + (i - (len(modes) - 1) / 2) * width for s in range(len(sizes))],
                values,
                width,
                color=SEARCH_MODE_COLOURS[mode],
                label=mode,
            )
            axis.bar_label(drawn, labels=[f"{v:.0f}" for v in values], padding=2, fontsize=8)
        axis.set_xticks(range(len(sizes)), [f"{int(size):,} products" for size in sizes])
        axis.set_title(percentile.removesuffix("_ms"), fontsize=11)
        axis.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("ms per search (query embedding included)")
    axes[1].axhline(50, color="#c23b22", linestyle="--", linewidth=1)
    axes[1].annotate(
        "hybrid p95 target 50 ms",
        (1, 50),
        xycoords=("axes fraction", "data"),
        xytext=(-4, 3),
        textcoords="offset points",
        ha="right",
        fontsize=8,
        color="#c23b22",
    )
    axes[0].legend(loc="upper left", fontsize=8)
    return figure


PLOTS = (
    Plot("edit-latency-during-bootstrap", edit_latency_during_bootstrap),
    Plot("throughput", throughput_against_raw_model),
    Plot("search-latency", search_latency_by_size),
)
PLOT_NAMES = tuple(plot.name for plot in PLOTS)


def write_plots(
    results: dict[str, Any], directory: Path, *, only: tuple[str, ...] = PLOT_NAMES
) -> tuple[list[Path], list[str]]:
    """Draw the plots named in `only` that the results have numbers for into `directory`; return the files
    written and the names of those skipped.

    SVGs are written without a date and with a fixed id salt, so the same results give the same file
    (a regenerated plot shows in a diff only when its numbers changed).
    """
    directory.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for plot in PLOTS:
        if plot.name not in only:
            continue
        figure = plot.draw(results)
        if figure is None:
            skipped.append(plot.name)
            continue
        path = directory / plot.file_name
        with rc_context({"svg.hashsalt": "refarch-bench"}):
            figure.savefig(path, format="svg", metadata={"Date": None}, facecolor="white")
        written.append(path)
    return written, skipped
