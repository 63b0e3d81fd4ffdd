"""Long text: every part of a long document is searchable (refarch.source.chunking, docs/long-text.md).

A row whose text is longer than the embedder's window is one vector per chunk; its ledger entry and
status stay one per row. These tests run the articles source (a long body) through the real Emu
handler, on both indexes, against the OpenAI stand-in (OpenAI's own tokenizer: a window of 8,191
tokens, chunks of 512) and the real local model (a window of 256 word pieces).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from refarch import generations
from refarch.db import migrate
from refarch.generations import EmbedderSpec
from refarch.generations.reindex_flow import ensure_building
from refarch.index.port import held_rows
from refarch.search.service import SearchRequest
from refarch_local import articles
from refarch_local.convergence import check_convergence
from tests.integration.emu_support import (
    configure_emu,
    failed_ids,
    invoke_emu,
    query_one,
    sqs_event,
)
from tests.integration.test_sources import (
    ARTICLES,
    articles_emu,
    assert_synced,
    blank_dsn,
    bootstrap,
    captured,
    definition_with,
    deliver_with_faults,
    execute,
    make_articles,
)

pytest_plugins = ["tests.integration.emu_fixtures"]
__all__ = ["blank_dsn"]  # the fixture, used by name

KEY = str(articles.article_id(5))


def guide_text(paragraphs: int, *, changed: int | None = None) -> str:
    """A long guide of `paragraphs` paragraphs (~50 OpenAI tokens each); `changed`: that one paragraph edited."""
    parts = articles.guide(5, paragraphs)
    if changed is not None:
        parts[changed] = parts[changed].replace("If that changes nothing", "If nothing changes after that")
    return "\n\n".join(parts)


def set_body(dsn: str, key: str, body: str) -> None:
    assert execute(dsn, "UPDATE articles SET body = %s WHERE article_id = %s", (body, key)) == 1


def deliver(dsn: str) -> None:
    assert failed_ids(invoke_emu(sqs_event(*captured(dsn)))) == set()


def chunks_of(emu: Any, key: str) -> dict[int, dict[str, Any]]:
    row_id = query_one(emu.db.dsn, "SELECT id FROM source_rows WHERE key = %s", (key,))
    held = held_rows(emu.index.scan())
    return held[row_id].chunks if row_id in held else {}


@pytest.mark.parametrize("backend", ["pgvector", "pinecone"])
def test_a_long_text_is_one_vector_per_chunk_an_edit_re_embeds_what_changed_and_no_chunk_is_orphaned(
    monkeypatch, blank_dsn, openai_standin, pinecone_standins, backend
):
    # Given articles synced on either backend
    emu = articles_emu(monkeypatch, blank_dsn, 20, openai_standin, pinecone_standins, backend)
    bootstrap(blank_dsn)
    assert all(len(row.chunks) == 1 for row in held_rows(emu.index.scan()).values())  # they fit the window

    # When one article's body becomes a guide of 400 paragraphs (~20,000 tokens, over the 8,191 window)
    before = openai_standin.texts
    set_body(blank_dsn, KEY, guide_text(400))
    deliver(blank_dsn)
    # Then it is one vector per chunk, each embedded once, numbered from 0, all of this version
    chunks = chunks_of(emu, KEY)
    assert len(chunks) >= 35 and openai_standin.texts - before == len(chunks)
    assert sorted(chunks) == list(range(len(chunks))) and {c["chunks"] for c in chunks.values()} == {len(chunks)}
    assert_synced(emu, sample=10)

    # When one paragraph in the middle is edited
    before = openai_standin.texts
    set_body(blank_dsn, KEY, guide_text(400, changed=200))
    deliver(blank_dsn)
    # Then at most the two chunks that hold it (with the overlap) are embedded again; the rest are reused
    assert 1 <= openai_standin.texts - before <= 2
    assert_synced(emu, sample=10)

    # When a paragraph is inserted near the start (every later chunk moves)
    before = openai_standin.texts
    set_body(blank_dsn, KEY, "A new first paragraph.\n\n" + guide_text(400, changed=200))
    deliver(blank_dsn)
    # Then only the chunks whose text changed are embedded: moved chunks are reused wherever they went
    assert openai_standin.texts - before <= 3
    assert_synced(emu, sample=10)

    # When the text shrinks to half, then to one that fits the window
    for paragraphs, most in ((200, None), (20, 1)):
        set_body(blank_dsn, KEY, guide_text(paragraphs))
        deliver(blank_dsn)
        # Then no chunk past the new end is left behind
        shrunk = chunks_of(emu, KEY)
        assert sorted(shrunk) == list(range(len(shrunk))) and len(shrunk) < len(chunks)
        assert most is None or len(shrunk) == most
        assert_synced(emu, sample=10)

    # When it grows again and is then deleted
    set_body(blank_dsn, KEY, guide_text(300))
    deliver(blank_dsn)
    assert len(chunks_of(emu, KEY)) > 20
    assert execute(blank_dsn, "DELETE FROM articles WHERE article_id = %s", (KEY,)) == 1
    deliver(blank_dsn)
    # Then every chunk of it is gone
    assert chunks_of(emu, KEY) == {}
    assert_synced(emu, sample=10)


def random_long_writes(dsn: str, rng: random.Random, keys: list[str], steps: int) -> None:
    """Bodies that grow and shrink across the window (1 to 450 paragraphs), single paragraphs edited,
    deletes and inserts of long articles."""
    for step in range(steps):
        key = rng.choice(keys)
        kind = rng.choice(["grow", "shrink", "edit", "edit", "delete", "insert"])
        present = query_one(dsn, "SELECT count(*) FROM articles WHERE article_id = %s", (key,))
        if kind in ("delete", "insert") or not present:
            if present:
                execute(dsn, "DELETE FROM articles WHERE article_id = %s", (key,))
            else:
                execute(
                    dsn,
                    "INSERT INTO articles (article_id, title, author, body) VALUES (%s, %s, 'Long Author', %s)",
                    (key, f"Guide {step}", "\n\n".join(articles.guide(step, rng.randint(1, 450)))),
                )
            continue
        body = str(query_one(dsn, "SELECT body FROM articles WHERE article_id = %s", (key,)))
        parts = body.split("\n\n")
        if kind == "grow":
            parts += articles.guide(step, rng.randint(50, 250), start=len(parts))
        elif kind == "shrink":
            parts = parts[: rng.randint(1, max(1, len(parts) // 2))]
        else:
            n = rng.randrange(len(parts))
            parts[n] = f"{parts[n]} (edited at step {step})"
        set_body(dsn, key, "\n\n".join(parts))


@pytest.mark.parametrize("backend", ["pgvector", "pinecone"])
def test_long_texts_converge_to_exactly_their_chunks_whatever_the_edits_duplicates_reordering_and_faults(
    monkeypatch, blank_dsn, openai_standin, pinecone_standins, backend
):
    # Given 10 long articles (some over the window, some not) and 10 short ones, synced on either backend
    emu = articles_emu(monkeypatch, blank_dsn, 10, openai_standin, pinecone_standins, backend)
    rng = random.Random(29)
    keys = [str(articles.article_id(100 + n)) for n in range(10)]
    for n, key in enumerate(keys):
        execute(
            blank_dsn,
            "INSERT INTO articles (article_id, title, author, body) VALUES (%s, %s, 'Long Author', %s)",
            (key, f"Long guide {n}", "\n\n".join(articles.guide(n, rng.randint(1, 450)))),
        )
    bootstrap(blank_dsn)
    captured(blank_dsn)  # the inserts' changes: the bootstrap already indexed them
    # When rounds of edits that grow and shrink texts are delivered out of order, some twice, some late,
    # while the provider fails a fifth of its requests, and every message is delivered once more at the end
    deliver_with_faults(
        blank_dsn, rng, openai_standin, lambda: random_long_writes(blank_dsn, rng, keys, 12), rounds=5, late=4
    )
    # Then the index holds exactly the chunks of the current texts, and no other vector
    held = held_rows(emu.index.scan())
    assert max(len(row.chunks) for row in held.values()) > 20
    assert_synced(emu, sample=10)


def test_a_fact_past_the_20th_chunk_is_found_first_by_its_meaning_and_shown_as_the_snippet(monkeypatch, blank_dsn):
    # Given the support articles and one long guide whose warranty fact sits in its last paragraphs,
    # past the 20th of its chunks for the local model (256 word pieces a chunk)
    make_articles(blank_dsn, 40)
    migrate(blank_dsn, source=ARTICLES)
    emu = configure_emu(monkeypatch, blank_dsn, embedder="local", index="pgvector")
    fact = (
        "The warranty does not cover damage from salt water: rinse the case in fresh water after every swim"
        " in the sea, and let it dry before you charge it."
    )
    parts = articles.guide(5, 120)
    parts.insert(110, fact)
    set_body(blank_dsn, KEY, "\n\n".join(parts))
    bootstrap(blank_dsn)
    captured(blank_dsn)
    chunks = chunks_of(emu, KEY)
    holding = [n for n, meta in chunks.items() if fact in guide_chunk(blank_dsn, meta)]
    assert len(chunks) >= 22 and holding and min(holding) > 20
    # When searching by a paraphrase that shares almost no word with it, semantically and hybrid
    monkeypatch.setenv("REFARCH_SOURCE", "articles")
    for mode in ("semantic", "hybrid"):
        request = SearchRequest.checked({"q": "is my guarantee void if I go swimming in the ocean", "mode": mode})
        page = emu.search.answer(request)
        # Then that article is first, and its snippet is the chunk that holds the fact
        first = page.hits[0]
        assert first.product.key == KEY, [h.product.key for h in page.hits[:3]]
        assert first.snippet is not None and fact in first.snippet, first.snippet
        assert first.as_dict()["snippet"] == first.snippet
    # And a row of one chunk has no snippet
    short = emu.search.answer(SearchRequest.checked({"q": "password reset email never arrives", "mode": "semantic"}))
    assert short.hits[0].snippet is None and "snippet" not in short.hits[0].as_dict()


def guide_chunk(dsn: str, meta: dict[str, Any]) -> str:
    body = str(query_one(dsn, "SELECT embedding_text FROM source_rows WHERE key = %s", (KEY,)))
    return body[int(meta["chunk_start"]) : int(meta["chunk_end"])]


def test_a_chunking_change_is_a_new_generation_built_while_the_active_one_serves(
    monkeypatch, blank_dsn, openai_standin, tmp_path
):
    # Given 30 articles indexed with the default chunking (each fits OpenAI's window: one vector a row)
    emu = articles_emu(monkeypatch, blank_dsn, 30, openai_standin)
    bootstrap(blank_dsn)
    assert {len(row.chunks) for row in held_rows(emu.index.scan()).values()} == {1}
    texts = openai_standin.texts
    # When the definition asks for chunks of 64 tokens, the database is migrated and the runtimes
    # restart with it (a deploy)
    changed = definition_with(tmp_path, "overlap = 32\n", "size = 64\noverlap = 8\n")
    assert migrate(blank_dsn, source=changed) == []  # no new migration: only the definition changed
    monkeypatch.setenv("REFARCH_SOURCE", changed.path)
    emu = configure_emu(monkeypatch, blank_dsn, embedder="openai", index="pgvector", openai=openai_standin)
    # Then a re-index starts a generation of its own for it (as for a new model or a new template)
    building, needed = ensure_building(emu.targets, EmbedderSpec.from_settings(emu.settings))
    assert needed and building.id == 2
    # And filling it embeds every chunk for the new generation only: the active one keeps its vectors
    bootstrap(blank_dsn)
    active = emu.targets.active()
    assert active.generation.id == 1 and {len(row.chunks) for row in held_rows(active.index.scan()).values()} == {1}
    new_index = emu.targets.target(building).index
    chunked = held_rows(new_index.scan())
    assert len(chunked) == 30 and max(len(row.chunks) for row in chunked.values()) > 2
    assert openai_standin.texts - texts == sum(len(row.chunks) for row in chunked.values())
    # And after the switch, search reads the new generation, whose every row is exactly its chunks
    with emu.db.transaction() as conn:
        generations.switch(conn, building.id)
    found = check_convergence(emu.db, new_index, emu.embedder, sample=5, generation=2, chunking=changed.chunking)
    assert found.clean and found.rows == 30, found.detail()
