"""The dead letters in the page's status area: signed-in editors list them with the reason, redrive and
discard them through the JSON API (web/dead_letters.py); nobody else can. Real Postgres, the local SQS
server's queues; the messages are put in the DLQ directly (tests/integration/test_dead_letters.py
drives them there through Emu)."""

from __future__ import annotations

import pytest
from flask import Flask

from refarch import products
from refarch.emu import ledger
from refarch.lanes.messages import SyncMessage, bulk_messages
from refarch.lanes.queues import make_sqs_client
from refarch.runtime import Runtime
from tests.web.conftest import CATALOG, EDIT_PASSWORD, Api, build_app, make_runtime

REASON = "embed/upsert failed: BadRequestError: refused by the provider"


@pytest.fixture
def queued_runtime(dsn, embedder, local_settings) -> Runtime:
    """A Runtime on this test's database and its local queues (published under its REFARCH_HOME)."""
    return make_runtime(embedder, database_url=dsn, home=local_settings.home)


@pytest.fixture
def locked(queued_runtime) -> Flask:
    """The app with an edit password, as on AWS."""
    return build_app(queued_runtime, EDIT_PASSWORD=EDIT_PASSWORD)


@pytest.fixture
def editor(locked) -> Api:
    """A signed-in editor's API client (the CSRF token of the signed-in session)."""
    api = Api(locked.test_client())
    api.token = api.post("/api/session", json={"password": EDIT_PASSWORD}).get_json()["csrf_token"]
    return api


@pytest.fixture
def dead(queued_runtime, local_settings) -> dict[str, str]:
    """A failed product's live message and a bulk message nobody can read, in their DLQs: {name: message id}."""
    with queued_runtime.db.transaction() as conn:
        product = products.create(conn, dict(CATALOG[0]))
        ledger.record_failed(conn, {product.id: REASON}, generation=1)
    sqs = make_sqs_client(local_settings)
    message = SyncMessage(product_id=product.id, version=product.version, op="insert", source="change")
    live = sqs.send_message(
        QueueUrl=local_settings.dlq_url("live"),
        MessageBody=message.model_dump_json(),
        MessageGroupId=message.group_id,
        MessageDeduplicationId=message.deduplication_id,
    )["MessageId"]
    junk = sqs.send_message(QueueUrl=local_settings.dlq_url("bulk"), MessageBody="not json")["MessageId"]
    return {"live": live, "junk": junk, "product": str(product.id)}


def test_only_signed_in_editors_see_or_act_on_dead_letters(locked, dead):
    # Given a visitor who is not signed in (with a valid CSRF token)
    visitor = Api(locked.test_client())
    # When they ask for the dead letters, redrive or discard, Then each is refused with 401
    assert visitor.get("/api/dead-letters").status_code == 401
    assert visitor.post("/api/dead-letters/redrive", json={}).status_code == 401
    assert visitor.post("/api/dead-letters/discard", json={"ids": [dead["live"]]}).status_code == 401
    # And a change without the CSRF token is refused with 403, signed in or not
    assert locked.test_client().post("/api/dead-letters/redrive", json={}).status_code == 403


def test_an_editor_lists_discards_and_redrives_dead_letters(editor, dead, local_settings, queued_runtime):
    # When a signed-in editor lists the dead letters
    listed = editor.get("/api/dead-letters").get_json()["lanes"]
    by_lane = {lane["lane"]: lane for lane in listed}
    # Then each lane shows its message with the reason: the ledger's for the product, the parser's for junk
    [live] = by_lane["live"]["messages"]
    assert live["id"] == dead["live"] and live["products"] == [int(dead["product"])]
    assert live["reason"] == f"product {dead['product']}: {REASON}" and not live["malformed"]
    [junk] = by_lane["bulk"]["messages"]
    assert junk["id"] == dead["junk"] and junk["malformed"] and junk["products"] == []
    assert "could not read this message" in junk["reason"]
    # And one lane can be asked for alone; a lane that does not exist is a 400
    assert [x["lane"] for x in editor.get("/api/dead-letters?lane=bulk").get_json()["lanes"]] == ["bulk"]
    assert editor.get("/api/dead-letters?lane=side").status_code == 400

    # When the editor discards the product's message
    discarded = editor.post("/api/dead-letters/discard", json={"ids": [dead["live"]]})
    # Then it is gone, and the product's status says failed, and why
    assert discarded.status_code == 200
    assert discarded.get_json()["marked_failed"] == [int(dead["product"])]
    sync = editor.get(f"/api/products/{dead['product']}").get_json()["sync"]
    assert sync["status"] == "failed"
    assert sync["last_error"] == f"discarded from the live dead-letter queue: product {dead['product']}: {REASON}"
    assert editor.get("/api/dead-letters?lane=live").get_json()["lanes"][0]["messages"] == []
    # And discarding it again, or nothing, is a clear 4xx
    assert editor.post("/api/dead-letters/discard", json={"ids": [dead["live"]]}).status_code == 404
    assert editor.post("/api/dead-letters/discard", json={"ids": []}).status_code == 400

    # When the editor redrives the bulk lane
    redriven = editor.post("/api/dead-letters/redrive", json={"lane": "bulk"}).get_json()["lanes"]
    # Then the message is back in the bulk queue (locally moved one by one), and the DLQ is empty
    assert redriven == [{"lane": "bulk", "method": "moved", "messages": 1, "task_handle": None}]
    sqs = make_sqs_client(local_settings)
    [back] = sqs.receive_message(QueueUrl=local_settings.queue_url("bulk"), WaitTimeSeconds=1)["Messages"]
    assert back["MessageId"] != dead["junk"] and back["Body"] == "not json"
    assert editor.get("/api/dead-letters").get_json()["lanes"][1]["depth"] == 0


def test_a_bulk_dead_letter_names_only_its_failed_products_and_discard_marks_only_those(editor, queued_runtime):
    # Given a bulk message naming three products, of which only the second failed (the others were indexed)
    with queued_runtime.db.transaction() as conn:
        rows = [products.create(conn, dict(row)) for row in CATALOG[:3]]
        ledger.record_indexed(conn, [(r.id, r.version, "h", "indexed") for r in rows[::2]], generation=1)
        ledger.record_failed(conn, {rows[1].id: REASON}, generation=1)
    settings = queued_runtime.settings
    [message] = bulk_messages([(r.id, r.version, "sync") for r in rows], source="bootstrap")
    make_sqs_client(settings).send_message(QueueUrl=settings.dlq_url("bulk"), MessageBody=message.model_dump_json())
    # When an editor lists it, Then the reason names the failed product only
    [letter] = editor.get("/api/dead-letters?lane=bulk").get_json()["lanes"][0]["messages"]
    assert letter["products"] == [r.id for r in rows] and letter["reason"] == f"product {rows[1].id}: {REASON}"
    # When it is discarded, Then only that product is marked failed; its indexed neighbours stay indexed
    assert editor.post("/api/dead-letters/discard", json={"ids": [letter["id"]]}).get_json()["marked_failed"] == [
        rows[1].id
    ]
    states = {r.id: editor.get(f"/api/products/{r.id}").get_json()["sync"]["status"] for r in rows}
    assert states == {rows[0].id: "indexed", rows[1].id: "failed", rows[2].id: "indexed"}


def test_redrives_and_discards_count_against_the_write_limit(queued_runtime):
    # Given the open app with a write limit of 2 per minute
    api = Api(build_app(queued_runtime, RATE_LIMIT_WRITE="2 per minute").test_client())
    # When an editor redrives twice and then discards
    assert api.post("/api/dead-letters/redrive", json={}).status_code == 200
    assert api.post("/api/dead-letters/redrive", json={"lane": "live"}).status_code == 200
    over = api.post("/api/dead-letters/discard", json={"ids": ["any"]})
    # Then the third change is refused with 429 and Retry-After
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
