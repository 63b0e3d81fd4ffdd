"""Every response carries a request id; an error's inner text (a database rule, the configuration) goes to
the log under that id, never to an anonymous caller; a signed-in editor is told why their values were refused."""

from __future__ import annotations

import logging

import psycopg2
import pytest

from tests.web.conftest import EDIT_PASSWORD, Api, build_app

# A rule the app's validation does not know: the database is the only one to refuse it.
CONSTRAINT = "products_name_not_reserved"
RULE = f"ALTER TABLE products ADD CONSTRAINT {CONSTRAINT} CHECK (name <> 'Reserved Name')"
REFUSED = {"sku": "RS-1", "name": "Reserved Name", "category": "misc", "price": "1.00"}


@pytest.fixture
def database_rule(dsn: str) -> None:
    """The extra check constraint, added by the admin."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(RULE)


def logged(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    """The log records written under this request id."""
    return [record for record in caplog.records if getattr(record, "request_id", None) == request_id]


def test_every_response_carries_a_fresh_request_id(client, catalog):
    # When two requests are made, a success and an error
    ok, missing = client.get("/healthz"), client.get("/api/products/999999")
    # Then each carries its own id; the error body repeats it
    ids = {ok.headers["X-Request-Id"], missing.headers["X-Request-Id"]}
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)
    assert missing.get_json()["request_id"] == missing.headers["X-Request-Id"]


def test_an_anonymous_caller_never_sees_the_database_rule(client, database_rule, caplog):
    # Given editing open to anyone (no password) and a database rule the validation does not know
    api = Api(client)
    # When an anonymous caller sends values the rule refuses
    refused = api.post("/api/products", json=REFUSED)
    # Then it is a 400 with a generic message and the request id, without the constraint or Postgres' words
    assert refused.status_code == 400
    body = refused.get_json()
    request_id = refused.headers["X-Request-Id"]
    assert body["request_id"] == request_id and request_id in body["error"]
    assert CONSTRAINT not in refused.get_data(as_text=True)
    assert "violates" not in body["error"] and "check constraint" not in body["error"]
    # And the log line under the same id holds what an operator needs
    (line,) = logged(caplog, request_id)
    assert line.constraint == CONSTRAINT and CONSTRAINT in line.error


def test_a_signed_in_editor_is_told_the_rule_their_values_broke(runtime, database_rule):
    # Given an editor signed in with the edit password
    api = Api(build_app(runtime, EDIT_PASSWORD=EDIT_PASSWORD).test_client())
    api.token = api.post("/api/session", json={"password": EDIT_PASSWORD}).get_json()["csrf_token"]
    # When their values break the rule
    refused = api.post("/api/products", json=REFUSED)
    # Then the 400 says which rule (their own values: nothing about the deployment)
    assert refused.status_code == 400
    assert CONSTRAINT in refused.get_json()["error"]


def test_an_unexpected_failure_is_logged_under_the_id_the_caller_gets(runtime, dsn, catalog, caplog):
    # Given a database whose products table lost a column the app reads (a broken deploy)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE products RENAME COLUMN description TO blurb")
    client = build_app(runtime).test_client()
    # When a product is read
    failed = client.get(f"/api/products/{catalog[0].id}")
    # Then the caller gets a 500 naming only the request id, and the traceback is logged under it
    assert failed.status_code == 500
    request_id = failed.headers["X-Request-Id"]
    assert failed.get_json()["request_id"] == request_id
    assert "description" not in failed.get_json()["error"] and "column" not in failed.get_json()["error"]
    (line,) = logged(caplog, request_id)
    assert line.exc_info is not None and "description" in str(line.exc_info[1])
