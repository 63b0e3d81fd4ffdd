"""Destructive maintenance touches only what is its own (ARCHITECTURE.md decision 11): gc never deletes a
Pinecone index a live generation uses, and reconcile finds and repairs drift in its own namespace only.

Real Postgres, the Emu handler, the OpenAI stand-in and the Pinecone stand-in (control and data plane).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from pinecone import Pinecone

from refarch import generations
from refarch.db import Database
from refarch.generations import EmbedderSpec, reindex
from refarch.index import pinecone_indexes
from refarch.index.pinecone_index import PineconeIndex
from refarch.index.port import VectorRecord
from refarch.index.vector_target import PineconeNamespace
from refarch.lanes.messages import BulkSyncMessage
from refarch.reconcile import find_drift, repair
from refarch.runtime import Runtime
from tests.integration.emu_support import (
    assert_index_matches_database,
    change,
    configure_emu,
    invoke_emu,
    new_product,
    query_one,
    sqs_event,
    start_pinecone,
)
from tests.integration.pelican_support import wait_for

pytest_plugins = ["tests.integration.emu_fixtures"]

SMALL_32 = EmbedderSpec("openai", "text-embedding-3-small", 32)


class CapturedQueue:
    """Stands in for the bulk lane's queue: keeps what reconcile's repair sends, for the Emu handler."""

    def __init__(self) -> None:
        self.sent: list[BulkSyncMessage] = []

    def send(self, messages: list[BulkSyncMessage]) -> None:
        """Keep the messages (they go to Emu as one SQS event)."""
        self.sent.extend(messages)


def configure_pinecone_stage(
    monkeypatch: Any, dsn: str, openai_standin: Any, pinecone: Any, *, index: str, namespace: str | None = None
) -> Runtime:
    """A stage whose configured Pinecone index (64-d, created as the deploy's custom resource does) is `index`."""
    monkeypatch.setenv("PINECONE_CONTROLLER_HOST", pinecone.url)
    created = pinecone_indexes.ensure_index(
        Pinecone(api_key=pinecone.api_key), index, dimension=64, region="us-east-1", deadline=time.monotonic() + 60
    )
    monkeypatch.setenv("PINECONE_API_KEY", pinecone.api_key)
    monkeypatch.setenv("PINECONE_INDEX_NAME", index)
    monkeypatch.setenv("PINECONE_HOST", created.host)
    if namespace:
        monkeypatch.setenv("REFARCH_PINECONE_NAMESPACE", namespace)
    return configure_emu(monkeypatch, dsn, embedder="openai", index="pinecone", openai=openai_standin)


def test_gc_keeps_a_dedicated_index_a_live_generation_was_placed_in_and_empties_only_the_old_namespace(
    monkeypatch, dsn, openai_standin, pinecone_standins
):
    # Given generation 1 (64-d) in the configured index, holding two products
    pinecone = start_pinecone(pinecone_standins, 8)  # its own data plane is not used here
    emu = configure_pinecone_stage(monkeypatch, dsn, openai_standin, pinecone, index="refarch-products")
    rows = [new_product(dsn, n) for n in (1, 2)]
    invoke_emu(sqs_event(*(change(row.id, op="insert") for row in rows)))
    # And generation 2 (32-d), in the index a re-index created for it, active
    second = reindex.start(emu.targets, SMALL_32)
    assert second.target == PineconeNamespace(
        index_name="refarch-products-g2",
        host=f"{pinecone.url}/index/refarch-products-g2",
        namespace="products-g2",
        dedicated=True,
    )
    invoke_emu(sqs_event(*(change(row.id) for row in rows)))
    reindex.switch(emu.targets)
    # And generation 3 placed later in that same index by hand (`--pinecone-index refarch-products-g2`), active
    third = reindex.start(emu.targets, SMALL_32, pinecone_index="refarch-products-g2")
    assert isinstance(third.target, PineconeNamespace) and not third.target.dedicated
    assert (third.target.index_name, third.target.namespace) == ("refarch-products-g2", "products-g3")
    invoke_emu(sqs_event(*(change(row.id) for row in rows)))
    reindex.switch(emu.targets)
    assert sorted(pinecone.vectors("products-g3", index="refarch-products-g2")) == ["1", "2"]

    # When gc drops the retired generations 1 and 2
    assert reindex.collect_garbage(emu.targets, timedelta(0)) == [1, 2]

    # Then generation 2's index, which generation 3 lives in, is kept: only generation 2's namespace is emptied
    assert set(pinecone.indexes) == {"refarch-products", "refarch-products-g2"}
    assert pinecone.vectors("products-g2", index="refarch-products-g2") == {}
    assert sorted(pinecone.vectors("products-g3", index="refarch-products-g2")) == ["1", "2"]
    # And generation 1's namespace is emptied in the configured index, which is never deleted
    assert pinecone.vectors("products", index="refarch-products") == {}
    # And search reads generation 3, which still equals the table
    active = emu.targets.active()
    assert active.generation.id == 3
    assert_index_matches_database(Database(dsn), active.index, active.embedder.model_id)
    # And both removals are recorded, so no later gc tries again
    removed = "SELECT count(*) FROM index_generations WHERE (target ->> 'index_removed')::boolean"
    assert query_one(dsn, removed) == 2


def test_reconcile_finds_and_repairs_drift_only_in_its_own_namespace(
    monkeypatch, dsn, openai_standin, pinecone_standins
):
    # Given the dev stage in its own namespace of an index another stage writes too (pinned by hand)
    pinecone = start_pinecone(pinecone_standins, 8)
    monkeypatch.setenv("REFARCH_EMU_LANE", "bulk")  # repairs go through the bulk lane
    emu = configure_pinecone_stage(
        monkeypatch, dsn, openai_standin, pinecone, index="refarch-shared", namespace="dev-products"
    )
    rows = [new_product(dsn, n) for n in (1, 2, 3)]
    invoke_emu(sqs_event(*(change(row.id, op="insert") for row in rows)))
    active = emu.targets.active()
    assert isinstance(active.generation.target, PineconeNamespace)
    assert active.generation.target.namespace == "dev-products"
    # And prod's vectors in its namespace of that index: ids dev's table lacks (777, 888) and one it has (1)
    host = pinecone.indexes["refarch-shared"]["host"]
    prod = PineconeIndex(api_key=pinecone.api_key, dimension=64, host=host, namespace="prod-products")
    metadata = {"sku": "P", "name": "prod's", "category": "c", "price": 1.0, "version": 5, "content_hash": "h"}
    prod.upsert([VectorRecord(id=pid, values=[0.1] * 64, metadata=metadata) for pid in (1, 777, 888)])
    # And one vector left behind in dev's own namespace (a row dev deleted behind the system's back)
    active.index.upsert([VectorRecord(id=777, values=[0.1] * 64, metadata=metadata)])

    # When dev's reconcile compares and repairs
    report = find_drift(emu.db, active.index, active.embedder.model_id)
    queue = CapturedQueue()
    repair(emu.db, queue, report)  # type: ignore[arg-type]
    invoke_emu(sqs_event(*queue.sent))

    # Then only dev's own leftover was extra, and only dev's namespace lost it
    assert (report.extra, report.missing, report.stale) == ([777], [], [])
    assert sorted(pinecone.vectors("dev-products", index="refarch-shared")) == ["1", "2", "3"]
    assert sorted(pinecone.vectors("prod-products", index="refarch-shared")) == ["1", "777", "888"]
    assert pinecone.vectors("prod-products", index="refarch-shared")["1"].metadata["name"] == "prod's"


def test_a_new_generation_waits_while_gc_checks_and_removes(dsn):
    # Given gc between its check of the live generations and its commit (the removal in between)
    checking = Database(dsn)
    placing = Database(dsn)
    created: list[int] = []

    def place_generation() -> None:
        with placing.transaction() as conn:
            building = generations.create_building(
                conn,
                spec=SMALL_32,
                model_id="openai:text-embedding-3-small:32",
                dimension=32,
                backend="pinecone",
                target_for=lambda gid, _: PineconeNamespace(
                    index_name="refarch-products-g2", host="h", namespace=f"p-g{gid}"
                ),
            )
            created.append(building.id)

    with checking.transaction() as conn:
        live = generations.live_while_removing(conn)
        assert [g.status for g in live] == ["active"]
        # When a re-index tries to place a new generation meanwhile (possibly in the index being removed)
        placer = threading.Thread(target=place_generation)
        placer.start()
        # Then it waits for gc's transaction: its lock request is queued behind gc's
        wait_for(
            lambda: (
                query_one(
                    dsn,
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    " AND c.relname = 'index_generations' AND NOT l.granted",
                )
                == 1
            ),
            timeout=30,
            what="the new generation's lock request to queue behind gc's",
        )
        assert created == []
    # And once gc committed, the generation is created, and the next gc sees it live
    placer.join(timeout=30)
    assert created == [2]
    with checking.transaction() as conn:
        assert [g.id for g in generations.live_while_removing(conn)] == [1, 2]
