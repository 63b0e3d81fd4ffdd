"""The local event source (refarch_local/event_source.py) on the real local SQS server: an idle lane
costs one long poll at a time, and every slot receives again as soon as the queue has work."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from refarch.lanes.messages import bulk_messages
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.lanes.topology import DEFAULT_TOPOLOGY
from refarch_local.event_source import BATCHING_WINDOW_ENV, EventSourcePoller


class CountingReceives:
    """A real SQS client that counts its ReceiveMessage calls, and the most of them in flight at once."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def receive_message(self, **request: Any) -> Any:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return self._client.receive_message(**request)
        finally:
            with self._lock:
                self.in_flight -= 1


class SlowHandler:
    """An Emu stand-in that takes a while per batch, counting records and the batches running at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records = 0
        self.running = 0
        self.most_running = 0

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self._lock:
            self.records += len(event["Records"])
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        time.sleep(0.3)
        with self._lock:
            self.running -= 1
        return {"batchItemFailures": []}


def test_an_idle_lane_polls_from_one_slot_and_every_slot_receives_once_work_arrives(
    local_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the bulk lane's event source (4 slots, a 1 s batching window) on its empty queue
    monkeypatch.setenv(BATCHING_WINDOW_ENV, "1")
    queue = SyncQueue.for_lane(make_sqs_client(local_settings), local_settings, "bulk")
    client = CountingReceives(make_sqs_client(local_settings))
    handler = SlowHandler()
    poller = EventSourcePoller(client, queue.url, lane=DEFAULT_TOPOLOGY.bulk, handler_function=handler)
    assert poller.concurrency == 4
    worker = threading.Thread(target=poller.run)
    worker.start()
    try:
        # When it idles for 3 s
        time.sleep(3)
        # Then one long poll at a time was in flight (4 slots polling would make ~12 calls, 4 at once)
        assert client.most_in_flight == 1
        assert 2 <= client.calls <= 5, client.calls
        # When 40 bulk messages arrive at once
        queue.send(bulk_messages([(pid, 1, "sync") for pid in range(1, 4_001)], source="repair"))
        deadline = time.monotonic() + 30
        while queue.depth() != {"visible": 0, "in_flight": 0}:
            assert time.monotonic() < deadline, f"not drained: {queue.depth()}"
            time.sleep(0.1)
    finally:
        poller.stop.set()
        worker.join(timeout=30)
    # Then every message was handled (a batch that outlived the 2 s visibility timeout comes back: at least
    # once, as on AWS), and the slots ran batches at the same time again
    assert handler.records >= 40
    assert handler.most_running >= 2
