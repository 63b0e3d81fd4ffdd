"""Changing the embedding model with zero downtime: index generations, a re-index through the bulk lane,
the switch, rollback and gc (docs/reindex.md).

Real Postgres, the real local SQS queues with the local event sources invoking the Emu handler,
the local model (384-d) for generation 1 and the OpenAI stand-in (64-d) for generation 2 (or the
Bedrock stand-in's Titan, 256-d, then OpenAI).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from pinecone import Pinecone

import lambdas.bootstrap
import lambdas.emu
from refarch import catalog, generations
from refarch.db import Database, connect
from refarch.generations import EmbedderSpec, GenerationError, IncompleteGenerationError, reindex
from refarch.index import pinecone_indexes
from refarch.index.vector_target import PgVectorTable, PineconeNamespace
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.lanes.topology import DEFAULT_TOPOLOGY
from refarch.pelican.listener import OutboxRelay
from refarch.runtime import Runtime
from refarch_local.convergence import check_convergence
from refarch_local.event_source import EventSourcePoller
from refarch_local.stepfunctions import run_bootstrap
from tests.conftest import SHORT_BATCHING_WINDOW
from tests.integration.emu_support import (
    assert_index_matches_database,
    configure_emu,
    edit_product,
    query_one,
    shared_local_embedder,
)
from tests.integration.pelican_support import wait_for

pytest_plugins = ["tests.integration.emu_fixtures"]

ROWS = 120
NEW_MODEL = EmbedderSpec("openai", "text-embedding-3-small", 64)
QUERIES = ["wireless headphones", "coffee grinder", "running shoes", "garden hose", "laptop stand", "yoga mat"]
# Generous guards against a hang; nothing here asserts how fast anything is.
WAIT_SECONDS = 300


@dataclass
class Stack:
    """The running local stack of one test: Emu on both lanes, the outbox relay on demand."""

    dsn: str
    emu: Runtime
    live: SyncQueue
    bulk: SyncQueue
    pollers: list[EventSourcePoller] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start_pollers(self) -> None:
        """The local event source of each lane, invoking the Emu handler."""
        self.threads = [threading.Thread(target=p.run, daemon=True) for p in self.pollers]
        for thread in self.threads:
            thread.start()

    def stop_pollers(self) -> None:
        """Stop both event sources; their invocations in flight finish first."""
        for poller in self.pollers:
            poller.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def relay(self) -> int:
        """Send the outbox's captured changes to the live lane, as Pelican's listener does."""
        conn = connect(self.dsn)
        try:
            return OutboxRelay(self.dsn, self.live).drain(conn)
        finally:
            conn.close()

    def idle(self) -> bool:
        """Both lanes drained (nothing visible, nothing in flight)."""
        return all(q.depth() == {"visible": 0, "in_flight": 0} for q in (self.live, self.bulk))

    def progress(self, generation_id: int) -> dict:
        """A generation's progress, checked against the table."""
        with self.emu.db.transaction() as conn:
            return generations.progress(conn, generation_id)

    def wait_complete(self, generation_id: int) -> None:
        """Until Emu has filled the generation with every row at its current version (checked against the table).

        Nothing is re-sent: every message here reaches Emu, and a lost one fails the test. Re-sending
        is the Reindex state machine's (its Fill when the lanes are idle and rows are missing), tested
        in test_reindex_handler.py.
        """
        wait_for(lambda: self.progress(generation_id)["complete"], WAIT_SECONDS, f"generation {generation_id} complete")


@pytest.fixture
def stack(monkeypatch, dsn, local_settings, openai_standin, bedrock_standin) -> Iterator[Stack]:
    """Products seeded and generation 1 (local model, pgvector) built by a bootstrap, Emu polling both lanes."""
    for name, value in SHORT_BATCHING_WINDOW.items():
        monkeypatch.setenv(name, value)
    emu = configure_emu(
        monkeypatch,
        dsn,
        embedder="local",
        index="pgvector",
        openai=openai_standin,
        bedrock=bedrock_standin,
        max_retries=5,
    )
    monkeypatch.setattr(lambdas.bootstrap, "runtime", Runtime(application_name="bootstrap"))
    client = make_sqs_client(local_settings)
    live = SyncQueue.for_lane(client, local_settings, "live")
    bulk = SyncQueue.for_lane(client, local_settings, "bulk")
    running = Stack(dsn, emu, live, bulk)
    running.pollers = [
        EventSourcePoller(client, live.url, lane=DEFAULT_TOPOLOGY.live, concurrency=2),
        EventSourcePoller(client, bulk.url, lane=DEFAULT_TOPOLOGY.bulk, concurrency=2),
    ]
    running.start_pollers()
    conn = connect(dsn)
    try:
        catalog.seed(conn, ROWS)
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE sync_outbox SET enqueued_at = now()")  # the bootstrap sends them instead
    finally:
        conn.close()
    run_bootstrap(range_size=50)
    deadline = time.monotonic() + WAIT_SECONDS
    while not running.progress(1)["complete"]:
        assert time.monotonic() < deadline, "generation 1 was not built"
        time.sleep(0.2)
    # ... and its last bulk messages handled: a batch still in Emu's hands when a test starts a new
    # generation would (rightly) write its rows into that generation too, which the tests do not expect.
    wait_for(running.idle, WAIT_SECONDS, "both lanes idle after the bootstrap")
    yield running
    running.stop_pollers()


class Searcher:
    """A web task's search service, queried continuously from a thread; counts errors and empty pages."""

    def __init__(self, web: Runtime) -> None:
        self.web = web
        self.stop = threading.Event()
        self.served: Counter[int] = Counter()  # queries answered per active generation
        self.errors: list[str] = []
        self.empty: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            query = QUERIES[n % len(QUERIES)]
            n += 1
            try:
                # The generation this search reads: the search path caches its own view of the active one.
                generation = self.web.search_targets.active().generation.id
                page = self.web.search.search(query, k=10)
            except Exception as err:  # counted, and the test fails on any
                self.errors.append(f"{query}: {type(err).__name__}: {err}")
                continue
            self.served[generation] += 1
            if not page.hits:
                self.empty.append(f"{query} (generation {generation})")
            # A search every few milliseconds (well over 100 a second): a tight loop would take a core and
            # the GIL from the Emu workers this process runs, for no more coverage of a switch.
            self.stop.wait(0.005)

    def wait_served(self, generation_id: int, queries: int) -> None:
        """Until at least `queries` more queries were answered by this generation."""
        target = self.served[generation_id] + queries
        deadline = time.monotonic() + WAIT_SECONDS
        while self.served[generation_id] < target:
            assert not self.errors, self.errors[:3]
            assert time.monotonic() < deadline, f"generation {generation_id} never served: {dict(self.served)}"
            time.sleep(0.05)


@pytest.fixture
def searcher(stack: Stack) -> Iterator[Searcher]:
    """A separate runtime, as a web task is: its own cache of the active generation."""
    web = Runtime(application_name="web")
    web.__dict__["embedder"] = shared_local_embedder()
    running = Searcher(web)
    running.thread.start()
    yield running
    running.stop.set()
    running.thread.join(timeout=30)


def test_a_reindex_to_another_model_serves_every_query_before_during_and_after_the_switch(stack, searcher):
    # Given generation 1 (local model, 384-d) active and search answering from it
    searcher.wait_served(1, 5)
    # When a re-index to the OpenAI model (64-d) starts
    building = reindex.start(stack.emu.targets, NEW_MODEL)
    assert (building.id, building.status, building.dimension) == (2, "building", 64)
    assert building.target == PgVectorTable(table="product_vectors_g2")
    # And a product is edited while generation 2 builds (its change goes through the live lane)
    edited = edit_product(stack.dsn, 7, description="A zebra-striped quantum kettle that whistles in Morse code.")
    assert stack.relay() == 1
    # Then the edit is searchable in the active generation while generation 2 is still building
    deadline = time.monotonic() + WAIT_SECONDS
    while not (hits := searcher.web.search.search("zebra-striped quantum kettle", k=3).hits) or hits[0].product.id != 7:
        assert time.monotonic() < deadline, "the edit never became searchable in generation 1"
        time.sleep(0.1)
    with stack.emu.db.transaction() as conn:
        assert generations.active(conn).id == 1 and generations.building(conn) is not None
    # And switching before generation 2 holds every row is refused (checked against the table)
    if not stack.progress(2)["complete"]:
        with pytest.raises(IncompleteGenerationError):
            reindex.switch(stack.emu.targets)
    # When the bulk lane fills generation 2 and it is switched to
    run_bootstrap(generation=2, range_size=50)
    searcher.wait_served(1, 5)  # search kept answering from generation 1 during the build
    stack.wait_complete(2)
    previous, new = reindex.switch(stack.emu.targets)
    assert (previous.id, new.id) == (1, 2)
    # Then web tasks follow the switch without a restart, and no query failed or came back empty
    searcher.wait_served(2, 20)
    assert searcher.errors == [] and searcher.empty == []
    # And the edit is in generation 2 at its new version, and found there
    gen2 = stack.emu.targets.active()
    assert gen2.generation.id == 2 and gen2.embedder.model_id == "openai:text-embedding-3-small:64"
    assert gen2.index.fetch_metadata([7])[7]["version"] == edited.version
    # And generation 2's index equals the table (ids, versions, content hashes by the new model)
    assert_index_matches_database(Database(stack.dsn), gen2.index, gen2.embedder.model_id)
    report = check_convergence(Database(stack.dsn), gen2.index, gen2.embedder, sample=10, generation=2)
    assert report.clean, report.detail()
    # And every row was embedded once by the new model (plus once more for the edit made before it was sent)
    texts = query_one(stack.dsn, "SELECT sum(texts) FROM embed_calls WHERE model = %s", (gen2.embedder.model_id,))
    assert ROWS <= texts <= ROWS + 1


def test_a_reindex_local_to_bedrock_to_openai_serves_every_query_while_bedrock_throttles(
    stack, searcher, bedrock_standin
):
    # Given generation 1 (local model) active and search answering from it
    searcher.wait_served(1, 5)
    titan = EmbedderSpec("bedrock", "amazon.titan-embed-text-v2:0", 256)
    # When a re-index to Bedrock's Titan (256-d) runs while Bedrock throttles a fifth of the requests
    bedrock_standin.fault_rate = 0.2
    bedrock_standin.fault_kinds = ("rate_limit",)
    assert reindex.start(stack.emu.targets, titan).dimension == 256
    run_bootstrap(generation=2, range_size=50)
    stack.wait_complete(2)
    bedrock_standin.fault_rate = 0.0
    reindex.switch(stack.emu.targets)
    # Then search follows to generation 2 and the throttling cost retries, not rows
    searcher.wait_served(2, 20)
    assert bedrock_standin.faults["rate_limit"] > 0
    gen2 = stack.emu.targets.active()
    assert gen2.embedder.model_id == "bedrock:amazon.titan-embed-text-v2:0:256"
    assert_index_matches_database(Database(stack.dsn), gen2.index, gen2.embedder.model_id)
    texts = query_one(stack.dsn, "SELECT sum(texts) FROM embed_calls WHERE model = %s", (gen2.embedder.model_id,))
    assert texts == ROWS  # each row embedded once by Titan
    # When a second re-index goes on from Bedrock to OpenAI
    reindex.start(stack.emu.targets, NEW_MODEL)
    run_bootstrap(generation=3, range_size=50)
    stack.wait_complete(3)
    reindex.switch(stack.emu.targets)
    # Then search follows again; across both re-indexes no query failed or came back empty
    searcher.wait_served(3, 20)
    assert searcher.errors == [] and searcher.empty == []
    gen3 = stack.emu.targets.active()
    assert gen3.embedder.model_id == "openai:text-embedding-3-small:64"
    assert_index_matches_database(Database(stack.dsn), gen3.index, gen3.embedder.model_id)


def test_rollback_restores_the_previous_generation_at_once_and_gc_drops_the_retired_one(stack, searcher):
    # Given generation 2 built and active, generation 1 retired
    reindex.start(stack.emu.targets, NEW_MODEL)
    run_bootstrap(generation=2, range_size=50)
    stack.wait_complete(2)
    reindex.switch(stack.emu.targets)
    searcher.wait_served(2, 5)
    # And a product edited after the switch (the retired generation is kept in sync for a rollback)
    edited = edit_product(stack.dsn, 11, name="Retro cassette walkman")
    stack.relay()
    deadline = time.monotonic() + WAIT_SECONDS
    while not (stack.progress(1)["complete"] and stack.progress(2)["complete"]):
        assert time.monotonic() < deadline, "the edit never reached both generations"
        time.sleep(0.1)
    # When rolling back
    previous, restored = reindex.rollback(stack.emu.targets)
    # Then generation 1 is active again, whole and current, with no rebuild
    assert (previous.id, restored.id) == (2, 1)
    searcher.wait_served(1, 20)
    assert searcher.errors == [] and searcher.empty == []
    gen1 = stack.emu.targets.active()
    assert gen1.index.fetch_metadata([11])[11]["version"] == edited.version
    assert_index_matches_database(Database(stack.dsn), gen1.index, gen1.embedder.model_id)
    # When the retired generation 2 is past the grace period (0 here) and gc runs
    assert reindex.collect_garbage(stack.emu.targets, timedelta(0)) == [2]
    # Then its table and ledger rows are gone, and search still answers from generation 1
    assert query_one(stack.dsn, "SELECT to_regclass('product_vectors_g2')") is None
    assert query_one(stack.dsn, "SELECT count(*) FROM sync_state WHERE generation = 2") == 0
    searcher.wait_served(1, 5)
    assert searcher.errors == [] and searcher.empty == []


def test_a_reindex_rerun_after_a_crash_embeds_only_what_is_missing(stack):
    # Given a re-index whose build stopped half way (the bulk lane's Emu was down, the run abandoned)
    stack.stop_pollers()
    building = reindex.start(stack.emu.targets, NEW_MODEL)
    run_bootstrap(generation=building.id, range_size=50)
    first = receive_all(stack.bulk)[:1]
    done = len(json.loads(first[0]["Body"])["items"])
    outcome = stack.emu.emu.process({m["MessageId"]: m["Body"] for m in first})
    assert outcome.failures == {} and outcome.embedded == done  # generation 1 already holds them: skipped
    # (the crash lost every other message: they were received above and never processed)
    # When the re-index is run again (another bootstrap pass for the building generation)
    result = run_bootstrap(generation=building.id, range_size=50)
    # Then only the missing rows are sent, and each is embedded once
    assert result["enqueued"] == ROWS - done
    messages = receive_all(stack.bulk)
    assert stack.emu.emu.process({m["MessageId"]: m["Body"] for m in messages}).failures == {}
    assert stack.progress(building.id)["complete"]
    texts = query_one(stack.dsn, "SELECT sum(texts) FROM embed_calls WHERE model = %s", (building.model_id,))
    assert texts == ROWS


def receive_all(queue: SyncQueue) -> list[dict]:
    """Take every message off the queue (received and deleted)."""
    taken: list[dict] = []
    while batch := queue.client.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10).get("Messages"):
        for m in batch:
            queue.client.delete_message(QueueUrl=queue.url, ReceiptHandle=m["ReceiptHandle"])
        taken += batch
    return taken


def test_a_second_reindex_while_one_builds_is_refused_with_advice(stack):
    # Given a generation building
    reindex.start(stack.emu.targets, NEW_MODEL)
    # When another one is started, Then it is refused, naming how to finish or abandon the first
    with pytest.raises(GenerationError, match="already building.*--switch.*--abort"):
        reindex.start(stack.emu.targets, EmbedderSpec("openai", "text-embedding-3-small", 32))
    # And switching with nothing built yet is refused, saying what is missing
    with pytest.raises(IncompleteGenerationError, match=f"lacks {ROWS} of {ROWS} rows"):
        reindex.switch(stack.emu.targets)
    # And while it builds, a live edit reaches it (as every change does)
    first = edit_product(stack.dsn, 1, name="Edited while building")
    stack.relay()
    wait_for(lambda: ledger_version(stack.dsn, 2, 1) == first.version, WAIT_SECONDS, "the edit in generation 2")
    # When it is abandoned, Then it is no longer written: a later edit reaches generation 1 only
    reindex.abort(stack.emu.targets)
    second = edit_product(stack.dsn, 2, name="Edited after the abort")
    stack.relay()
    wait_for(lambda: ledger_version(stack.dsn, 1, 2) == second.version, WAIT_SECONDS, "the edit in generation 1")
    wait_for(stack.idle, WAIT_SECONDS, "both lanes idle")
    assert ledger_version(stack.dsn, 2, 2) is None
    # And no rollback can make it active (it never was): there is no retired generation to return to
    with pytest.raises(GenerationError, match="no retired generation"):
        reindex.rollback(stack.emu.targets)
    assert query_one(stack.dsn, "SELECT status FROM index_generations WHERE id = 2") == "abandoned"
    # And gc drops it at once, whatever the grace period, and generation 1 stays active
    assert reindex.collect_garbage(stack.emu.targets) == [2]
    with stack.emu.db.transaction() as conn:
        assert generations.active(conn).id == 1 and generations.building(conn) is None


def ledger_version(dsn: str, generation: int, product_id: int) -> int | None:
    """The version a generation's ledger holds for a product (None: no entry)."""
    return query_one(
        dsn,
        "SELECT indexed_version FROM sync_state WHERE generation = %s AND product_id = %s",
        (generation, product_id),
    )


def test_the_cli_creates_lists_and_refuses_an_early_switch_with_the_reason(stack):
    from click.testing import CliRunner

    from refarch_cli.commands import main

    def cli(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    # Given generation 1 active, When the CLI records a building generation for a 64-d OpenAI model
    created = cli("reindex", "--create-only", "--embedder", "openai", "--openai-dimensions", "64")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout) == {
        "generation": 2,
        "model_id": "openai:text-embedding-3-small:64",
        "target": {"table": "product_vectors_g2"},
    }
    # Then --list and `refarch status` show it building, with its progress
    listed = json.loads(cli("reindex", "--list").stdout)
    assert [(g["id"], g["status"]) for g in listed["generations"]] == [(1, "active"), (2, "building")]
    assert listed["building"]["rows"] == ROWS
    status = json.loads(cli("status", "--json").stdout)
    assert (status["generation"], status["building_generation"], status["building_rows"]) == (1, 2, ROWS)
    # And switching before it holds every row fails with the reason (exit 1), leaving generation 1 active
    early = cli("reindex", "--switch")
    assert early.exit_code == 1 and "cannot switch: generation 2" in early.output and "lacks" in early.output
    # And two actions at once are a usage error
    both = cli("reindex", "--switch", "--rollback")
    assert both.exit_code == 2 and "choose one of --switch, --rollback" in both.output


def test_on_pinecone_a_generation_gets_its_own_namespace_and_a_new_dimension_needs_its_own_index(
    monkeypatch, dsn, openai_standin, pinecone_standins
):
    from tests.integration.emu_support import change, invoke_emu, new_product, sqs_event, start_pinecone

    # Given generation 1 on Pinecone (64-d OpenAI model, namespace "products") holding one product
    pinecone = start_pinecone(pinecone_standins, 64)
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index="pinecone", openai=openai_standin, pinecone=pinecone)
    row = new_product(dsn, 1)
    invoke_emu(sqs_event(change(row.id, op="insert")))
    # When a re-index to another model of the same dimension starts
    building = reindex.start(emu.targets, EmbedderSpec("openai", "text-embedding-3-large", 64))
    # Then it writes to a namespace of its own in the same index, and a change reaches both generations
    assert isinstance(building.target, PineconeNamespace)
    assert building.target.namespace == "products-g2" and building.target.host == pinecone.url
    edited = edit_product(dsn, row.id, name="Widget One")
    invoke_emu(sqs_event(change(row.id, version=edited.version)))
    new_index = emu.targets.target(building).index
    assert new_index.fetch_metadata([row.id])[row.id]["version"] == edited.version
    assert emu.targets.active().index.fetch_metadata([row.id])[row.id]["version"] == edited.version
    # And a model of another dimension, with no index name to derive a new index's name from, is
    # refused with what to do
    reindex.abort(emu.targets)
    with pytest.raises(GenerationError, match="holds 64-d vectors and the new model produces 32-d.*--pinecone-index"):
        reindex.start(emu.targets, EmbedderSpec("openai", "text-embedding-3-small", 32))


def test_on_pinecone_a_new_dimension_gets_an_index_created_beside_the_first_and_gc_deletes_it(
    monkeypatch, dsn, openai_standin, pinecone_standins
):
    from tests.integration.emu_support import change, invoke_emu, new_product, sqs_event, start_pinecone

    # Given the configured Pinecone index, created as the deploy's custom resource creates it (64-d,
    # us-west-2, not the settings' AWS region), and generation 1 in it holding two products
    pinecone = start_pinecone(pinecone_standins, 8)  # its own data plane is not used here
    monkeypatch.setenv("PINECONE_CONTROLLER_HOST", pinecone.url)
    pc = Pinecone(api_key=pinecone.api_key)
    first = pinecone_indexes.ensure_index(
        pc, "refarch-products", dimension=64, region="us-west-2", deadline=time.monotonic() + 60
    )
    monkeypatch.setenv("PINECONE_API_KEY", pinecone.api_key)
    monkeypatch.setenv("PINECONE_INDEX_NAME", "refarch-products")
    monkeypatch.setenv("PINECONE_HOST", first.host)
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index="pinecone", openai=openai_standin)
    rows = [new_product(dsn, n) for n in (1, 2)]
    invoke_emu(sqs_event(*(change(row.id, op="insert") for row in rows)))

    # When a re-index to a model of another dimension (32-d) starts
    building = reindex.start(emu.targets, EmbedderSpec("openai", "text-embedding-3-small", 32))

    # Then it created an index of that dimension beside the first, by the custom resource's code
    name = "refarch-products-g2"
    assert building.target == PineconeNamespace(
        index_name=name, host=f"{pinecone.url}/index/{name}", namespace="products-g2", dedicated=True
    )
    created = pinecone.indexes[name]
    assert created["schema"]["fields"]["_values"] == {"type": "dense_vector", "dimension": 32, "metric": "cosine"}
    assert created["deployment"]["region"] == "us-west-2"
    # When every change is applied (to both generations) and generation 2 is switched to
    edited = edit_product(dsn, rows[0].id, name="Widget One")
    invoke_emu(sqs_event(change(rows[0].id, version=edited.version), change(rows[1].id)))
    reindex.switch(emu.targets)
    # Then search reads the new index, which equals the table; its 32-d vectors are in the new index only
    active = emu.targets.active()
    assert active.generation.id == 2 and active.index.dimension == 32
    assert_index_matches_database(Database(dsn), active.index, active.embedder.model_id)
    assert {len(v.values) for v in pinecone.vectors("products-g2", index=name).values()} == {32}
    assert pinecone.vectors("products-g2", index="refarch-products") == {}
    # When rolled back, and gc drops the retired generation 2
    reindex.rollback(emu.targets)
    assert reindex.collect_garbage(emu.targets, timedelta(0)) == [2]
    # Then the index created for it is deleted whole; the first index keeps generation 1's vectors
    assert set(pinecone.indexes) == {"refarch-products"}
    assert sorted(pinecone.vectors("products", index="refarch-products")) == ["1", "2"]
