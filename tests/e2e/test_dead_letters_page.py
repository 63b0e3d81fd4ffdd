"""A signed-in editor acts on dead letters from the page's status area, in real headless Chromium: the real
app on a real Postgres and the local SQS server's queues (the messages put in the DLQs directly;
tests/integration/test_dead_letters.py drives them there through Emu)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from refarch import products
from refarch.emu import ledger
from refarch.lanes.messages import SyncMessage
from refarch.lanes.queues import make_sqs_client
from tests.conftest import free_port
from tests.e2e.test_web_page import sign_in
from tests.web.conftest import CATALOG, EDIT_PASSWORD, build_app, make_runtime

REASON = "embed/upsert failed: BadRequestError: refused by the provider"


@pytest.fixture
def served(dsn, local_embedder, local_settings) -> Iterator[tuple[str, int]]:
    """(the page's URL, the failed product's id): one product failed in the ledger, its message in the live DLQ,
    and a message nobody can read in the bulk DLQ."""
    runtime = make_runtime(local_embedder, database_url=dsn, home=local_settings.home)
    with runtime.db.transaction() as conn:
        product = products.create(conn, dict(CATALOG[1]))
        ledger.record_failed(conn, {product.id: REASON}, generation=1)
    sqs = make_sqs_client(local_settings)
    message = SyncMessage(product_id=product.id, version=product.version, op="insert", source="change")
    sqs.send_message(
        QueueUrl=local_settings.dlq_url("live"),
        MessageBody=message.model_dump_json(),
        MessageGroupId=message.group_id,
        MessageDeduplicationId=message.deduplication_id,
    )
    sqs.send_message(QueueUrl=local_settings.dlq_url("bulk"), MessageBody="not json")
    server = make_server("127.0.0.1", free_port(), build_app(runtime, EDIT_PASSWORD=EDIT_PASSWORD), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}", product.id
    finally:
        server.shutdown()
        thread.join(timeout=30)


def test_an_editor_sees_why_messages_failed_and_discards_or_redrives_them(served, page: Page):
    url, product_id = served
    panel = page.locator("#dead-letters")
    # Given a visitor, Then the page has no dead-letter panel
    page.goto(url)
    expect(page.locator('#sync-summary [data-key="dlq_depth"]')).to_have_text("2")
    expect(panel).to_have_count(0)

    # When an editor signs in and opens the panel
    sign_in(page, EDIT_PASSWORD)
    panel.locator("summary").click()
    live, bulk = panel.locator('[data-lane="live"]'), panel.locator('[data-lane="bulk"]')
    # Then each lane lists its dead letter with the reason
    expect(live.locator("h2")).to_have_text("live lane: 1 dead letter(s)")
    expect(live.locator(".dead-letter-what")).to_have_text(
        re.compile(rf"^products {product_id} · received \d+× · \d+ s old$")
    )
    expect(live.locator(".dead-letter-reason")).to_have_text(f"product {product_id}: {REASON}")
    expect(bulk.locator(".dead-letter-what")).to_contain_text("unreadable message")
    expect(bulk.locator(".dead-letter-reason")).to_contain_text("Emu could not read this message")

    # When the editor discards the product's message
    live.get_by_role("button", name="Discard").click()
    # Then it is gone, the page says the product is marked failed, and its row says why
    expect(live.locator("h2")).to_have_text("live lane: 0 dead letter(s)")
    expect(page.locator("#announcer")).to_have_text(f"Discarded; products marked failed: {product_id}.")
    page.reload()
    row = page.locator(f"#product-{product_id}")
    expect(row.locator(".badge")).to_have_text("failed")
    expect(row.locator(".sync-reason")).to_have_text(
        f"discarded from the live dead-letter queue: product {product_id}: {REASON}"
    )

    # When the editor redrives the bulk lane
    panel.locator("summary").click()
    bulk.get_by_role("button", name="Redrive bulk lane").click()
    # Then its message is sent back to the queue, and the DLQ count drops to 0
    expect(page.locator("#announcer")).to_have_text("1 dead letter(s) sent back to the queue.")
    expect(bulk.locator("h2")).to_have_text("bulk lane: 0 dead letter(s)")
    # (the header refreshes every 5 s, from a status at most 2 s old: web/api.py SYNC_STATUS_CACHE_SECONDS)
    expect(page.locator('#sync-summary [data-key="dlq_depth"]')).to_have_text("0", timeout=15_000)
