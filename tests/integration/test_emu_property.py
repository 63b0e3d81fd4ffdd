"""The invariant that matters most: whatever the queue does, the index ends equal to the table.

Hypothesis plays random inserts, edits and deletes on a few products, and delivers the change
messages the triggers capture with duplicates, reordering, transient provider failures (the
failed records are redelivered later, as SQS does) and two workers running batches at once,
even for the same product (outside FIFO's guarantee: the advisory locks must hold). After every
message has finally been processed once, the index must hold exactly the table's rows, each at
the row's version and content hash, and the ledger must never have moved backwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import psycopg2
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refarch import products
from refarch.local.standins import OpenAIStandIn
from refarch.messages import SyncMessage
from tests.integration.emu_support import (
    assert_index_matches_database,
    configure_emu,
    failed_ids,
    invoke_emu,
    openai_standin,  # noqa: F401 - fixture
    pinecone_standins,  # noqa: F401 - fixture
    sqs_event,
    start_pinecone,
)

SLOTS = 4
NAMES = ("Lamp", "Desk", "Chair")
# Repeated values on purpose: some edits change nothing (no new version), some only the price.
DESCRIPTIONS = ("Oak.", "Steel frame.", "Oak.", "")
PRICES = (Decimal("5.00"), Decimal("7.50"), Decimal("5.00"))
CHANGES = ("insert", "insert", "rename", "describe", "reprice", "reprice", "delete")
EDITS = {"rename": ("name", NAMES), "describe": ("description", DESCRIPTIONS), "reprice": ("price", PRICES)}
FAULTS = (None, None, "server_error", "rate_limit")

EXAMPLE_SETTINGS = settings(
    max_examples=20, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Scenario:
    """The database side (real changes through the triggers) and the queue side (pending deliveries)."""

    def __init__(self, conn: psycopg2.extensions.connection, pool: ThreadPoolExecutor, data: st.DataObject,
                 openai: OpenAIStandIn) -> None:
        self.conn = conn
        self.pool = pool
        self.data = data
        self.openai = openai
        self.slots: dict[int, int] = {}  # slot -> product id
        self.pending: dict[int, SyncMessage] = {}  # delivery key -> message still to be processed once
        self.keys = itertools.count()
        self.skus = itertools.count(1)
        self.last_outbox_id = 0
        self.ledger_high: dict[int, int] = {}

    # -- the database side -------------------------------------------------------------------

    def plan_change(self) -> Callable[[], None]:
        """Draw one change (insert, edit or delete of a slot); return the function that applies it."""
        action = self.data.draw(st.sampled_from(CHANGES), label="change")
        slot = self.data.draw(st.integers(0, SLOTS - 1), label="slot")
        if action == "insert":
            fields = {"sku": f"P-{next(self.skus)}", "name": self.data.draw(st.sampled_from(NAMES)),
                      "description": self.data.draw(st.sampled_from(DESCRIPTIONS)), "category": "home",
                      "price": self.data.draw(st.sampled_from(PRICES))}
        elif action != "delete":
            field, values = EDITS[action]
            fields = {field: self.data.draw(st.sampled_from(values), label=field)}

        def apply() -> None:
            pid = self.slots.get(slot)
            with self.conn:
                if action == "insert" and pid is None:
                    self.slots[slot] = products.create(self.conn, fields).id
                elif action == "delete" and pid is not None:
                    products.delete(self.conn, pid)
                    del self.slots[slot]
                elif action not in ("insert", "delete") and pid is not None:
                    products.update(self.conn, pid, fields, expected_version=None)

        return apply

    def capture(self) -> None:
        """Turn new outbox rows into pending messages, as the relay does (sometimes twice)."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT id, product_id, op, version FROM sync_outbox WHERE id > %s ORDER BY id",
                        (self.last_outbox_id,))
            rows = cur.fetchall()
        for outbox_id, pid, op, version in rows:
            message = SyncMessage(product_id=pid, version=version, op=op, source="change", outbox_id=outbox_id)
            # At-least-once: the relay may send a change twice (crash between send and mark).
            for _ in range(self.data.draw(st.sampled_from((1, 1, 2)), label="copies")):
                self.pending[next(self.keys)] = message
            self.last_outbox_id = outbox_id

    # -- the queue side ----------------------------------------------------------------------

    def deliver(self, workers: int, *, final: bool = False) -> None:
        """Deliver some pending messages in random order, maybe with a provider fault, maybe while
        the table changes; with two workers, as two concurrent batches."""
        if not self.pending:
            return
        keys = list(self.pending)
        change = None
        if final:
            chosen = self.data.draw(st.permutations(keys), label="final order")[:10]
        else:
            chosen = self.data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=min(10, len(keys)),
                                             unique=True), label="batch")
            fault = self.data.draw(st.sampled_from(FAULTS), label="fault")
            if fault:
                self.openai.fail_next(fault)
            if workers == 2 and self.data.draw(st.booleans(), label="change meanwhile"):
                change = self.plan_change()
        batches = [chosen]
        if workers == 2 and len(chosen) > 1:
            cut = self.data.draw(st.integers(1, len(chosen) - 1), label="split")
            batches = [chosen[:cut], chosen[cut:]]
        running = [self.pool.submit(self._invoke, batch) for batch in batches]
        if change is not None:
            self.pool.submit(change).result()
        for future in running:
            for key in future.result():
                self.pending.pop(key, None)
        self.capture()
        self._check_ledger_never_moves_back()

    def _invoke(self, keys: list[int]) -> list[int]:
        """One Lambda invocation; returns the delivery keys whose records succeeded."""
        event = sqs_event(*[self.pending[k] for k in keys])
        by_message_id = {r["messageId"]: k for r, k in zip(event["Records"], keys, strict=True)}
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
def test_index_converges_to_the_table_whatever_the_delivery(monkeypatch, dsn, conn, pool, openai_standin,  # noqa: F811
                                                            pinecone_standins, index):  # noqa: F811
    pinecone = start_pinecone(pinecone_standins, 16) if index == "pinecone" else None
    # Provider faults surface as record failures (no SDK retries), to be redelivered; a little
    # provider latency lets concurrent batches and changes interleave.
    openai_standin.latency_seconds = 0.02
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index=index, openai=openai_standin,
                        pinecone=pinecone, dimensions=16, max_retries=0)
    emu.emu  # noqa: B018 - build the index (and its table) before the first example

    @EXAMPLE_SETTINGS
    @given(data=st.data(), workers=st.sampled_from([1, 2]))
    def check(data: st.DataObject, workers: int) -> None:
        with conn, conn.cursor() as cur:
            tables = "products, sync_outbox, sync_state, embed_calls" + (", product_vectors" if not pinecone else "")
            cur.execute(f"TRUNCATE {tables} RESTART IDENTITY")
        if pinecone:
            pinecone.namespaces.clear()
        openai_standin.reset()
        scenario = Scenario(conn, pool, data, openai_standin)
        # Given random changes interleaved with random, faulty, concurrent deliveries
        for _ in range(data.draw(st.integers(3, 16), label="steps")):
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
        # Then nothing is stuck, and the index equals the table
        assert not scenario.pending, "messages still failing with no faults injected"
        assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)

    check()
