"""The invariant that matters most: whatever the queue does, the index ends equal to the table.

Hypothesis plays random inserts, edits and deletes on a few products, and delivers the change
messages the triggers capture with duplicates, reordering, lost messages, transient provider
failures, failing vector-index deletes and metadata updates (the failed records are redelivered
later, as SQS does, or a failed delete is dead-lettered) and two workers running batches at once,
even for the same product and while the table changes (outside FIFO's guarantee: the advisory
locks must hold). After every message left has been processed, the index must hold exactly the
table's rows, each at the row's version and content hash; where messages were lost or
dead-lettered, reconcile must find drift only on their products, and its repair must close it.
The ledger must never have moved backwards on the way. Faults are counted when they fire, not
when they are armed.

Examples: 60 by default, 200 with CI=true (the `ci` profile).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg2
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refarch import generations, products
from refarch.generations import Generation
from refarch.generations.targets import GenerationTargets
from refarch.index.port import VectorIndex
from refarch.lanes.messages import SyncMessage
from refarch.reconcile import find_drift, repair
from refarch_local.standins import OpenAIStandIn
from tests.integration.emu_support import (
    assert_index_matches_database,
    configure_emu,
    failed_ids,
    invoke_emu,
    sqs_event,
    start_pinecone,
)

# The stand-in fixtures, shared by the Emu test modules.
pytest_plugins = ["tests.integration.emu_fixtures"]

SLOTS = 5
NAMES = ("Lamp", "Desk", "Chair")
DESCRIPTIONS = ("Oak.", "Steel frame.", "")
EDITS = ("rename", "describe", "reprice", "reprice", "delete", "delete")
FAULTS = (None, None, "server_error", "rate_limit", "index delete", "index delete", "index metadata update") * 2 + (
    "index metadata update",
)
PROVIDER_FAULTS = ("server_error", "rate_limit")

# Derandomized: the same examples every run, so CI is stable and the power check below is exact.
# CI (CI=true) runs the larger `ci` profile.
MAX_EXAMPLES = {"default": 60, "ci": 200}
EXAMPLE_SETTINGS = settings(
    max_examples=MAX_EXAMPLES["ci" if os.environ.get("CI", "").lower() == "true" else "default"],
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class IndexFaults:
    """The real vector index, except that an armed delete or metadata update raises (once) before
    reaching it. Counts the faults that fired: only a call with something to delete or update fires."""

    def __init__(self, index: VectorIndex) -> None:
        self._index = index
        self.armed: set[str] = set()
        self.fired: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def _fire(self, kind: str, work: object) -> None:
        with self._lock:
            if not work or kind not in self.armed:
                return
            self.armed.discard(kind)
            self.fired[kind] += 1
        raise ConnectionError(f"injected: vector index {kind} failed")

    def delete(self, ids: list[int]) -> None:
        """Delete, unless a delete fault is armed."""
        self._fire("index delete", ids)
        self._index.delete(ids)

    def update_metadata(self, updates: dict[int, dict[str, Any]]) -> None:
        """Update metadata, unless a metadata-update fault is armed."""
        self._fire("index metadata update", updates)
        self._index.update_metadata(updates)


class TargetsWithIndexFaults(GenerationTargets):
    """The runtime's generation targets, serving every generation's index through IndexFaults."""

    def open_index(self, generation: Generation) -> VectorIndex:
        return IndexFaults(super().open_index(generation))  # type: ignore[return-value]

    def faults(self, generation_id: int) -> IndexFaults:
        """The fault set of a generation's index (built on first use)."""
        with self.db.transaction() as conn:
            found = generations.get(conn, generation_id)
        assert found is not None
        index = self.target(found).index
        assert isinstance(index, IndexFaults)
        return index


@dataclass(frozen=True)
class Change:
    """A drawn change to the table, applied when called; `product_id` is None for an insert."""

    apply: Callable[[], None]
    product_id: int | None

    def __call__(self) -> None:
        self.apply()


class Scenario:
    """The database side (real changes through the triggers) and the queue side (pending deliveries)."""

    def __init__(
        self,
        conn: psycopg2.extensions.connection,
        pool: ThreadPoolExecutor,
        data: st.DataObject,
        openai: OpenAIStandIn,
        index_faults: IndexFaults,
        tally: Counter[str],
    ) -> None:
        self.conn = conn
        self.pool = pool
        self.data = data
        self.openai = openai
        self.index_faults = index_faults
        self.tally = tally
        self.unsynced: set[int] = set()  # products whose message was lost or dead-lettered
        self.dead_letters: list[SyncMessage] = []
        # Final deliveries pick and order messages with this (one draw, however many rounds it takes)
        self.final_rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="final seed"))
        self.slots: dict[int, int] = {}  # slot -> product id
        self.pending: dict[int, SyncMessage] = {}  # delivery key -> message still to be processed once
        self.keys = itertools.count()
        self.skus = itertools.count(1)
        self.last_outbox_id = 0
        self.ledger_high: dict[int, int] = {}

    # -- the database side -------------------------------------------------------------------

    def plan_change(self, *, insert: bool = False) -> Change:
        """Draw one change (insert into a free slot, or edit/delete a live one); return what applies it."""
        draw = self.data.draw
        free = [s for s in range(SLOTS) if s not in self.slots]
        action = "insert" if insert or not self.slots else draw(st.sampled_from(EDITS + (("insert",) if free else ())))
        if action == "insert":
            slot = free[0] if free else None
            fields = {
                "sku": f"P-{next(self.skus)}",
                "name": draw(st.sampled_from(NAMES)),
                "description": draw(st.sampled_from(DESCRIPTIONS)),
                "category": "home",
                "price": Decimal(draw(st.integers(1, 9))),
            }
        else:
            slot = draw(st.sampled_from(sorted(self.slots)))
            fields = {
                "rename": lambda: {"name": draw(st.sampled_from(NAMES))},
                "describe": lambda: {"description": draw(st.sampled_from(DESCRIPTIONS))},
                "reprice": lambda: {"price": Decimal(draw(st.integers(1, 9)))},
                "delete": dict,
            }[action]()

        def apply() -> None:
            if slot is None:
                return
            pid = self.slots.get(slot)
            with self.conn:
                if action == "insert":
                    self.slots[slot] = products.create(self.conn, fields).id
                elif action == "delete":
                    products.delete(self.conn, pid)
                    del self.slots[slot]
                else:
                    with self.conn.cursor() as cur:
                        cur.execute("SELECT status FROM sync_state WHERE product_id = %s", (pid,))
                        indexed = (cur.fetchone() or [None])[0] == "indexed"
                    before = products.get(self.conn, pid)
                    after = products.update(self.conn, pid, fields, expected_version=None)
                    # A new version whose text is unchanged: Emu must update metadata, not embed.
                    if indexed and after.version > before.version and action == "reprice":
                        self.tally["price changes of indexed products"] += 1

        return Change(apply, self.slots.get(slot) if slot is not None else None)

    def capture(self) -> None:
        """Turn new outbox rows into pending messages, as the relay does (sometimes twice)."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                "SELECT id, product_id, op, version FROM sync_outbox WHERE id > %s ORDER BY id", (self.last_outbox_id,)
            )
            rows = cur.fetchall()
        for outbox_id, pid, op, version in rows:
            message = SyncMessage(product_id=pid, version=version, op=op, source="change", outbox_id=outbox_id)
            # At-least-once: the relay may send a change twice (crash between send and mark); and
            # a message may be lost (a queue deleted, a message purged), which only reconcile repairs.
            copies = self.data.draw(st.sampled_from((1, 1, 1, 2, 0)), label="copies")
            self.tally["duplicated messages"] += max(copies - 1, 0)
            if copies == 0:
                self.tally["lost messages"] += 1
                self.unsynced.add(pid)
            for _ in range(copies):
                self.pending[next(self.keys)] = message
            self.last_outbox_id = outbox_id

    # -- the queue side ----------------------------------------------------------------------

    def deliver(self, workers: int, *, final: bool = False) -> None:
        """Deliver some pending messages in random order, maybe with a fault, maybe while the table
        changes; with two workers, as two concurrent batches.

        Which records succeed depends on thread timing, so what is pending may differ when Hypothesis
        replays an example: every draw is therefore made, with the same constraints, whatever the
        queue holds (messages are picked with a seeded Random), and final deliveries draw nothing.
        """
        draw = self.data.draw
        change = None
        dead_letter = False
        if final:
            rng, fault = self.final_rng, None
            starts = [rng.randint(0, 30) / 1000 for _ in range(3)]
        else:
            rng = random.Random(draw(st.integers(0, 2**32 - 1), label="delivery seed"))
            fault = draw(st.sampled_from(FAULTS), label="fault")
            if workers == 2 and draw(st.booleans(), label="change meanwhile"):
                change = self.plan_change()  # its draws depend only on the table, never on timing
            # Staggered starts (milliseconds) so reads, embeds and the change interleave differently.
            starts = [draw(st.integers(0, 30), label="start ms") / 1000 for _ in range(3)]
            dead_letter = draw(st.sampled_from((True, True, False)), label="dead-letter failed deletes?")
        if fault in PROVIDER_FAULTS:
            self.openai.fail_next(fault)
        elif fault:
            # Armed until it fires: at the next delete (or metadata-only update) Emu makes
            self.index_faults.armed.add(fault)
        if not self.pending:
            if change is not None:
                change()
                self.capture()
            return
        if change is not None:
            self.tally["changes during delivery"] += 1
        keys = list(self.pending)
        chosen = rng.sample(keys, min(10, len(keys)) if final else rng.randint(1, min(10, len(keys))))
        batches = [chosen]
        if workers == 2 and len(chosen) > 1:
            cut = rng.randint(1, len(chosen) - 1)
            batches = [chosen[:cut], chosen[cut:]]
            self.tally["concurrent batches"] += 1
        if change is not None and (racing := [k for k in keys if self.pending[k].product_id == change.product_id]):
            # The race the locks exist for: the first worker reads the product, then it changes,
            # then a second worker reads it and finishes first while the first one's embed is slow.
            batches = [b if racing[0] in b else [*b, racing[0]] for b in batches] + (
                [[racing[0]]] if len(batches) == 1 else []
            )
            starts = [0.0, 0.06, 0.03]
            self.openai.delay_next(0.15)
            self.tally["races on a changing product"] += 1
        provider_faults_before = sum(self.openai.faults.values())
        index_faults_before = Counter(self.index_faults.fired)
        running = [
            self.pool.submit(self._invoke, {k: self.pending[k] for k in batch}, start)
            for batch, start in zip(batches, starts, strict=False)
        ]
        if change is not None:
            self.pool.submit(lambda: (time.sleep(starts[-1]), change())).result()
        delivered = {k for batch in batches for k in batch}
        for future in running:
            for key in future.result():
                self.pending.pop(key, None)
                delivered.discard(key)
        # What fired in this delivery (an armed fault that found no work to fail stays unfired)
        self.tally["provider faults"] += sum(self.openai.faults.values()) - provider_faults_before
        for kind, fired in (self.index_faults.fired - index_faults_before).items():
            self.tally[f"failed {kind}s"] += fired
        # A failed delete may be dead-lettered (after maxReceiveCount) instead of redelivered
        for key in sorted(delivered):
            message = self.pending[key]
            if dead_letter and message.op == "delete":
                self.dead_letters.append(self.pending.pop(key))
                self.unsynced.add(message.product_id)
                self.tally["dead-lettered deletes"] += 1
        self.capture()
        self._check_ledger_never_moves_back()

    @staticmethod
    def _invoke(batch: dict[int, SyncMessage], start: float) -> list[int]:
        """One Lambda invocation after `start` seconds; returns the delivery keys whose records succeeded."""
        time.sleep(start)
        event = sqs_event(*batch.values())
        by_message_id = {r["messageId"]: k for r, k in zip(event["Records"], batch, strict=True)}
        try:
            failed = failed_ids(invoke_emu(event))
        except BatchProcessingError:  # every record failed: the whole batch comes back
            return []
        return [k for mid, k in by_message_id.items() if mid not in failed]

    def _check_ledger_never_moves_back(self) -> None:
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT product_id, indexed_version FROM sync_state")
            for pid, version in cur.fetchall():
                assert version >= self.ledger_high.get(pid, 0), f"ledger of product {pid} moved backwards"
                self.ledger_high[pid] = version


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Long-lived threads: two workers (each keeps its own database connections, as a Lambda would)
    and one for changes made while they run."""
    with ThreadPoolExecutor(3, thread_name_prefix="emu-worker") as executor:
        yield executor


@pytest.mark.parametrize("index", ["pgvector", "pinecone"])
def test_index_converges_to_the_table_whatever_the_delivery(
    monkeypatch,
    dsn,
    conn,
    pool,
    openai_standin,
    pinecone_standins,
    index,
):
    pinecone = start_pinecone(pinecone_standins, 16) if index == "pinecone" else None
    # Provider faults surface as record failures (no SDK retries), to be redelivered; a little
    # provider latency lets concurrent batches and changes interleave.
    openai_standin.latency_seconds = 0.02
    emu = configure_emu(
        monkeypatch,
        dsn,
        embedder="openai",
        index=index,
        openai=openai_standin,
        pinecone=pinecone,
        dimensions=16,
        max_retries=0,
    )
    # Emu writes to generation 1 through IndexFaults.
    emu.__dict__["targets"] = targets = TargetsWithIndexFaults(
        emu.settings, emu.db, configured_embedder=lambda: emu.embedder
    )
    index_faults = targets.faults(targets.active().generation.id)
    tally: Counter[str] = Counter()

    @EXAMPLE_SETTINGS
    @given(data=st.data(), workers=st.sampled_from([1, 2]))
    def check(data: st.DataObject, workers: int) -> None:
        tables = "products, sync_outbox, sync_state, embed_calls" + ("" if pinecone else ", product_vectors")
        with conn, conn.cursor() as cur:
            cur.execute(f"TRUNCATE {tables} RESTART IDENTITY")
        if pinecone:
            pinecone.namespaces.clear()
        openai_standin.reset()
        index_faults.armed.clear()
        scenario = Scenario(conn, pool, data, openai_standin, index_faults, tally)
        # Given a few products, then random changes interleaved with faulty, concurrent deliveries
        for _ in range(data.draw(st.integers(1, SLOTS), label="initial products")):
            scenario.plan_change(insert=True)()
        scenario.capture()
        for _ in range(data.draw(st.integers(4, 16), label="steps")):
            if data.draw(st.booleans(), label="deliver?"):
                scenario.deliver(workers)
            else:
                scenario.plan_change()()
                scenario.capture()
        # When every message left is finally delivered (failed ones come back, as from SQS)
        for _ in range(50):
            if not scenario.pending:
                break
            scenario.deliver(workers, final=True)
        assert not scenario.pending, "messages still failing with no faults injected"
        # Then the index differs from the table only where a message was lost or dead-lettered...
        drift = find_drift(emu.db, emu.index, emu.embedder.model_id)
        drifting = set(drift.missing) | set(drift.extra) | set(drift.stale) | set(drift.ledger_drift)
        assert drifting <= scenario.unsynced, (drifting, scenario.unsynced)
        # ...and reconcile's repair (forced messages, delivered like any other) closes that drift; the
        # DLQ is redriven too (docs/deploy.md), which settles the ledger of a dead-lettered delete
        # whose product never had a vector (no drift in the index, but its ledger says failed)
        if drifting:
            tally["drift repaired by reconcile"] += 1
        repairs = RecordedQueue()
        repair(emu.db, repairs, drift)  # type: ignore[arg-type]  # a queue that keeps what is sent
        scenario.pending.update({next(scenario.keys): m for m in [*repairs.sent, *scenario.dead_letters]})
        for _ in range(50):
            if not scenario.pending:
                break
            scenario.deliver(workers, final=True)
        assert not scenario.pending, "repairs or redriven messages still failing"
        assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)

    check()
    # The examples really exercised what this test claims to cover.
    assert all(
        tally[what] >= 3
        for what in (
            "price changes of indexed products",
            "duplicated messages",
            "provider faults",
            "changes during delivery",
            "concurrent batches",
            "races on a changing product",
            "lost messages",
            "dead-lettered deletes",
            "failed index deletes",
            "failed index metadata updates",
            "drift repaired by reconcile",
        )
    ), tally


class RecordedQueue:
    """Stands where reconcile's SyncQueue goes and keeps the messages it is given (delivered by the test)."""

    def __init__(self) -> None:
        self.sent: list[SyncMessage] = []

    def send(self, messages: list[SyncMessage]) -> None:
        """Keep the messages."""
        self.sent.extend(messages)
