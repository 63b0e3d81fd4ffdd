"""The OpenAPI document is the API's contract: generated from the models, and the app keeps it.

Schemathesis generates requests from the served document (valid ones, and ones the document forbids)
and sends them to the real app in-process (WSGI) on a real Postgres with the real embedding model.
Every answer must be a documented status with a body of the documented shape, no 5xx, valid requests
are not refused (400/413) and forbidden ones are not accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
import yaml
from flask import Flask
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig

from refarch.runtime import Runtime
from tests.web.conftest import build_app, csrf_token
from web.openapi import render

OPENAPI_YAML = Path(__file__).resolve().parents[2] / "web" / "openapi.yaml"
# Small enough for two busy cores (every search embeds its query), large enough to reach each limit.
EXAMPLES_PER_OPERATION = 25
CONFIG = {
    "seed": 16,
    "generation": {"modes": ["positive", "negative"], "max-examples": EXAMPLES_PER_OPERATION, "deterministic": True},
    "checks": {
        # 409 is a state (duplicate SKU, stale version), not a refusal of the request's shape.
        "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409"]},
    },
}


def test_the_checked_in_document_is_what_the_models_generate():
    # Given the models, When the document is generated again (`make openapi`)
    generated = render()
    # Then it is valid OpenAPI and identical to the checked-in file: document and code cannot drift
    validate(yaml.safe_load(generated))
    assert generated == OPENAPI_YAML.read_text(), "web/openapi.yaml is stale: run `make openapi` and commit it"


@pytest.fixture
def contract_app(runtime: Runtime, catalog) -> Flask:
    """The open app (no edit password) with limits no generated burst reaches, and a few products."""
    return build_app(runtime, RATE_LIMIT_SEARCH="100000 per minute", RATE_LIMIT_WRITE="100000 per minute")


@pytest.fixture
def api_schema(contract_app: Flask):
    """The document the app serves, with a signed session cookie and its CSRF token on every request."""
    client = contract_app.test_client()
    token = csrf_token(client)
    cookie = client.get_cookie("refarch_session")
    assert cookie is not None
    schema = schemathesis.openapi.from_wsgi(
        "/api/openapi.yaml", contract_app, config=SchemathesisConfig.from_dict(CONFIG)
    )

    @schema.auth()
    class Session:
        """The session cookie and CSRF token, as the page sends them."""

        def get(self, case, context):
            return token

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "X-CSRF-Token": data}
            case.cookies = {**(case.cookies or {}), "refarch_session": cookie.value}

    return schema


contract = schemathesis.pytest.from_fixture("api_schema")


@contract.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_app_keeps_the_documented_contract(case):
    # Given a request generated from the document (valid or deliberately not), When the app answers it,
    # Then: no 5xx, a documented status, a body of the documented schema, valid requests accepted,
    # invalid ones refused
    case.call_and_validate()
