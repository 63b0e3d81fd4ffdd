"""Bring your own table: a table made outside the project is synced from its source definition alone.

The second example (support articles: a uuid key, a long body, an author and a published flag) is
created here the way its owner would, with columns the definition does not name. `refarch db
migrate` adds triggers, side tables and an index, and no column; Emu, reconcile and the
convergence check read it through `source_rows` exactly as they read products.
"""

from __future__ import annotations

import contextlib
import json
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from refarch import generations
from refarch.db import connect, migrate, with_database
from refarch.generations import EmbedderSpec
from refarch.generations.reindex_flow import ensure_building
from refarch.lanes.messages import SyncMessage, bulk_messages
from refarch.pelican import outbox
from refarch.reconcile import find_drift
from refarch.runtime import Runtime
from refarch.search.service import SearchInputError, SearchRequest
from refarch.source import Source, SourceError, load
from refarch.source.definition import PINECONE_METADATA_LIMIT_BYTES, parse
from refarch_local import articles
from refarch_local.convergence import Convergence, check_convergence
from refarch_local.database import LocalDatabase
from refarch_local.standins import OpenAIStandIn, PineconeStandIn
from tests.integration.emu_support import (
    OPENAI_DIMENSIONS,
    assert_index_matches_database,
    configure_emu,
    embed_calls_recorded,
    failed_ids,
    invoke_emu,
    query_one,
    sqs_event,
    start_pinecone,
)

pytest_plugins = ["tests.integration.emu_fixtures"]

ARTICLES = load("articles")


@pytest.fixture
def blank_dsn(pg_server: LocalDatabase) -> Iterator[str]:
    """An empty database on the session's server (no migration applied), dropped after the test."""
    name = f"b_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield with_database(pg_server.dsn, name)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def make_articles(dsn: str, rows: int) -> None:
    conn = connect(dsn)
    with conn:
        articles.create_table(conn)
        assert articles.seed(conn, rows) == rows
    conn.close()


def columns_of(dsn: str, table: str) -> list[tuple[str, str, str, str | None]]:
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns"
            " WHERE table_name = %s ORDER BY ordinal_position",
            (table,),
        )
        found = cur.fetchall()
    conn.close()
    return found


def execute(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> int:
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(sql, params)
        count = cur.rowcount
    conn.close()
    return count


def captured(dsn: str) -> list[SyncMessage]:
    """The outbox rows not yet sent, as the listener sends them (and marked sent)."""
    conn = connect(dsn)
    with conn:
        rows = outbox.claim(conn, 100_000)
        outbox.mark_enqueued(conn, [r.id for r in rows])
    conn.close()
    return [
        SyncMessage(product_id=r.product_id, version=r.version, op=r.op, source="change", outbox_id=r.id)  # type: ignore[arg-type]
        for r in rows
    ]


def bootstrap(dsn: str) -> None:
    """Every row to the bulk lane's Emu, as the bootstrap fan-out sends it."""
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id, version FROM source_rows ORDER BY id")
        work = [(pid, version, "sync") for pid, version in cur.fetchall()]
    conn.close()
    messages = bulk_messages(work, source="bootstrap")
    for start in range(0, len(messages), 10):
        assert failed_ids(invoke_emu(sqs_event(*messages[start : start + 10]))) == set()


def test_a_table_of_10000_rows_made_outside_the_project_is_synced_with_no_column_added(
    monkeypatch, blank_dsn, openai_standin
):
    # Given a table of 10,000 articles, made and filled by its owner before the project arrived
    make_articles(blank_dsn, 10_000)
    before = columns_of(blank_dsn, "articles")
    # When the database is migrated for the articles source
    migrate(blank_dsn, source=ARTICLES)
    # Then not one column of the table was added or changed, every row has an id, and nothing was captured
    assert columns_of(blank_dsn, "articles") == before
    assert query_one(blank_dsn, "SELECT count(*) FROM source_rows") == 10_000
    assert query_one(blank_dsn, "SELECT count(*) FROM sync_outbox") == 0
    # And the bootstrap's messages index every row, each at its version, text and metadata (requests of 512
    # texts: the deployed 10 s timeout, not the harness's 1 s, which the stand-in of a busy machine once missed
    # three times in a row)
    emu = configure_emu(
        monkeypatch, blank_dsn, embedder="openai", index="pgvector", openai=openai_standin, timeout_seconds=10.0
    )
    bootstrap(blank_dsn)
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    found = check_convergence(emu.db, emu.index, emu.embedder, sample=5)
    assert found.clean and found.rows == found.vectors == 10_000, found.detail()
    # And each vector carries the row's key and metadata columns (the link back, the filters)
    key = str(articles.article_id(7))
    row_id = query_one(blank_dsn, "SELECT id FROM source_rows WHERE key = %s", (key,))
    stored = emu.index.fetch_metadata([row_id])[row_id]
    assert {k: stored[k] for k in ("key", "title", "author", "published")} == {
        "key": key,
        "title": articles.article(7)["title"],
        "author": articles.article(7)["author"],
        "published": True,
    }


def test_a_column_neither_embedded_nor_metadata_syncs_nothing_and_metadata_is_not_embedded_again(
    monkeypatch, blank_dsn, openai_standin
):
    # Given 1,000 articles, synced
    emu = articles_emu(monkeypatch, blank_dsn, 1_000, openai_standin)
    bootstrap(blank_dsn)
    calls, texts = embed_calls_recorded(blank_dsn), openai_standin.texts

    # When only a column the definition does not name changes, on all 1,000 rows
    assert execute(blank_dsn, "UPDATE articles SET views = views + 1") == 1_000
    # Then nothing is captured (no queue message to send) and nothing is embedded
    assert captured(blank_dsn) == []
    assert (embed_calls_recorded(blank_dsn), openai_standin.texts) == (calls, texts)

    # When a metadata column that is not embedded changes on 10 rows
    keys = [str(articles.article_id(i)) for i in range(1, 11)]
    assert (
        execute(blank_dsn, "UPDATE articles SET published = NOT published WHERE article_id = ANY(%s::uuid[])", (keys,))
        == 10
    )
    changes = captured(blank_dsn)
    assert len(changes) == 10 and {m.op for m in changes} == {"update"}
    assert failed_ids(invoke_emu(sqs_event(*changes))) == set()
    # Then the index's metadata follows, and nothing was embedded
    assert (embed_calls_recorded(blank_dsn), openai_standin.texts) == (calls, texts)
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    assert check_convergence(emu.db, emu.index, emu.embedder, sample=5).clean
    texts = openai_standin.texts  # the check embedded its sample again

    # When an embedded column changes on one row, that row alone is embedded again
    execute(blank_dsn, "UPDATE articles SET body = body || ' Updated.' WHERE article_id = %s", (keys[2],))
    assert failed_ids(invoke_emu(sqs_event(*captured(blank_dsn)))) == set()
    assert (embed_calls_recorded(blank_dsn), openai_standin.texts) == (calls + 1, texts + 1)
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def random_writes(dsn: str, rng: random.Random, steps: int) -> None:
    """Inserts, edits of every kind of column, deletes, keys inserted again and keys changed."""
    conn = connect(dsn)
    deleted: list[str] = []
    with conn.cursor() as cur:
        for step in range(steps):
            cur.execute("SELECT article_id::text FROM articles ORDER BY article_id")
            keys = [r[0] for r in cur.fetchall()]
            kind = rng.choice(["title", "body", "author", "published", "views", "delete", "insert", "again", "rekey"])
            key = rng.choice(keys) if keys else None
            if kind == "again" and not deleted:
                kind = "insert"
            if kind == "insert" or key is None:
                cur.execute(
                    "INSERT INTO articles (article_id, title, author, body) VALUES (%s, %s, 'New Author', %s)",
                    (str(uuid.UUID(int=rng.getrandbits(128))), f"New article {step}", f"Fresh text {step}."),
                )
            elif kind == "again":
                cur.execute(
                    "INSERT INTO articles (article_id, title, author) VALUES (%s, %s, 'Back Again')",
                    (deleted.pop(), f"Restored {step}"),
                )
            elif kind == "delete":
                cur.execute("DELETE FROM articles WHERE article_id = %s", (key,))
                deleted.append(key)
            elif kind == "rekey":
                cur.execute("UPDATE articles SET article_id = %s WHERE article_id = %s", (str(uuid.uuid4()), key))
            elif kind == "published":
                cur.execute("UPDATE articles SET published = NOT published WHERE article_id = %s", (key,))
            elif kind == "views":
                cur.execute("UPDATE articles SET views = views + 1 WHERE article_id = %s", (key,))
            else:
                cur.execute(f"UPDATE articles SET {kind} = {kind} || %s WHERE article_id = %s", (f" {step}", key))
            if rng.random() < 0.3:
                conn.commit()
        conn.commit()
    conn.close()


def articles_emu(
    monkeypatch: pytest.MonkeyPatch,
    dsn: str,
    rows: int,
    openai_standin: OpenAIStandIn,
    pinecone_standins: list[PineconeStandIn] | None = None,
    backend: str = "pgvector",
) -> Runtime:
    """`rows` articles in a migrated database, and Emu configured for them on `backend` (OpenAI stand-in;
    the Pinecone stand-ins only for "pinecone")."""
    make_articles(dsn, rows)
    migrate(dsn, source=ARTICLES)
    pinecone = start_pinecone(pinecone_standins or [], OPENAI_DIMENSIONS) if backend == "pinecone" else None
    return configure_emu(monkeypatch, dsn, embedder="openai", index=backend, openai=openai_standin, pinecone=pinecone)


def deliver_with_faults(
    dsn: str, rng: random.Random, openai_standin: OpenAIStandIn, write: Callable[[], None], *, rounds: int, late: int
) -> None:
    """Rounds of `write`, each round's captured changes delivered shuffled, a third of them twice and up to
    `late` earlier ones again, one message at a time (as a FIFO queue hands out a product group's), while
    the provider fails a fifth of its requests; then every message once more with no fault (SQS redelivers
    what failed, at least once), each succeeding."""
    delivered: list[SyncMessage] = []
    openai_standin.fault_rate, openai_standin.fault_kinds = 0.2, ("server_error", "rate_limit")
    for _ in range(rounds):
        write()
        messages = captured(dsn)
        batch = messages + rng.sample(messages, len(messages) // 3) + rng.sample(delivered, min(late, len(delivered)))
        rng.shuffle(batch)
        delivered += messages
        for message in batch:
            with contextlib.suppress(BatchProcessingError):  # every record failed: SQS delivers it again
                invoke_emu(sqs_event(message))
    assert sum(openai_standin.faults.values()) > 0
    openai_standin.fault_rate = 0.0
    for message in delivered:
        assert failed_ids(invoke_emu(sqs_event(message))) == set()


def assert_synced(emu: Runtime, *, sample: int) -> Convergence:
    """Index == table (chunk by chunk), by the ledger, an independent check and reconcile alike; the check."""
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    found = check_convergence(emu.db, emu.index, emu.embedder, sample=sample)
    assert found.clean, found.detail()
    drift = find_drift(emu.db, emu.index, emu.embedder.model_id)
    assert (drift.missing, drift.stale, drift.extra, drift.ledger_drift) == ([], [], [], [])
    return found


@pytest.mark.parametrize("backend", ["pgvector", "pinecone"])
def test_articles_converge_whatever_the_writes_duplicates_reordering_and_retries(
    monkeypatch, blank_dsn, openai_standin, pinecone_standins, backend
):
    # Given 60 articles synced on either backend
    emu = articles_emu(monkeypatch, blank_dsn, 60, openai_standin, pinecone_standins, backend)
    bootstrap(blank_dsn)
    rng = random.Random(11)
    # When rounds of random writes are captured and delivered out of order, some twice, some late,
    # while the provider fails a fifth of the requests, and every message is delivered once more at the end
    deliver_with_faults(blank_dsn, rng, openai_standin, lambda: random_writes(blank_dsn, rng, 25), rounds=6, late=5)
    # Then the index holds exactly the table's rows, at their versions, texts and metadata, by the ledger,
    # an independent check and reconcile (trusting neither) alike
    found = assert_synced(emu, sample=20)
    assert found.rows == query_one(blank_dsn, "SELECT count(*) FROM articles")


def test_an_invalid_definition_is_refused_at_migrate_before_anything_changes(blank_dsn):
    # Given an articles table whose author column is named otherwise, and whose key is text
    execute(
        blank_dsn,
        "CREATE TABLE articles (article_id text PRIMARY KEY, title text NOT NULL, writer text,"
        " published boolean, body text)",
    )
    # When the database is migrated for the articles source
    with pytest.raises(SourceError) as refused:
        migrate(blank_dsn, source=ARTICLES)
    # Then every problem is named, and not one migration, trigger or table was made
    assert "column 'author' is not a column of public.articles" in refused.value.problems
    assert "key column 'article_id' is text, not uuid as key.type says" in refused.value.problems
    assert query_one(
        blank_dsn, "SELECT to_regclass('schema_migrations') IS NULL AND to_regclass('sync_outbox') IS NULL"
    )
    assert query_one(blank_dsn, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'articles'::regclass") == 0


def test_a_database_that_synced_one_table_refuses_another(monkeypatch, blank_dsn, openai_standin):
    articles_emu(monkeypatch, blank_dsn, 20, openai_standin)
    bootstrap(blank_dsn)
    with pytest.raises(SourceError, match="this database syncs public.articles .* give the new source a database"):
        migrate(blank_dsn, source=load("products"))


def definition_with(tmp_path: Path, old: str, new: str) -> Source:
    """A copy of the articles definition with one change."""
    text = Path(ARTICLES.path).read_text()
    assert old in text
    changed = tmp_path / "articles.toml"
    changed.write_text(text.replace(old, new))
    return load(changed)


def test_a_new_text_template_is_a_new_generation_and_the_active_one_keeps_its_vectors_until_the_switch(
    monkeypatch, blank_dsn, openai_standin, tmp_path
):
    # Given 30 articles indexed from "{title}\n\n{body}"
    emu = articles_emu(monkeypatch, blank_dsn, 30, openai_standin)
    bootstrap(blank_dsn)
    texts = openai_standin.texts
    # When the definition embeds the title alone, and the database is migrated
    migrate(blank_dsn, source=definition_with(tmp_path, 'embed = "{title}\\n\\n{body}"', 'embed = "{title}"'))
    # Then the re-index starts a generation of its own for the new text (as for a new model)
    building, needed = ensure_building(emu.targets, EmbedderSpec.from_settings(emu.settings))
    assert needed and building.id == 2 and building.status == "building"
    # And filling it embeds each row once, for the new generation only: the active one keeps its vectors
    bootstrap(blank_dsn)
    assert openai_standin.texts == texts + 30
    # And an edit made meanwhile reaches both (the active generation stays live)
    execute(blank_dsn, "UPDATE articles SET title = 'Renamed' WHERE article_id = %s", (str(articles.article_id(5)),))
    assert failed_ids(invoke_emu(sqs_event(*captured(blank_dsn)))) == set()
    assert openai_standin.texts == texts + 32
    # And reconcile finds nothing to repair in the active generation made from the previous text
    assert find_drift(emu.db, emu.index, emu.embedder.model_id).clean
    # When the switch happens, the new generation holds every row embedded from the new text
    with emu.db.transaction() as conn:
        old, new = generations.switch(conn, building.id)
    assert (new.id, old.id) == (2, 1)
    index = emu.targets.target(new).index
    found = check_convergence(emu.db, index, emu.embedder, sample=30, generation=2)
    assert found.clean and found.rows == 30, found.detail()
    assert (
        query_one(blank_dsn, "SELECT embedding_text FROM source_rows WHERE key = %s", (str(articles.article_id(5)),))
        == "Renamed"
    )


def test_new_metadata_columns_are_backfilled_without_embedding(monkeypatch, blank_dsn, openai_standin, tmp_path):
    # Given 30 articles indexed, with title, author and published as metadata
    emu = articles_emu(monkeypatch, blank_dsn, 30, openai_standin)
    bootstrap(blank_dsn)
    calls, texts = embed_calls_recorded(blank_dsn), openai_standin.texts
    # When the definition adds `views` to the metadata, and the database is migrated
    views = definition_with(
        tmp_path, "[columns.published]", '[columns.views]\ntype = "integer"\nmetadata = true\n\n[columns.published]'
    )
    execute(blank_dsn, "UPDATE articles SET views = 7")  # not synced yet: not in the definition
    migrate(blank_dsn, source=views)
    # Then every row is due again (one outbox row each), and delivering them embeds nothing
    backfill = captured(blank_dsn)
    assert len(backfill) == 30 and {m.op for m in backfill} == {"update"}
    for start in range(0, 30, 10):
        assert failed_ids(invoke_emu(sqs_event(*backfill[start : start + 10]))) == set()
    assert (embed_calls_recorded(blank_dsn), openai_standin.texts) == (calls, texts)
    # And every vector now carries the new column
    stored = emu.index.fetch_metadata([m.product_id for m in backfill])
    assert {meta["views"] for meta in stored.values()} == {7}
    assert check_convergence(emu.db, emu.index, emu.embedder, sample=0).clean


@pytest.mark.parametrize(
    ("key_type", "column_type", "keys"), [("text", "text", ("a-1", "b-2", "c-3")), ("bigint", "bigint", (7, 70, 700))]
)
def test_text_and_bigint_keys_sync_like_uuid_ones(monkeypatch, blank_dsn, openai_standin, key_type, column_type, keys):
    # Given a notes table keyed by text or by bigint, made by its owner, and a definition for it
    execute(blank_dsn, f"CREATE TABLE notes (code {column_type} PRIMARY KEY, body text NOT NULL, stars integer)")
    for key in keys:
        execute(blank_dsn, "INSERT INTO notes VALUES (%s, %s, 1)", (key, f"note {key}"))
    notes = parse(
        {
            "table": "public.notes",
            "key": {"column": "code", "type": key_type},
            "embed": "{body}",
            "title": "body",
            "columns": {"body": {"show": True, "lexical": "A"}, "stars": {"type": "integer", "metadata": True}},
        }
    )
    migrate(blank_dsn, source=notes)
    emu = configure_emu(monkeypatch, blank_dsn, embedder="openai", index="pgvector", openai=openai_standin)
    bootstrap(blank_dsn)
    # When rows are edited, starred (metadata), deleted, inserted and re-keyed
    execute(blank_dsn, "UPDATE notes SET body = 'changed' WHERE code = %s", (keys[0],))
    execute(blank_dsn, "UPDATE notes SET stars = 5 WHERE code = %s", (keys[1],))
    execute(blank_dsn, "DELETE FROM notes WHERE code = %s", (keys[2],))
    execute(blank_dsn, "INSERT INTO notes VALUES (%s, 'new', 2)", (keys[2],))
    execute(blank_dsn, "UPDATE notes SET code = %s WHERE code = %s", (keys[0] * 2, keys[0]))
    assert failed_ids(invoke_emu(sqs_event(*captured(blank_dsn)))) == set()
    # Then the index holds exactly the table, each vector linked back by the key as text
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
    found = check_convergence(emu.db, emu.index, emu.embedder, sample=5)
    assert found.clean and found.rows == 3, found.detail()
    linked = {meta["key"] for meta in emu.index.fetch_metadata(list(range(1, 20))).values()}
    assert linked == {str(keys[0] * 2), str(keys[1]), str(keys[2])}


@pytest.mark.parametrize("backend", ["pgvector", "pinecone"])
def test_search_finds_articles_by_words_and_meaning_and_filters_on_their_columns(
    monkeypatch, blank_dsn, openai_standin, pinecone_standins, backend
):
    # Given 40 articles synced on either backend, and search configured for the articles source
    emu = articles_emu(monkeypatch, blank_dsn, 40, openai_standin, pinecone_standins, backend)
    bootstrap(blank_dsn)
    monkeypatch.setenv("REFARCH_SOURCE", "articles")
    service = emu.search
    authenticator = {i for i in range(1, 41) if "authenticator" in str(articles.article(i)["title"])}
    assert authenticator

    def titles(page: Any) -> set[str]:
        return {hit.product.title for hit in page.hits}

    # When searching by a word of the titles, lexically: exactly the articles that have it
    lexical = service.search("authenticator", k=20, mode="lexical")
    assert titles(lexical) == {articles.article(i)["title"] for i in authenticator}
    # ... and each hit is the article as the definition names it: its key, title, author, published, body
    first = lexical.as_dict()["results"][0]
    assert {"id", "article_id", "title", "author", "published", "body", "version", "score", "sync"} <= set(first)
    assert first["sync"]["status"] == "indexed"
    # When searching by the whole text of one article, semantically (and hybrid): that article first
    wanted = articles.article(9)
    text = f"{wanted['title']}\n\n{wanted['body']}"
    for mode in ("semantic", "hybrid"):
        page = service.search(text[:500], k=5, mode=mode)
        assert page.mode == mode
        assert page.hits[0].product.key == wanted["article_id"], mode
    # When filtering on the definition's filter columns (author, published), in every mode and in listings
    by_ada = service.column_filters({"author": "Ada Ortiz"})
    unpublished = service.column_filters({"published": "false"})
    for mode in ("lexical", "semantic", "hybrid"):
        request = SearchRequest.checked({"q": "support team", "k": 50, "mode": mode})
        assert {h.product.author for h in service.answer(request, filters=by_ada).hits} == {"Ada Ortiz"}, mode
        assert {h.product.published for h in service.answer(request, filters=unpublished).hits} == {False}, mode
    listing = service.answer(SearchRequest.checked({"k": 50}), filters=by_ada)
    assert listing.total == sum(1 for i in range(1, 41) if articles.article(i)["author"] == "Ada Ortiz")
    # And a filter value of the wrong type is refused with the column named
    with pytest.raises(SearchInputError, match="published must be true or false"):
        service.column_filters({"published": "maybe"})


def search_indexes(dsn: str) -> list[tuple[str, int]]:
    """(name, oid) of the keyword indexes the migration made on the articles table."""
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'public.articles'::regclass AND c.relname LIKE 'refarch%%' ORDER BY 1"
        )
        found = cur.fetchall()
    conn.close()
    return found


def test_a_migrate_again_leaves_the_owners_table_alone_and_a_new_keyword_weight_rebuilds_only_its_index(
    blank_dsn, tmp_path
):
    # Given an articles table of the owner's, migrated once
    make_articles(blank_dsn, 200)
    migrate(blank_dsn, source=ARTICLES)
    (first,) = search_indexes(blank_dsn)
    versions = execute(blank_dsn, "SELECT 1 FROM source_keys WHERE version = 1")
    # When the same definition is applied again (every deploy that re-runs the migration)
    migrate(blank_dsn, source=ARTICLES)
    # Then the keyword index is the one already built (not dropped and built again while writes wait),
    # and the rows already captured are not counted again
    assert search_indexes(blank_dsn) == [first]
    assert execute(blank_dsn, "SELECT 1 FROM source_keys WHERE version = 1") == versions == 200
    # When a column's keyword weight changes
    migrate(blank_dsn, source=definition_with(tmp_path, 'lexical = "B"', 'lexical = "C"'))
    # Then one index is built for the new document and the old one is dropped
    (second,) = search_indexes(blank_dsn)
    assert second[0] != first[0]
    # And keyword search still uses an index on that table
    conn = connect(blank_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SET enable_seqscan = off")
        cur.execute("EXPLAIN SELECT id FROM source_records WHERE search_document @@ to_tsquery('simple', 'x')")
        plan = " ".join(row[0] for row in cur.fetchall())
    conn.close()
    assert second[0] in plan, plan


def test_a_row_written_to_the_table_directly_keeps_its_metadata_within_the_definitions_limits(blank_dsn):
    # Given the articles table migrated (author: metadata text, max_length 120; title: 300)
    make_articles(blank_dsn, 3)
    migrate(blank_dsn, source=ARTICLES)
    # When its owner writes an author and a title far past those lengths straight into the table (no API checks)
    execute(
        blank_dsn,
        "UPDATE articles SET author = repeat('Ä', 50000), title = repeat('t', 50000) WHERE article_id = %s",
        (str(articles.article_id(2)),),
    )
    # Then the metadata every runtime reads for it is cut to the definition's lengths (what its Pinecone
    # limit was checked against), while the embedded text keeps the whole title
    key = (str(articles.article_id(2)),)
    metadata = query_one(blank_dsn, "SELECT metadata FROM source_rows WHERE key = %s", key)
    text = query_one(blank_dsn, "SELECT embedding_text FROM source_rows WHERE key = %s", key)
    assert (len(metadata["author"]), len(metadata["title"])) == (120, 300)
    assert len(json.dumps(metadata).encode()) < PINECONE_METADATA_LIMIT_BYTES
    assert text.startswith("t" * 50000)
