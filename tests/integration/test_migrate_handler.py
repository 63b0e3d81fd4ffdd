"""The migrate custom resource end to end: real Postgres, secrets from a real Secrets Manager API (moto's server).

On deploy it migrates, creates the pgvector table for the embedder's dimension, turns each
runtime's login on with the password from that runtime's secret, and seeds an empty catalog.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import lambdas.migrate
from refarch import generations
from refarch.db import connect, migration_files
from refarch.db.roles import RUNTIME_ROLES
from refarch.generations import EmbedderSpec
from refarch.index.vector_target import PgVectorTable
from refarch.runtime import Runtime
from refarch.settings import Settings
from refarch_local.handlers import LocalLambdaContext
from tests.conftest import scram_matches


@pytest.fixture
def role_secrets(secretsmanager: Any) -> dict[str, tuple[str, str]]:
    """One generated-looking secret per runtime, as the data stack creates them: runtime -> (arn, password)."""
    created = {}
    for runtime, role in RUNTIME_ROLES.items():
        password = uuid.uuid4().hex
        arn = secretsmanager.create_secret(
            Name=f"test/{uuid.uuid4().hex[:8]}/database/{runtime}",
            SecretString=json.dumps({"username": role, "password": password, "dbname": "refarch"}),
        )["ARN"]
        created[runtime] = (arn, password)
    return created


def run_handler(monkeypatch: pytest.MonkeyPatch, request_type: str, seed_rows: int) -> dict:
    # The module builds its runtime at import (cold start); give it this test's settings.
    monkeypatch.setattr(lambdas.migrate, "runtime", Runtime(Settings(), application_name="migrate"))
    event = {"RequestType": request_type, "ResourceProperties": {"SeedRows": str(seed_rows)}}
    return lambdas.migrate.handler(event, LocalLambdaContext(function_name="migrate"))


def test_deploy_migrates_creates_the_vector_table_enables_logins_and_seeds(
    empty_dsn, role_secrets, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DATABASE_URL", empty_dsn)
    monkeypatch.setenv("REFARCH_VECTOR_BACKEND", "pgvector")
    monkeypatch.setenv("REFARCH_OPENAI_DIMENSIONS", "384")
    monkeypatch.setenv(
        "REFARCH_DATABASE_ROLE_SECRET_ARNS", json.dumps({runtime: arn for runtime, (arn, _) in role_secrets.items()})
    )

    first = run_handler(monkeypatch, "Create", seed_rows=25)
    assert first["Data"] == {"Applied": len(migration_files()), "Seeded": 25}

    conn = connect(empty_dsn)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'product_vectors'::regclass AND attname = 'embedding'"
        )
        assert cur.fetchone()[0] == "vector(384)"
        cur.execute(
            "SELECT rolname, rolcanlogin, rolpassword FROM pg_authid WHERE rolname = ANY(%s)",
            (list(RUNTIME_ROLES.values()),),
        )
        logins = {name: (can_login, verifier) for name, can_login, verifier in cur.fetchall()}
    conn.close()
    for runtime, role in RUNTIME_ROLES.items():
        can_login, verifier = logins[role]
        assert can_login, f"{role} cannot log in"
        assert scram_matches(verifier, role_secrets[runtime][1]), f"{role}'s password is not its secret's"
        assert not scram_matches(verifier, "not-the-password")

    # A second deploy (Update) is a no-op for the schema and the catalog.
    again = run_handler(monkeypatch, "Update", seed_rows=25)
    assert again["Data"] == {"Applied": 0, "Seeded": 0}
    # Delete keeps the data.
    assert run_handler(monkeypatch, "Delete", seed_rows=0)["PhysicalResourceId"] == "schema"
    conn = connect(empty_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM products")
        assert cur.fetchone()[0] == 25
    conn.close()


def test_a_secret_for_the_wrong_user_fails_the_deploy_clearly(
    empty_dsn, secretsmanager, monkeypatch: pytest.MonkeyPatch
):
    arn = secretsmanager.create_secret(
        Name=f"test/{uuid.uuid4().hex[:8]}/database/web",
        SecretString=json.dumps({"username": "postgres", "password": "x"}),
    )["ARN"]
    monkeypatch.setenv("DATABASE_URL", empty_dsn)
    monkeypatch.setenv("REFARCH_VECTOR_BACKEND", "pgvector")
    monkeypatch.setenv("REFARCH_DATABASE_ROLE_SECRET_ARNS", json.dumps({"web": arn}))
    with pytest.raises(ValueError, match="the web secret names user 'postgres'"):
        run_handler(monkeypatch, "Create", seed_rows=0)


def test_a_deploy_after_the_embedder_changed_dimension_leaves_the_recorded_generation_table(
    empty_dsn, role_secrets, monkeypatch: pytest.MonkeyPatch
):
    # Given a first deploy (384-d) and a runtime that recorded generation 1 with its embedder
    monkeypatch.setenv("DATABASE_URL", empty_dsn)
    monkeypatch.setenv("REFARCH_VECTOR_BACKEND", "pgvector")
    monkeypatch.setenv("REFARCH_OPENAI_DIMENSIONS", "384")
    monkeypatch.setenv(
        "REFARCH_DATABASE_ROLE_SECRET_ARNS", json.dumps({runtime: arn for runtime, (arn, _) in role_secrets.items()})
    )
    run_handler(monkeypatch, "Create", seed_rows=0)
    conn = connect(empty_dsn)
    with conn:
        generations.adopt(
            conn,
            1,
            spec=EmbedderSpec("openai", "text-embedding-3-small", 384),
            model_id="openai:text-embedding-3-small:384",
            dimension=384,
            backend="pgvector",
            target=PgVectorTable(table="product_vectors"),
        )
    conn.close()
    # When the stage config names a 64-d model (the next re-index's) and a later deploy runs the migrations again
    monkeypatch.setenv("REFARCH_OPENAI_DIMENSIONS", "64")
    again = run_handler(monkeypatch, "Update", seed_rows=0)
    # Then the deploy succeeds, and generation 1's table keeps its dimension (the re-index builds a table of its own)
    assert again["PhysicalResourceId"] == "schema"
    conn = connect(empty_dsn)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'product_vectors'::regclass AND attname = 'embedding'"
        )
        assert cur.fetchone()[0] == "vector(384)"
    conn.close()
