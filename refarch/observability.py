"""Powertools logger, metrics and tracer shared by every runtime (one place, module level)."""

import logging
import sys
from pathlib import Path

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "refarch"
NAMESPACE = "Refarch"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)


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
