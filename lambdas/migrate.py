"""CloudFormation custom resource: run the migrations (and optionally seed) on every deploy."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from refarch import catalog, generations
from refarch.db import migrate
from refarch.db.roles import enable_runtime_logins
from refarch.index.pgvector_index import PgVectorIndex
from refarch.observability import logger
from refarch.runtime import Runtime
from refarch.settings import ConfigurationError
from refarch.source import load as load_source

runtime = Runtime(application_name="migrate")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Create/Update: migrate, create the vector table, enable the runtimes' logins, seed if asked. Delete: keep data.

    All of it is idempotent and advisory-locked where it matters, so a retry or a second deploy is safe.
    """
    if event.get("RequestType") == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", "schema")}
    settings = runtime.settings
    applied = migrate(runtime.db.dsn)
    if settings.vector_backend_kind == "pgvector" and not _first_generation_recorded():
        # Created here, as the owner: the runtimes' roles may read and write it, never create or alter it.
        # Only before a runtime recorded generation 1: from then on each generation has its table, of its
        # model's dimension, and a configured embedder of another dimension names the next re-index's.
        dimension = settings.vector_dimensions or settings.openai_dimensions
        if not dimension:
            raise ConfigurationError("the pgvector table needs REFARCH_VECTOR_DIMENSIONS (the embedder's dimension)")
        PgVectorIndex(runtime.db, dimension).ensure()
    seed_rows = int(event.get("ResourceProperties", {}).get("SeedRows", 0) or 0)
    inserted = 0
    conn = runtime.db.connect()
    try:
        logins = enable_runtime_logins(conn, settings)
        # The demo catalog seeds products only; a table brought by its owner has its own rows.
        if seed_rows and load_source(settings.source).is_builtin_products:
            inserted = catalog.seed_if_empty(conn, seed_rows) or 0
    finally:
        conn.close()
    logger.info("schema ready", extra={"applied": applied, "seeded": inserted, "logins": logins})
    return {"PhysicalResourceId": "schema", "Data": {"Applied": len(applied), "Seeded": inserted}}


def _first_generation_recorded() -> bool:
    """Whether index generation 1 records its embedder (then its table exists, of that embedder's dimension)."""
    with runtime.db.transaction() as conn:
        first = generations.get(conn, 1)
    return first is not None and first.recorded
