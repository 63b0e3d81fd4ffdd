"""Powertools logger, metrics and tracer shared by every runtime (one place, module level)."""

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.constants import MAX_METRICS

SERVICE = "refarch"
BASE_NAMESPACE = "Refarch"
# On AWS each stage's runtimes are told their stage's namespace (`stage_namespace`, set by the CDK app), so
# two stages in one account never add to each other's metrics or trip each other's alarms; local runs use
# the base namespace.
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or BASE_NAMESPACE


def stage_namespace(stage: str) -> str:
    """The CloudWatch namespace of one stage's metrics (its runtimes write it, its alarms read it)."""
    return f"{BASE_NAMESPACE}/{stage}"


class EmfOutput(AmazonCloudWatchEMFProvider):
    """Powertools' embedded-metric-format provider, whose records can go to a file instead of stdout.

    On AWS (no file set) it is Powertools' provider unchanged: CloudWatch Logs reads the records from
    stdout. A local tool's stdout is a person's terminal (or a command's JSON output), so locally the
    records are appended to a log file instead. Powertools prints a set on its own in two places:
    at each flush, and when a metric reaches 100 values; both are taken over here when a file is set.

    Adding and flushing hold one lock: the local event source runs several invocations of a handler in
    threads of one process, and a flush serializing the set while another thread adds to it would fail
    ("dictionary changed size during iteration"). On AWS a process runs one invocation at a time.
    """

    def __init__(self, **sets: Any) -> None:
        super().__init__(**sets)
        self.path: Path | None = None
        self._writing = threading.Lock()
        self._sets = threading.RLock()

    def write_to(self, path: Path) -> None:
        """Append every record to `path` from now on (the file is created at the first record)."""
        self.path = path.resolve()

    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = 60) -> None:
        """Add a value; a set about to reach Powertools' limit is written first (else Powertools prints it)."""
        with self._sets:
            self._add_metric(name, unit, value, resolution)

    def _add_metric(self, name: str, unit: Any, value: float, resolution: Any) -> None:
        if self.path is not None:
            values = self.metric_set.get(name, {}).get("Value", [])
            full = len(values) >= MAX_METRICS - 1 or (
                name not in self.metric_set and len(self.metric_set) >= MAX_METRICS - 1
            )
            if full:
                self._write(self.serialize_metric_set())
                self.metric_set.clear()  # as Powertools does: the dimensions stay for the next values
        super().add_metric(name=name, unit=unit, value=value, resolution=resolution)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        """Write the set to the file (or, with no file, print it as Powertools does); then start a new one."""
        with self._sets:
            self._flush_metrics(raise_on_empty_metrics)

    def _flush_metrics(self, raise_on_empty_metrics: bool) -> None:
        if self.path is None:
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
            return
        if self.metric_set or raise_on_empty_metrics:
            record = self.serialize_metric_set()  # raises on an empty set when asked to, as Powertools does
            if not is_metrics_disabled():
                self._write(record)
        # Cleared even when disabled: Powertools keeps a disabled set, which then grows with every
        # invocation until its 100-value limit prints it.
        self.clear_metrics()

    def _write(self, record: Mapping[str, object]) -> None:
        assert self.path is not None
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._writing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One unbuffered append per record: the local stack's processes share the file, and an
            # O_APPEND write lands whole.
            with self.path.open("ab", buffering=0) as out:
                out.write(line)


logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# Installed before any handler module decorates itself with `metrics.log_metrics` (the decorator
# binds the provider it finds), sharing the sets Metrics keeps for every instance.
metrics.provider = EmfOutput(
    metric_set=metrics.metric_set,
    dimension_set=metrics.dimension_set,
    metadata_set=metrics.metadata_set,
    default_dimensions=metrics.default_dimensions,
    namespace=NAMESPACE,
    service=SERVICE,
)
tracer = Tracer(service=SERVICE)


def metrics_to_file(path: Path) -> None:
    """Append this process's metric records to a file instead of printing them (local tools)."""
    provider = metrics.provider
    assert isinstance(provider, EmfOutput)
    provider.write_to(path)


def log_to_stderr() -> None:
    """Send this process's log lines (Powertools writes to stdout) to stderr: a command's stdout is its output."""
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(_CurrentStderr())


def log_to_file(path: Path) -> None:
    """Append this process's log lines to a file (a supervisor whose terminal shows progress bars)."""
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        path.parent.mkdir(parents=True, exist_ok=True)
        handler.setStream(path.open("a", encoding="utf-8", buffering=1))


class _CurrentStderr:
    """Whatever sys.stderr is at the moment of writing (a test runner may swap it in and out)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
