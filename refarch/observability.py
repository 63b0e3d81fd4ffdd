"""Powertools logger, metrics and tracer shared by every runtime (one place, module level)."""

import logging
import sys

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


class _CurrentStderr:
    """Whatever sys.stderr is at the moment of writing (a test runner may swap it in and out)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
