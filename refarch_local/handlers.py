"""Load Lambda handlers by the handler string the CDK stack declares, and call them like Lambda does."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


def load_handler(handler: str) -> Handler:
    """`package.module.function` -> the function (imported by name, as the Lambda runtime does)."""
    module_name, _, function_name = handler.rpartition(".")
    function: Handler = getattr(importlib.import_module(module_name), function_name)
    return function


@dataclass
class LocalLambdaContext:
    """The attributes of a Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 512
    timeout_seconds: int = 60
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        """A well-formed ARN (account 000000000000, the local region)."""
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Local invocations are not cut off; report the configured timeout."""
        return self.timeout_seconds * 1000


def invoke(handler: str, event: dict[str, Any], *, timeout_seconds: int = 60) -> Any:
    """Call a handler with a fresh context, like one Lambda invocation."""
    function = load_handler(handler)
    return function(event, LocalLambdaContext(function_name=handler.split(".")[-2], timeout_seconds=timeout_seconds))
