"""CloudFormation custom resource: create the Pinecone serverless index if it does not exist."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from refarch.index import pinecone_indexes
from refarch.observability import logger
from refarch.secrets import API_KEY_FIELDS, secret_text

# Give up this long before Lambda would cut the invocation off, so the stack event says why.
DEADLINE_MARGIN_SECONDS = 15.0


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Create/Update: create the index (dense, cosine, this region) if missing, check its dimension, wait until ready.

    Delete keeps the index (it holds data). An Update to another dimension (a new model in the
    stage config) keeps it too: it serves the index generations of its dimension, and the re-index
    that the deploy starts creates an index of the new dimension beside it (docs/reindex.md).
    `refarch.index.pinecone_indexes` does the work, for both.
    """
    props = event.get("ResourceProperties", {})
    name = props["IndexName"]
    if event.get("RequestType") == "Delete":
        return {"PhysicalResourceId": name}
    from pinecone import Pinecone

    region = props["Region"]
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    pc = Pinecone(api_key=secret_text(props["ApiKeySecretArn"], region, fields=API_KEY_FIELDS))
    try:
        index = pinecone_indexes.ensure_index(
            pc, name, dimension=int(props["Dimension"]), region=region, deadline=deadline
        )
    except pinecone_indexes.IndexDimensionError as err:
        if event.get("RequestType") != "Update" or not err.host:
            raise  # a new stack pointed at an index of another dimension: a mistake to report
        logger.info(
            "pinecone index keeps its dimension; the re-index creates one for the new model",
            extra={"index": name, "dimension": err.existing, "configured": props["Dimension"]},
        )
        return {"PhysicalResourceId": name, "Data": {"Host": err.host}}
    return {"PhysicalResourceId": name, "Data": {"Host": index.host}}
