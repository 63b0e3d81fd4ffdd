"""A handler for the worker tests: raises the bootstrap's RangeBusyError, or echoes its event."""

from __future__ import annotations

from typing import Any

from refarch.pelican.bootstrap import RangeBusyError


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """{"busy": true}: RangeBusyError, as a Batch whose range another worker holds; else the event back."""
    if event.get("busy"):
        raise RangeBusyError("range 3 of run 1 is held by another worker")
    return {"echo": event, "function": context.function_name}
