"""The OpenAPI document is the API's contract: generated from the models, and the app keeps it.

Schemathesis generates requests from the served document (valid ones, and ones the document forbids)
and sends them to the real app in-process (WSGI) on a real Postgres with the real embedding model.
Every answer must be a documented status with a body of the documented shape, no 5xx, valid requests
are not refused (400) and forbidden ones are not accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
import yaml
from flask import Flask
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode

from tests.web.conftest import build_app, csrf_token, make_runtime
from web.openapi import render

OPENAPI_YAML = Path(__file__).resolve().parents[2] / "web" / "openapi.yaml"
# Small enough for two busy cores (every search embeds its query), large enough to reach each limit.
EXAMPLES_PER_OPERATION = 25
CONFIG = {
    "seed": 16,
    "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True},
    "checks": {
        # 409 is a state (duplicate SKU, stale version), not a refusal of the request's shape.
        "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409"]},
        # A field over its length limit is a 400 naming it; 413 is only for a body over MAX_CONTENT_LENGTH.
        "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "405", "409", "413"]},
    },
}


def test_the_checked_in_document_is_what_the_models_generate():
    # Given the models, When the document is generated again (`make openapi`)
    generated = render()
    # Then it is valid OpenAPI and identical to the checked-in file: document and code cannot drift
    validate(yaml.safe_load(generated))
    assert generated == OPENAPI_YAML.read_text(), "web/openapi.yaml is stale: run `make openapi` and commit it"


@pytest.fixture
def contract_app(dsn: str, embedder, local_settings, catalog) -> Flask:
    """The open app (no edit password) with limits no generated burst reaches, a few products, and the local
    SQS server's queues (the status and dead-letter routes read them)."""
    runtime = make_runtime(embedder, database_url=dsn, home=local_settings.home)
    unlimited = "100000 per minute"
    return build_app(runtime, RATE_LIMIT_SEARCH=unlimited, RATE_LIMIT_WRITE=unlimited, RATE_LIMIT_READ=unlimited)


@pytest.fixture
def session(contract_app: Flask) -> tuple[str, str]:
    """(the session cookie, its CSRF token), as the page holds them."""
    client = contract_app.test_client()
    token = csrf_token(client)
    cookie = client.get_cookie("refarch_session")
    assert cookie is not None
    return cookie.value, token


PATHS = yaml.safe_load(OPENAPI_YAML.read_text())["paths"]
# Every operation with valid requests; those that take input with forbidden ones too.
OPERATIONS = [
    pytest.param(method, path, mode, id=f"{mode} {method.upper()} {path}")
    for path, operations in PATHS.items()
    for method, operation in operations.items()
    if method != "parameters"
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or {"parameters", "requestBody"} & (set(operation) | set(operations))
]


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_the_app_keeps_the_documented_contract(contract_app, session, method, path, mode):
    # Given requests generated from the document the app serves (valid ones, or ones it forbids),
    # with the session cookie and CSRF token the page would send
    schema = schemathesis.openapi.from_wsgi(
        "/api/openapi.yaml", contract_app, config=SchemathesisConfig.from_dict(CONFIG)
    )
    cookie, token = session
    operation = schema[path][method]
    strategy = operation.as_strategy(mode, headers={"X-CSRF-Token": token}, cookies={"refarch_session": cookie})

    @given(strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case):
        # When the app answers, Then: no 5xx, a documented status, a body of the documented schema,
        # a valid request is not refused and a forbidden one is not accepted
        case.call_and_validate()

    answers_as_documented()
