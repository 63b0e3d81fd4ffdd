"""The page of another source in a real browser: its columns and edit form come from the definition."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from refarch_local.database import LocalDatabase
from tests.conftest import free_port
from tests.web.conftest import articles_app


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
            # Then the page reloads with the new title, pending until it is indexed again
            page.wait_for_selector("text=Invoice PDF opens blank: the fix")
            page.goto(f"http://127.0.0.1:{port}/?q=&author=Chen+Wei&k=50")
            changed = page.locator("tbody.row", has_text="Invoice PDF opens blank: the fix")
            assert changed.locator(".badge").inner_text() == "pending"
        finally:
            server.shutdown()
            thread.join(timeout=10)
