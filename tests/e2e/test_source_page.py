"""The page of another source in a real browser: its columns and edit form come from the definition,
and its rows' sync status is live, as on the products page."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from playwright.sync_api import Locator, Page, expect
from werkzeug.serving import make_server

from refarch.db import with_database
from refarch.runtime import Runtime
from refarch.settings import Settings
from refarch_local.database import LocalDatabase
from tests.conftest import free_port
from tests.e2e.conftest import Stack, served_pipeline
from tests.web.conftest import articles_app, make_runtime

ARTICLES = 24  # in the articles template (tests.web.conftest.indexed_articles), every one indexed
SYNC_TIMEOUT_MS = 60_000
# The header refreshes every 5 s from a status at most 2 s old (web/api.py SYNC_STATUS_CACHE_SECONDS).
HEADER_TIMEOUT_MS = 15_000


def test_an_article_is_found_and_edited_through_its_own_page(
    page,
    pg_server: LocalDatabase,
    articles_template: str,
    local_embedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("REFARCH_SOURCE", "articles")
    with articles_app(pg_server.dsn, articles_template, local_embedder, tmp_path / "home") as app:
        port = free_port()
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            # Given the articles page searched by meaning: a long guide shows the chunk that matched, words marked
            page.goto(f"http://127.0.0.1:{port}/?q=ask+an+administrator+to+check+the+audit+log&mode=semantic")
            snippet = page.locator("tbody.row p.snippet").first
            assert "audit log" in snippet.inner_text()
            assert {m.lower() for m in snippet.locator("mark").all_inner_texts()} >= {"audit", "log", "administrator"}
            # Given the articles page, searched for invoices by one author
            page.goto(f"http://127.0.0.1:{port}/?q=invoice+PDF&author=Chen+Wei")
            assert page.title() == "Articles search"
            rows = page.locator("tbody.row")
            assert rows.count() >= 1
            first = rows.first
            assert "Chen Wei" in first.inner_text()
            # When the editor changes the title in the row's form and saves
            first.get_by_role("button", name="Edit").click()
            title = first.locator("form.row-editor input[name=title]")
            title.fill("Invoice PDF opens blank: the fix")
            first.locator("form.row-editor").get_by_role("button", name="Save").click()
            # Then the row shows the new title, and it stays pending (no Emu runs beside this app)
            page.wait_for_selector("text=Invoice PDF opens blank: the fix")
            page.goto(f"http://127.0.0.1:{port}/?q=&author=Chen+Wei&k=50")
            changed = page.locator("tbody.row", has_text="Invoice PDF opens blank: the fix")
            assert changed.locator(".badge").inner_text() == "pending"
        finally:
            server.shutdown()
            thread.join(timeout=10)


@pytest.fixture
def dsn(pg_server: LocalDatabase, articles_template: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's database: a clone of the articles template, the source named in the environment, so the
    local stack's fixtures (`local_settings`, `emu_runtime`: tests/conftest.py) run on articles."""
    monkeypatch.setenv("REFARCH_SOURCE", "articles")
    name = f"a_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server.dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} TEMPLATE {articles_template}")
    yield with_database(pg_server.dsn, name)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def articles_stack(
    dsn: str, local_settings: Settings, emu_runtime: Runtime, local_embedder, tmp_path: Path
) -> Iterator[Stack]:
    """The articles served by the whole local pipeline, as tests/e2e/conftest.py's `stack` serves products."""
    web_runtime = make_runtime(local_embedder, database_url=dsn, home=tmp_path / "web-home", source="articles")
    try:
        with served_pipeline(local_settings, dsn, web_runtime) as served:
            yield served
    finally:
        web_runtime.db.close()


def total(page: Page, label: str) -> Locator:
    """The header's number under this label (Rows, Indexed, Pending, Failed)."""
    return page.locator("#sync-summary div", has=page.locator("dt", has_text=re.compile(f"^{label}$"))).locator("dd")


@pytest.mark.slow
def test_an_edited_article_goes_from_pending_to_indexed_without_a_reload(articles_stack: Stack, page: Page):
    # Given a signed-in editor on the articles page, every article indexed
    page.goto(articles_stack.url)
    page.get_by_role("link", name="Sign in to edit").click()
    page.get_by_label("Edit password").fill(articles_stack.edit_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.goto(f"{articles_stack.url}/?author=Chen+Wei")
    expect(total(page, "Rows")).to_have_text(str(ARTICLES))
    expect(total(page, "Indexed")).to_have_text(str(ARTICLES))
    expect(total(page, "Pending")).to_have_text("0")
    row = page.locator("tbody.row").first
    badge = row.locator(".badge")
    expect(badge).to_have_text("indexed")
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    # When they change an article's title in its row's form and save, while Emu is held back
    row.get_by_role("button", name=re.compile("^Edit")).click()
    row.locator("form.row-editor input[name=title]").fill("Invoice PDF opens blank: the fix")
    with articles_stack.sync_paused():
        row.locator("form.row-editor").get_by_role("button", name="Save").click()
        # Then the row shows the new title, pending, and the header counts it pending, all without a reload
        expect(badge).to_have_text("pending")
        expect(row.locator("td.cell-title")).to_have_text("Invoice PDF opens blank: the fix")
        expect(row.locator("form.row-editor")).to_be_hidden()
        assert page.evaluate("window.loadedOnce") is True, "the page reloaded after the save"
        expect(total(page, "Pending")).to_have_text("1", timeout=HEADER_TIMEOUT_MS)
        expect(total(page, "Indexed")).to_have_text(str(ARTICLES - 1))
    # And once the local stack's Emu has indexed it, the badge says so by itself, and so do the totals
    expect(badge).to_have_text("indexed", timeout=SYNC_TIMEOUT_MS)
    expect(total(page, "Pending")).to_have_text("0", timeout=HEADER_TIMEOUT_MS)
    expect(total(page, "Indexed")).to_have_text(str(ARTICLES))
    assert page.evaluate("window.loadedOnce") is True, "the page reloaded while the row was pending"
