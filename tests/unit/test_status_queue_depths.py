"""Queue depths in the status: an unreachable queue gives an unknown depth and a logged reason."""

from __future__ import annotations

import boto3
from botocore.config import Config

from refarch.status import queue_depths
from tests.conftest import free_port


def unreachable_sqs(port: int):
    """An SQS client for a port where nothing listens (one attempt, short connect timeout)."""
    return boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )


def test_an_unreachable_queue_reports_unknown_depth_and_logs_why(caplog):
    # Given an SQS client pointed at a port where nothing listens
    port = free_port()
    sqs = unreachable_sqs(port)
    url = f"http://127.0.0.1:{port}/000000000000/q.fifo"
    # When the status asks for the queue depths
    depths = queue_depths(sqs, url, None)
    # Then both depths are unknown (the DLQ URL is not known either) and the failure is logged with its reason
    assert depths == {"queue_depth": None, "dlq_depth": None}
    warning = next(r for r in caplog.records if r.getMessage() == "queue depth unavailable")
    assert warning.levelname == "WARNING" and warning.queue_url == url
    assert "EndpointConnectionError" in warning.reason


def test_an_outage_is_warned_about_once(caplog):
    # Given a queue that cannot be reached, asked about three times (the demo polls twice a second)
    port = free_port()
    sqs = unreachable_sqs(port)
    url = f"http://127.0.0.1:{port}/000000000000/outage.fifo"
    for _ in range(3):
        assert queue_depths(sqs, url, None)["queue_depth"] is None
    # Then one warning was logged for the outage, not one per poll
    warnings = [r for r in caplog.records if r.getMessage() == "queue depth unavailable" and r.levelname == "WARNING"]
    assert [w.queue_url for w in warnings] == [url]
