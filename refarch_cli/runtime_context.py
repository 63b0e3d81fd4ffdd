"""What the commands run with: settings, a clean stop on signals, and the one-machine runtime when installed."""

from __future__ import annotations

import os
import signal
import time
from types import ModuleType
from typing import Any

from refarch.settings import ConfigurationError, Settings

DSN_HELP = "Postgres URL (default: DATABASE_URL, else the embedded database under REFARCH_HOME)."


def settings_with_queue(wait_seconds: float = 60.0) -> Settings:
    """Settings that name a queue. Under a supervisor, a local SQS server that is (re)starting gets
    `wait_seconds` to publish its queue URLs; otherwise a missing queue is an error at once."""
    local = local_runtime()
    supervised = local is not None and os.environ.get(local.SUPERVISOR_PID_ENV)
    deadline = time.monotonic() + (wait_seconds if supervised else 0.0)
    while True:
        settings = Settings()  # fresh: runtime.json is read again
        try:
            settings.queue_url("live")
            return settings
        except ConfigurationError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def stop_on_signals(stop: Any) -> None:
    """SIGTERM/SIGINT set the stop event: the in-flight work finishes, then the process exits 0."""

    def handle(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def local_runtime() -> ModuleType | None:
    """The one-machine runtime when it is installed (the container image ships without it)."""
    try:
        import refarch_local
    except ImportError:
        return None
    return refarch_local
