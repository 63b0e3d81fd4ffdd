"""What local tools put on a terminal: metric records go to a log file, and status lines end their line."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from rich.console import Console

from refarch.observability import EmfOutput
from refarch_local.demo import show_status_until_stopped


def emf_output() -> EmfOutput:
    """A provider of its own (the module-level one is shared by the whole test session)."""
    return EmfOutput(namespace="Test", service="test")


def records(path: Path) -> list[dict[str, Any]]:
    """The EMF records written to a metrics log."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_with_a_file_every_invocation_appends_one_record_and_nothing_is_printed(tmp_path, capsys, monkeypatch):
    # Given metrics on and a handler whose metrics go to a local file
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    output = emf_output()
    output.write_to(tmp_path / "logs" / "metrics.log")

    @output.log_metrics
    def handler(event: dict, context: object) -> None:
        output.add_metric(name="Embedded", unit=MetricUnit.Count, value=event["n"])

    # When it runs 150 times (past Powertools' 100 values, where it would print on its own)
    for n in range(150):
        handler({"n": n}, None)
    # Then each invocation is one record in the file, and the terminal saw none of them
    written = records(tmp_path / "logs" / "metrics.log")
    assert [r["Embedded"] for r in written] == [[float(n)] for n in range(150)]
    assert capsys.readouterr().out == ""


def test_a_metric_reaching_100_values_in_one_set_is_written_not_printed(tmp_path, capsys, monkeypatch):
    # Given metrics on, going to a file
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    output = emf_output()
    output.write_to(tmp_path / "metrics.log")
    # When one invocation adds 250 values of one metric
    for n in range(250):
        output.add_metric(name="Chunks", unit=MetricUnit.Count, value=n)
    output.flush_metrics()
    # Then every value is in the file, in order, in sets Powertools accepts (under 100 values), and none was printed
    written = records(tmp_path / "metrics.log")
    assert [v for r in written for v in r["Chunks"]] == list(range(250))
    assert all(len(r["Chunks"]) < 100 for r in written)
    assert capsys.readouterr().out == ""


def test_disabled_metrics_are_dropped_at_each_flush_not_kept_until_printed(tmp_path, capsys, monkeypatch):
    # Given metrics disabled, with a file set
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    output = emf_output()
    output.write_to(tmp_path / "metrics.log")
    # When 150 invocations add a value each
    for n in range(150):
        output.add_metric(name="Embedded", unit=MetricUnit.Count, value=n)
        output.flush_metrics()
    # Then nothing is written or printed, and nothing piles up
    assert not (tmp_path / "metrics.log").exists()
    assert capsys.readouterr().out == ""
    assert output.metric_set == {}


def test_without_a_file_records_are_printed_as_cloudwatch_reads_them(capsys, monkeypatch):
    # Given metrics on and no file (as on AWS)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    output = emf_output()
    # When a set is flushed, Then it is one EMF line on stdout
    output.add_metric(name="Embedded", unit=MetricUnit.Count, value=3)
    output.flush_metrics()
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["Embedded"] == [3.0]


class StatusSource:
    """Enough of a Supervisor for the status display: a status, counting how often it is asked."""

    def __init__(self) -> None:
        self.fatal = threading.Event()
        self.asked = 0

    def status(self) -> dict[str, Any]:
        self.asked += 1
        return {"products": 3, "indexed": 3, "pending": 0, "failed": 0, "oldest_pending_seconds": 0.0}


@pytest.mark.parametrize("terminal", [False, True], ids=["log file", "terminal"])
def test_the_last_status_line_ends_before_the_next_message(terminal: bool):
    # Given the demo's status display writing to a log file (or a terminal)
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, color_system=None, width=200)
    stop, source = threading.Event(), StatusSource()
    # When it runs for 1.8 s, and the demo then says it is stopping
    threading.Timer(1.8, stop.set).start()
    assert show_status_until_stopped(source, console, stop) == 0  # type: ignore[arg-type]
    console.print("stopping…")
    # Then a terminal's line was redrawn twice a second; a log file's, which Rich draws once at the end,
    # asked for the status once, then
    if terminal:
        assert source.asked >= 2
    else:
        assert source.asked == 1
    # And "stopping…" starts a line of its own, after the status line
    lines = out.getvalue().splitlines()
    assert lines[-1].endswith("stopping…") and not lines[-1].startswith("products")
    assert "products 3" in lines[-2]
