"""Where a runtime's queues are: named by the environment (AWS, or a server chosen on purpose), else the local ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from refarch.settings import Settings, write_local_runtime

LOCAL = "http://127.0.0.1:9324"


@pytest.fixture
def home_with_a_local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A REFARCH_HOME where a local stack published its SQS server and queues (runtime.json)."""
    for name in ("REFARCH_QUEUE_URL", "REFARCH_BULK_QUEUE_URL", "REFARCH_SQS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REFARCH_HOME", str(tmp_path))
    write_local_runtime(
        Settings(),
        sqs_endpoint_url=LOCAL,
        queue_url=f"{LOCAL}/000000000000/live.fifo",
        bulk_queue_url=f"{LOCAL}/000000000000/bulk",
    )
    return tmp_path


def test_without_queues_in_the_environment_the_local_stacks_are_used(home_with_a_local_stack: Path) -> None:
    settings = Settings()
    assert settings.resolved_sqs_endpoint() == LOCAL
    assert settings.queue_url("bulk") == f"{LOCAL}/000000000000/bulk"


@pytest.mark.parametrize("variable", ["REFARCH_QUEUE_URL", "REFARCH_BULK_QUEUE_URL"])
def test_a_runtime_given_one_lanes_queue_never_mixes_in_a_local_stacks_addresses(
    home_with_a_local_stack: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # Given a runtime whose environment names one lane's queue only (the bootstrap's Batch function: bulk)
    monkeypatch.setenv(variable, "https://sqs.us-east-1.amazonaws.com/123456789012/refarch-dev-sync")
    settings = Settings()
    # Then it talks to AWS's endpoint, and the other lane is unknown rather than the local stack's queue
    assert settings.resolved_sqs_endpoint() is None
    other = "bulk" if variable == "REFARCH_QUEUE_URL" else "live"
    assert settings.known_queue_url(other) is None
