"""The `refarch chaos` scenarios: each injects one kind of fault while changes flow, then checks convergence."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import zlib
from collections import Counter
from typing import Any

from refarch.db import connect
from refarch.settings import Settings, read_local_runtime
from refarch_local.chaos_changes import ChangeMaker
from refarch_local.chaos_harness import ChaosHarness, ScenarioResult


class ChaosScenarios(ChaosHarness):
    """The scenarios, one method each (named in SCENARIOS), run against the harness's stack."""

    def _kill_during_changes(self, component: str, count: int, kills: int) -> int:
        maker = ChangeMaker(self.stack.dsn, seed=zlib.crc32(component.encode()))
        marks = {round(count * (k + 1) / (kills + 1)) for k in range(kills)}

        def on_change(made: int) -> None:
            if made in marks:
                self.stack.kill(component)

        return maker.make(count, pace=0.002, on_change=on_change)

    def listener_killed(self) -> ScenarioResult:
        """The listener is SIGKILLed twice during the edits and restarted by the supervisor."""
        return self.scenario(
            "listener killed during edits", lambda: self._kill_during_changes("listener", self.edits, kills=2)
        )

    def emu_killed(self) -> ScenarioResult:
        """Every Emu worker is SIGKILLed twice while a batch is in flight; its messages come back."""
        missed: list[str] = []
        kills = {"mid_batch": 0}

        def body() -> int:
            count = max(self.edits // 3, 50)
            maker = ChangeMaker(self.stack.dsn, seed=zlib.crc32(b"emu"))
            changes = threading.Thread(target=maker.make, args=(count,), kwargs={"pace": 0.002}, daemon=True)
            changes.start()
            for kill in range(2):
                # Kills at a third and two thirds of the changes, each once a batch is provably in flight.
                while maker.committed < count * (kill + 1) // 3 and changes.is_alive():
                    time.sleep(0.01)
                kills["mid_batch"] += self._kill_emu_mid_batch(missed)
            changes.join()
            return maker.committed

        result = self.scenario("emu worker killed mid-batch", body, problems=missed)
        result.detail = f"{kills['mid_batch']} of 2 kills made mid-batch {result.detail}".strip()
        return result

    def embedder_faults(self) -> ScenarioResult:
        """30% of embedding calls fail (429, 500, timeouts) while edits flow."""

        def body() -> int:
            self.provider.fault_rate = 0.3
            try:
                made = ChangeMaker(self.stack.dsn, seed=3).make(max(self.edits // 3, 50), pace=0.01)
                self.wait_converged(timeout=240)
            finally:
                self.provider.fault_rate = 0.0
            return made

        result = self.scenario("embedder failing 30% of calls", body)
        result.detail = (result.detail + f" faults injected: {dict(self.provider.faults)}").strip()
        return result

    def duplicates_and_reordering(self) -> ScenarioResult:
        """Concurrent workers receive duplicated, stale and reordered messages for the same hot products.

        No fault is injected here, so every failed record and every error a delivery raises is
        unexpected: they are counted, reported, and fail the scenario (the pipeline would repair
        them, which is exactly why they must not pass unseen).
        """
        problems: list[str] = []
        errors: Counter[str] = Counter()
        deliveries = Counter[str]()
        counting = threading.Lock()

        def body() -> int:
            from refarch.lanes.messages import SyncMessage
            from refarch_local.handlers import LocalLambdaContext, load_handler

            handler = load_handler("lambdas.emu.handler")
            maker = ChangeMaker(self.stack.dsn, seed=11)
            stop = threading.Event()
            conn = connect(self.stack.dsn)
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM source_rows ORDER BY id LIMIT 8")
                hot = [r[0] for r in cur.fetchall()]
            conn.close()

            def deliver(worker: int) -> None:
                rng = random.Random(worker)
                while not stop.is_set():
                    records = []
                    for n in range(10):
                        pid = rng.choice(hot)
                        message = SyncMessage(product_id=pid, version=rng.randint(1, 30), op="update", source="change")
                        records.append(
                            {
                                "messageId": f"w{worker}-{time.time_ns()}-{n}",
                                "receiptHandle": "direct",
                                "body": message.model_dump_json(),
                                "attributes": {"MessageGroupId": str(pid), "ApproximateReceiveCount": "1"},
                                "messageAttributes": {},
                                "md5OfBody": "",
                                "eventSource": "aws:sqs",
                                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:direct.fifo",
                                "awsRegion": "us-east-1",
                            }
                        )
                    rng.shuffle(records)
                    try:
                        response = handler({"Records": records}, LocalLambdaContext(function_name="emu-direct"))
                    except Exception as err:  # counted and reported below: any error fails the scenario
                        with counting:
                            deliveries["batches"] += 1
                            errors[f"{type(err).__name__}: {err}"[:300]] += 1
                        continue
                    with counting:
                        deliveries["batches"] += 1
                        if failed := len(response.get("batchItemFailures", [])):
                            errors["records reported failed"] += failed

            workers = [threading.Thread(target=deliver, args=(w,), daemon=True) for w in range(3)]
            for w in workers:
                w.start()
            try:
                made = 0
                for _ in range(max(self.edits // 10, 20)):
                    conn = connect(self.stack.dsn)
                    with conn, conn.cursor() as cur:
                        maker.edit(cur, random.choice(hot))
                    conn.close()
                    made += 1
                    time.sleep(0.02)
                made += maker.make(max(self.edits // 10, 20), pace=0.01)
            finally:
                stop.set()
                for w in workers:
                    w.join()
            return made

        def body_counting_errors() -> int:
            made = body()
            if errors:
                problems.append(f"{sum(errors.values())} unexpected errors in concurrent deliveries: {dict(errors)}")
            return made

        result = self.scenario(
            "duplicate and reordered deliveries, concurrent workers", body_counting_errors, problems=problems
        )
        result.detail = (
            f"{deliveries['batches']} batches delivered, {sum(errors.values())} errors {result.detail}".strip()
        )
        return result

    def database_restarted(self) -> ScenarioResult:
        """Postgres restarts (every connection cut) while edits flow; clients reconnect."""

        def body() -> int:
            maker = ChangeMaker(self.stack.dsn, seed=5)
            count = max(self.edits // 3, 50)
            restarted = threading.Event()

            def on_change(made: int) -> None:
                if made == count // 2 and not restarted.is_set():
                    restarted.set()
                    threading.Thread(target=self.stack.database.restart, daemon=True).start()

            return maker.make(count, pace=0.01, on_change=on_change)

        return self.scenario("database restarted under load", body)

    def poison_message(self) -> ScenarioResult:
        """A malformed message reaches the DLQ (reason logged); everything else is unaffected."""
        problems: list[str] = []
        seen: dict[str, Any] = {}

        def body() -> int:
            from refarch.lanes.queues import make_sqs_client

            runtime = read_local_runtime(self.home)
            sqs = make_sqs_client(Settings(home=self.home))
            sqs.send_message(
                QueueUrl=runtime["queue_url"],
                MessageBody='{"product_id": "not-a-number"}',
                MessageGroupId="poison",
                MessageDeduplicationId=f"poison-{time.time_ns()}",
            )
            made = ChangeMaker(self.stack.dsn, seed=13).make(30, pace=0.01)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not self.stack.status().get("dlq_depth"):
                time.sleep(0.5)
            seen["dlq"] = self.stack.status().get("dlq_depth")
            # Whichever Emu worker received it logged the reason (on each of its receives).
            seen["logged"] = any(
                "malformed message" in log.read_text(errors="replace") for log in (self.home / "logs").glob("emu*.log")
            )
            if seen["dlq"] != 1 or not seen["logged"]:
                problems.append("the poison message must be kept (in the DLQ, alone) and its reason logged")
            return made

        result = self.scenario("poison message", body, problems=problems)
        result.detail = f"DLQ depth {seen.get('dlq')}, reason logged: {seen.get('logged')}"
        return result

    def queue_killed_with_deletes_in_flight(self) -> ScenarioResult:
        """Deletes wait in the queue when the SQS server is SIGKILLed: its messages are gone for good.

        Emu is paused (SIGSTOP) so the deletes are provably still queued when the server dies; the
        recovery after the server's restart (a bootstrap) must send them again.
        """
        problems: list[str] = []
        seen: dict[str, Any] = {}

        def body() -> int:
            workers = self._emu_workers()
            for worker in workers:
                assert worker.process is not None
                os.kill(worker.process.pid, signal.SIGSTOP)
            try:
                conn = connect(self.stack.dsn)
                try:
                    with conn, conn.cursor() as cur:
                        cur.execute(
                            "SELECT id FROM source_rows ORDER BY random() LIMIT %s", (max(self.edits // 10, 20),)
                        )
                        doomed = [r[0] for r in cur.fetchall()]
                        ChangeMaker(self.stack.dsn, seed=17).delete(cur, doomed)
                finally:
                    conn.close()
                made = len(doomed) + ChangeMaker(self.stack.dsn, seed=17).make(20)
                deadline = time.monotonic() + 60
                status = self.stack.status()
                while time.monotonic() < deadline and not (
                    status["outbox_backlog"] == 0 and (status.get("queue_depth") or 0) >= len(doomed)
                ):
                    time.sleep(0.2)
                    status = self.stack.status()
                seen.update(queued=status.get("queue_depth"), deletes=len(doomed))
                if status["outbox_backlog"] or (status.get("queue_depth") or 0) < len(doomed):
                    problems.append(f"the deletes never waited in the queue: status {status}")
                self.stack.kill("sqs")
            finally:
                for worker in workers:
                    if worker.process is not None:
                        os.kill(worker.process.pid, signal.SIGCONT)
            return made

        result = self.scenario("queue server killed with deletes in flight", body, problems=problems)
        result.detail = (
            f"{seen.get('deletes')} deletes among {seen.get('queued')} queued messages lost with the server "
            + result.detail
        ).strip()
        return result

    def mixed_workload(self) -> ScenarioResult:
        """Four writers (inserts, edits, price-only edits, renames, deletes, bursts of five edits to one
        row) while a random component is SIGKILLed, or every other Postgres backend is terminated,
        every few seconds."""
        faults: list[str] = []

        def body() -> int:
            rng = random.Random(2026)
            stop = threading.Event()
            makers = [ChangeMaker(self.stack.dsn, seed=100 + k) for k in range(4)]
            writers = [
                threading.Thread(target=m.make, args=(10**9,), kwargs={"pace": 0.01, "stop": stop}, daemon=True)
                for m in makers
            ]
            for writer in writers:
                writer.start()
            try:
                deadline = time.monotonic() + (20 if self.edits < 500 else 60)
                while time.monotonic() < deadline:
                    time.sleep(rng.uniform(2.0, 5.0))
                    names = [c.name for c in self.stack.components if c.name != "web"]
                    fault = rng.choice([*names, "postgres backends"])
                    if fault == "postgres backends":
                        self._terminate_backends()
                    else:
                        self.stack.kill(fault)
                    faults.append(fault)
            finally:
                stop.set()
                for writer in writers:
                    writer.join()
            return sum(m.committed for m in makers)

        result = self.scenario("mixed writers with random kills", body, timeout=600)
        result.detail = (f"faults: {', '.join(faults)} " + result.detail).strip()
        return result


SCENARIOS = (
    "listener_killed",
    "emu_killed",
    "embedder_faults",
    "duplicates_and_reordering",
    "database_restarted",
    "poison_message",
    "queue_killed_with_deletes_in_flight",
    "mixed_workload",
)
