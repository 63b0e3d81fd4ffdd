"""CloudFormation custom resource: run the migrations (and optionally seed) on every deploy."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from refarch import catalog
from refarch.db import migrate
from refarch.observability import logger
from refarch.runtime import Runtime

runtime = Runtime(application_name="migrate")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Create/Update: migrate (idempotent, advisory-locked), seed an empty catalog if asked. Delete: keep the data."""
    if event.get("RequestType") == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", "schema")}
    applied = migrate(runtime.db.dsn)
    seed_rows = int(event.get("ResourceProperties", {}).get("SeedRows", 0) or 0)
    inserted = 0
    if seed_rows:
        conn = runtime.db.connect()
        try:
            inserted = catalog.seed_if_empty(conn, seed_rows) or 0
        finally:
            conn.close()
    logger.info("schema ready", extra={"applied": applied, "seeded": inserted})
    return {"PhysicalResourceId": "schema", "Data": {"Applied": len(applied), "Seeded": inserted}}
