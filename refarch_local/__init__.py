"""The one-machine runtime and the dev tools: embedded Postgres, a local SQS API, the AWS handlers
wired locally, stand-ins, the demo supervisor, bench and chaos. Never shipped to AWS."""

import os
import signal
import threading
import time
import warnings

from refarch.settings import Settings

# Local processes: quiet logs, never reach for a model hub. (Metric records go to
# REFARCH_HOME/logs/metrics.log: refarch_cli sends them there; POWERTOOLS_METRICS_DISABLED=true turns them off.)
LOCAL_ENV = {
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp"),
}


# Set by `refarch demo` (and the bench/chaos harnesses) in each component's environment.
SUPERVISOR_PID_ENV = "REFARCH_SUPERVISOR_PID"


def apply_local_env() -> None:
    """Set the local defaults in this process (values the user exported win)."""
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)


# /tmp as XDG_RUNTIME_DIR is world-writable; platformdirs warns about it on every start. The
# embedded Postgres only keeps its socket there, so the warning is noise on the demo's terminal.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def exit_with_supervisor(poll_seconds: float = 0.5) -> None:
    """When a supervisor started this process, stop once it is gone (SIGKILL, OOM: no clean-up ran).

    Its orphans would otherwise keep the web port, the SQS port and the queue's consumers, and the
    next `refarch demo` would not start cleanly. SIGTERM first (each component stops cleanly on
    it), then a hard exit if that did not end the process.
    """
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if not supervisor or os.getppid() != int(supervisor):
        return

    def watch() -> None:
        while os.getppid() == int(supervisor):
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(15)
        os._exit(1)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def start_embedded_database(settings: Settings) -> str:
    """The embedded Postgres under REFARCH_HOME, started if needed: the database when none is configured."""
    from refarch_local.database import LocalDatabase

    return LocalDatabase(settings.home).start()
