"""The local SQS server's speed-ups patch moto internals: a moto upgrade that changes them must fail here."""

from __future__ import annotations

import time

import boto3

from refarch_local.sqs import moto_internals_missing, start_server
from tests.conftest import free_port


def sqs_client(port: int):
    """A boto3 SQS client on the local server at this port (any keys will do)."""
    return boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_every_moto_internal_the_speedups_rely_on_exists():
    # Given the installed moto, When its internals are probed on a real queue and message
    # Then every function, member and attribute the patches replace or read is there
    assert moto_internals_missing() == []


def test_the_patched_server_counts_receives_and_deletes_like_sqs():
    # Given the patched local server and a queue with three messages
    port = free_port()
    server = start_server(port)
    try:
        sqs = sqs_client(port)
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


def test_a_long_poll_wakes_when_a_hidden_message_comes_due_and_otherwise_sleeps():
    # Given the local server, counting the receives it answers in full (a long poll is served as short ones)
    port = free_port()
    server = start_server(port)
    answered = []
    sqs_app = server._sqs_app

    def counting(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage":
            answered.append(time.monotonic())
        return sqs_app(environ, start_response)

    server._sqs_app = counting
    try:
        sqs = sqs_client(port)
        url = sqs.create_queue(QueueName="long-polls", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
        # When a long poll of 3 s waits on an empty queue
        started = time.monotonic()
        assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=3)
        # Then it took its whole wait and was answered in full only at its start and its end (not every half second)
        assert time.monotonic() - started >= 3
        assert len(answered) == 2
        # When the queue's one message is in flight (visible again 2 s after its receive) and another long poll waits
        sqs.send_message(QueueUrl=url, MessageBody="retry me")
        received_at = time.monotonic()  # the server hides it for 2 s from a moment after this
        first = sqs.receive_message(QueueUrl=url)["Messages"][0]
        answered.clear()
        again = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"][0]
        # Then the message comes back as soon as its visibility timeout ran out (not at the poll's 5 s
        # safety recheck), from one look at the due time
        assert again["Body"] == "retry me" and again["ReceiptHandle"] != first["ReceiptHandle"]
        assert 2 - 0.05 <= time.monotonic() - received_at <= 3.5
        assert len(answered) <= 3
        # And a message sent with a delay is received by a waiting long poll once the delay is over
        sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
        sent_at = time.monotonic()
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"][0]["Body"] == "later"
        assert 1 - 0.05 <= time.monotonic() - sent_at <= 2.5
    finally:
        server.stop()
