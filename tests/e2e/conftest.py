"""The whole pipeline in this process, served to a real headless Chromium.

Seeded products -> triggers -> outbox -> OutboxRelay thread -> local SQS -> EventSourcePoller
thread -> the Emu Lambda handler -> pgvector; the Flask app served by werkzeug on a free port.
Only the wiring differs from `refarch demo` (threads instead of processes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from werkzeug.serving import make_server

from refarch import catalog, status
from refarch.db import connect
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.pelican.listener import OutboxRelay
from refarch.runtime import Runtime
from refarch.settings import Settings
from refarch_local.event_source import EventSourcePoller
from tests.conftest import free_port
from web import create_app

SEED_ROWS = 300
EDIT_PASSWORD = "e2e edit password"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Stack:
    """The running system: where the page is, how to reach its database, and a way to hold Emu back."""

    url: str
    dsn: str
    edit_password: str
    sync_paused: Callable[[], AbstractContextManager[None]]


def _wait_until_indexed(dsn: str, expected: int, deadline_seconds: float) -> None:
    conn = connect(dsn)
    try:
        deadline = time.monotonic() + deadline_seconds
        while True:
            with conn:
                counts = status.sync_counts(conn)
            if counts["indexed"] == expected and counts["pending"] == 0 and counts["failed"] == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"initial sync did not finish: {counts}")
            time.sleep(0.25)
    finally:
        conn.close()


@contextmanager
def served_pipeline(settings: Settings, dsn: str, web_runtime: Runtime) -> Iterator[Stack]:
    """The pipeline over `dsn` (OutboxRelay -> local SQS -> EventSourcePoller -> the Emu handler, whose
    runtime `emu_runtime` points at the same database) and the app of `web_runtime`, served on a free
    port with the edit password; everything stops (in reverse order) when the block ends."""
    relay = OutboxRelay(dsn, SyncQueue.for_lane(make_sqs_client(settings), settings, "live"), poll_seconds=0.5)
    poller = EventSourcePoller(
        make_sqs_client(settings), settings.queue_url("live"), concurrency=2, region=settings.aws_region
    )
    app = create_app({"REFARCH_RUNTIME": web_runtime, "EDIT_PASSWORD": EDIT_PASSWORD})
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)

    threads = [
        threading.Thread(target=relay.run, name="relay", daemon=True),
        threading.Thread(target=poller.run, name="poller", daemon=True),
        threading.Thread(target=server.serve_forever, name="web", daemon=True),
    ]
    for thread in threads:
        thread.start()

    @contextmanager
    def sync_paused() -> Iterator[None]:
        """Emu takes nothing from the queue inside the block (an edit stays visibly pending); then resumes.

        The pipeline indexes an edit in well under a second, often before the page can show 'pending'.
        """
        poller.stop.set()
        threads[1].join(timeout=30)
        try:
            yield
        finally:
            poller.stop.clear()
            threads[1] = threading.Thread(target=poller.run, name="poller", daemon=True)
            threads[1].start()

    try:
        yield Stack(url=f"http://127.0.0.1:{port}", dsn=dsn, edit_password=EDIT_PASSWORD, sync_paused=sync_paused)
    finally:
        server.shutdown()
        poller.stop.set()
        relay.stop.set()
        for thread in reversed(threads):
            thread.join(timeout=30)


@pytest.fixture
def stack(
    local_settings: Settings, emu_runtime: Runtime, local_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    """Seed, sync and serve the products; everything stops (in reverse order) when the test ends.

    `emu_runtime` (tests/conftest.py) points the Emu handler at this test's database and queues.
    """
    # The environment the components read, as a person would export it.
    monkeypatch.setenv("REFARCH_EMBEDDER", "local")
    monkeypatch.setenv("REFARCH_VECTOR_BACKEND", "pgvector")
    monkeypatch.setenv("REFARCH_EDIT_PASSWORD", EDIT_PASSWORD)
    settings = Settings()
    dsn = settings.database_url
    assert dsn

    conn = connect(dsn)
    try:
        catalog.seed(conn, SEED_ROWS)
    finally:
        conn.close()

    web_runtime = Runtime(application_name="refarch-web")
    web_runtime.embedder = local_embedder
    with served_pipeline(settings, dsn, web_runtime) as served:
        _wait_until_indexed(dsn, SEED_ROWS, deadline_seconds=180)
        yield served


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (own cookies) and page, laptop-sized."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()
