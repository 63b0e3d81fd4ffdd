"""The local SQS server's speed-ups patch moto internals: a moto upgrade that changes them must fail here."""

from __future__ import annotations

import boto3

from refarch_local.sqs import moto_internals_missing, start_server
from tests.conftest import free_port


def test_every_moto_internal_the_speedups_rely_on_exists():
    # Given the installed moto, When its internals are probed on a real queue and message
    # Then every function, member and attribute the patches replace or read is there
    assert moto_internals_missing() == []


def test_the_patched_server_counts_receives_and_deletes_like_sqs():
    # Given the patched local server and a queue with three messages
    port = free_port()
    server = start_server(port)
    try:
        sqs = boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        url = sqs.create_queue(QueueName="speedups", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        for n in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")

        def counts() -> tuple[int, int]:
            attrs = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

        assert counts() == (3, 0)
        # When two are received and one of them deleted (twice: a repeated delete is a no-op)
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
        assert len(received) == 2
        for _ in range(2):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"])
        # Then one stays visible, one is in flight, and the deleted one is gone
        assert counts() == (1, 1)
        remaining = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in remaining] == [
            b for b in ("m0", "m1", "m2") if b not in {m["Body"] for m in received}
        ]
    finally:
        server.stop()
