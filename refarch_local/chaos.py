"""`refarch chaos`: faults injected into the running local stack, each scenario ending with a
full convergence check (index equals database: ids, versions, content hashes).

The stack is the real one (Postgres, SQS server, listener and Emu worker processes); Emu embeds
through the real `openai` client against the OpenAI-compatible stand-in, so that embedder
faults (429, 500, timeouts) exercise the client's own retry path and scenarios run fast.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from rich.console import Console
from rich.table import Table

from refarch.db import Database, connect
from refarch.embeddings import make_embedder
from refarch.pgvector_index import PgVectorIndex
from refarch.settings import Settings, read_local_runtime
from refarch_local.convergence import Convergence, check_convergence
from refarch_local.demo import Component, Supervisor, free_port
from refarch_local.standins import OpenAIStandIn

DIMENSION = 64
MODEL = "text-embedding-3-small"
VISIBILITY_TIMEOUT = 3
# How long the embedding call of the batch chosen for a kill is held: ample time to see that it
# arrived and kill its worker while the batch is still inside the Emu handler.
HELD_EMBED_SECONDS = 2.0
WORDS = (
    "river",
    "granite",
    "velvet",
    "orbit",
    "maple",
    "signal",
    "ember",
    "harbor",
    "quartz",
    "meadow",
    "lantern",
    "cobalt",
    "saffron",
    "tundra",
    "willow",
    "canyon",
    "beacon",
    "juniper",
)


@dataclass
class ScenarioResult:
    """What one scenario did and what the convergence check found."""

    name: str
    changes: int
    lost: int
    stale: int
    seconds: float
    detail: str = ""
    problems: list[str] = field(default_factory=list)  # what else went wrong (did not settle, fault not injected)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing stale, and no other problem."""
        return self.lost == 0 and self.stale == 0 and not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "scenario": self.name,
            "changes": self.changes,
            "lost": self.lost,
            "stale": self.stale,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
            "detail": self.detail,
            "problems": self.problems,
        }


class ChangeMaker:
    """Random edits, inserts and deletes by a client that retries when the database is away.

    Only committed changes are counted: a change whose commit failed was never made.
    """

    def __init__(self, dsn: str, seed: int) -> None:
        self.dsn = dsn
        self.random = random.Random(seed)
        self.committed = 0
        self._conn: Any = None
        self._new = 0

    def _connection(self) -> Any:
        while self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.dsn)
            except psycopg2.OperationalError:
                time.sleep(0.2)
        return self._conn

    def make(
        self,
        count: int,
        *,
        pace: float = 0.0,
        on_change: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Make `count` committed changes (or until `stop` is set); return how many were made."""
        made = 0
        while made < count and not (stop and stop.is_set()):
            conn = self._connection()
            try:
                with conn, conn.cursor() as cur:
                    self._one(cur)
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                conn.close()
                time.sleep(0.2)
                continue
            made += 1
            self.committed += 1
            if on_change:
                on_change(made)
            if pace:
                time.sleep(pace)
        return made

    def _one(self, cur: Any) -> None:
        roll = self.random.random()
        cur.execute("SELECT id FROM products ORDER BY random() LIMIT 1")
        row = cur.fetchone()
        if roll < 0.08 or row is None:
            self._new += 1
            tag = f"{os.getpid()}-{time.time_ns()}-{self._new}"
            cur.execute(
                "INSERT INTO products (sku, name, description, category, price) VALUES (%s, %s, %s, %s, %s)",
                (f"CHAOS-{tag}", f"Chaos item {tag}", self.words(), "outdoor", self.random.randint(1, 500)),
            )
        elif roll < 0.12:
            cur.execute("DELETE FROM products WHERE id = %s", row)
        elif roll < 0.30:  # price only: the vector stays, its metadata changes
            cur.execute("UPDATE products SET price = price + 1 WHERE id = %s", row)
        elif roll < 0.38:  # a rename: new text to embed, and new metadata
            cur.execute("UPDATE products SET name = %s WHERE id = %s", (f"Renamed {self.words()}"[:200], row[0]))
        elif roll < 0.42:  # a burst: five edits to one row, one transaction each
            for _ in range(5):
                cur.execute("UPDATE products SET description = %s WHERE id = %s", (self.words(), row[0]))
                cur.connection.commit()
        else:
            cur.execute("UPDATE products SET description = %s WHERE id = %s", (self.words(), row[0]))

    def words(self) -> str:
        """A random product description."""
        return "A " + " ".join(self.random.choices(WORDS, k=8)) + " product."


class ChaosHarness:
    """A local stack with an OpenAI stand-in, and the scenarios run against it."""

    def __init__(self, *, rows: int, edits: int, console: Console) -> None:
        self.rows = rows
        self.edits = edits
        self.console = console
        self.home = Path(tempfile.mkdtemp(prefix="refarch-chaos-"))
        self.openai = OpenAIStandIn(hang_seconds=5, retry_after_seconds=0.2, seed=7)
        self.supervisor: Supervisor | None = None
        self.results: list[ScenarioResult] = []

    @property
    def stack(self) -> Supervisor:
        """The running supervisor."""
        assert self.supervisor is not None
        return self.supervisor

    def start(self) -> None:
        """Start the stand-in and the stack (no web page), seed and bootstrap, wait until synced."""
        self.openai.start()
        os.environ.update(
            {
                "REFARCH_EMBEDDER": "openai",
                "OPENAI_API_KEY": "chaos-local-key",
                "OPENAI_BASE_URL": self.openai.base_url,
                "REFARCH_OPENAI_MODEL": MODEL,
                "REFARCH_OPENAI_DIMENSIONS": str(DIMENSION),
                "REFARCH_OPENAI_TIMEOUT_SECONDS": "1",
                "REFARCH_OPENAI_MAX_RETRIES": "2",
                "REFARCH_HOME": str(self.home),
            }
        )
        self.supervisor = Supervisor(
            Settings(home=self.home),
            web_port=free_port(),
            sqs_visibility_timeout=VISIBILITY_TIMEOUT,
            console=self.console,
        )
        self.stack.start_database()
        self.stack.start_components(("emu",))
        self.stack.seed(self.rows)
        self.stack.bootstrap()
        self.stack.start_components(("listener",))
        self.wait_converged(timeout=600)

    def stop(self) -> None:
        """Stop everything."""
        if self.supervisor is not None:
            self.supervisor.stop()
        self.openai.stop()

    # -- convergence ---------------------------------------------------------------------------

    def settled(self) -> bool:
        """Nothing left to do: no pending or failed rows, empty outbox backlog and queue."""
        status = self.stack.status()
        return (
            status["pending"] == 0
            and status["failed"] == 0
            and status["outbox_backlog"] == 0
            and (status.get("queue_depth") or 0) == 0
        )

    def wait_converged(self, timeout: float) -> bool:
        """Wait until settled (True) or the timeout (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.settled():
                    return True
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                pass
            time.sleep(0.5)
        return False

    def drift(self) -> Convergence:
        """Index against table (ids, metadata, content hashes, a re-embedded sample); the ledger only reported."""
        db = Database(self.stack.dsn)
        try:
            index = PgVectorIndex(Database(self.stack.dsn), DIMENSION)
            return check_convergence(db, index, make_embedder(Settings(home=self.home)), sample=50)
        finally:
            db.close()

    def scenario(
        self, name: str, body: Callable[[], int], *, timeout: float = 300, problems: list[str] | None = None
    ) -> ScenarioResult:
        """Run one scenario body (returns changes made), wait for convergence, check it.

        `problems` is a list the body may append to (a fault it could not inject): each fails the scenario.
        """
        self.console.print(f"[bold]chaos[/bold] {name} …")
        started = time.monotonic()
        problems = problems if problems is not None else []
        changes = body()
        settled = self.wait_converged(timeout)
        check = self.drift()
        if not settled:
            # A stack that never settles has not converged, whatever the drift check saw.
            problems.append(f"did not settle in {timeout}s; status {self.stack.status()}")
        if check.ledger_drift:
            problems.append(f"the ledger disagrees with the index for {len(check.ledger_drift)} products")
        result = ScenarioResult(
            name, changes, check.lost, check.stale, time.monotonic() - started, check.detail(), problems
        )
        self.results.append(result)
        self.console.print(
            f"  changes {result.changes} · lost {result.lost} · stale {result.stale} · "
            f"{result.seconds:.1f}s {'[green]ok[/green]' if result.ok else '[red]FAILED[/red]'}"
        )
        return result

    # -- scenarios -----------------------------------------------------------------------------

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

    def _kill_emu_mid_batch(self, missed: list[str], *, timeout: float = 60) -> bool:
        """SIGKILL every Emu worker while one of them is provably inside a batch.

        The next embedding call is held in the stand-in; once it has arrived, the worker that sent
        it has received messages, locked their rows and is waiting for vectors, so a kill of every
        worker now cuts that batch in half. If no call arrives within `timeout`, the kill is not
        made (False) and the reason goes to `missed`.
        """
        self.openai.delay_next(HELD_EMBED_SECONDS)
        deadline = time.monotonic() + timeout
        while self.openai.delays_pending:  # taken the moment a call arrives, which it then holds
            if time.monotonic() > deadline:
                self.openai.cancel_delays()  # or it would hold some later, unrelated call
                missed.append(f"no embedding call (so no batch in flight) within {timeout}s: kill not made")
                return False
            time.sleep(0.01)
        for component in self.stack.components:
            if component.name == "emu" or component.name.startswith("emu-"):
                self.stack.kill(component.name)
        return True

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
            self.openai.fault_rate = 0.3
            try:
                made = ChangeMaker(self.stack.dsn, seed=3).make(max(self.edits // 3, 50), pace=0.01)
                self.wait_converged(timeout=240)
            finally:
                self.openai.fault_rate = 0.0
            return made

        result = self.scenario("embedder failing 30% of calls", body)
        result.detail = (result.detail + f" faults injected: {dict(self.openai.faults)}").strip()
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
            from refarch.messages import SyncMessage
            from refarch_local.handlers import LocalLambdaContext, load_handler

            handler = load_handler("lambdas.emu.handler")
            maker = ChangeMaker(self.stack.dsn, seed=11)
            stop = threading.Event()
            conn = connect(self.stack.dsn)
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM products ORDER BY id LIMIT 8")
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
                        cur.execute(
                            "UPDATE products SET description = %s WHERE id = %s", (maker.words(), random.choice(hot))
                        )
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
            from refarch.queue import make_sqs_client

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

    def _emu_workers(self) -> list[Component]:
        return [c for c in self.stack.components if c.name == "emu" or c.name.startswith("emu-")]

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
                        cur.execute("SELECT id FROM products ORDER BY random() LIMIT %s", (max(self.edits // 10, 20),))
                        doomed = [r[0] for r in cur.fetchall()]
                        cur.execute("DELETE FROM products WHERE id = ANY(%s)", (doomed,))
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

    def _terminate_backends(self) -> None:
        """Cut every other connection to the stack's database (its clients must reconnect)."""
        conn = connect(self.stack.dsn, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )
        finally:
            conn.close()


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


def run_chaos(*, quick: bool, only: tuple[str, ...] = (), json_path: Path | None = None) -> list[ScenarioResult]:
    """Run the scenarios (all unless `only`), print the table, write JSON; return the results."""
    console = Console(stderr=True)
    harness = ChaosHarness(rows=200 if quick else 2000, edits=150 if quick else 1000, console=console)
    try:
        harness.start()
        for name in only or SCENARIOS:
            getattr(harness, name)()
    finally:
        harness.stop()
        # The stack's data and logs are only worth their disk space when something went wrong.
        if harness.results and all(r.ok for r in harness.results):
            shutil.rmtree(harness.home, ignore_errors=True)
        else:
            console.print(f"[yellow]kept {harness.home} (logs in logs/)[/yellow]")
    table = Table(title="refarch chaos")
    for column in ("Scenario", "Changes", "Lost", "Stale", "Seconds", "Result", "Detail"):
        table.add_column(column)
    for r in harness.results:
        detail = " ".join([*r.problems, r.detail]).strip()
        table.add_row(
            r.name, str(r.changes), str(r.lost), str(r.stale), f"{r.seconds:.1f}", "ok" if r.ok else "FAILED", detail
        )
    console.print(table)
    if json_path:
        json_path.write_text(json.dumps([r.as_dict() for r in harness.results], indent=2))
    return harness.results
