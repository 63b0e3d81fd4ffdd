"""The one-machine runtime: embedded Postgres, a local SQS API, and the AWS handlers wired locally."""

import os

# Local processes: no EMF metric lines on stdout, quiet logs, never reach for a model hub.
LOCAL_ENV = {
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp"),
}


def apply_local_env() -> None:
    """Set the local defaults in this process (values the user exported win)."""
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
