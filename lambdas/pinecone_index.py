"""CloudFormation custom resource: create the Pinecone serverless index if it does not exist."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from refarch.observability import logger
from refarch.secrets import API_KEY_FIELDS, secret_text

if TYPE_CHECKING:
    from pinecone import IndexModel, Pinecone

# The one field of an index created with a dimension and a metric: the vectors API that
# refarch.vector_index.PineconeIndex writes through (upsert/query) serves only such indexes.
DENSE_FIELD = "_values"
POLL_SECONDS = 5.0
# Give up this long before Lambda would cut the invocation off, so the stack event says why.
DEADLINE_MARGIN_SECONDS = 15.0


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Create/Update: create the index (dense, cosine, this region) if missing, check its dimension, wait until ready.

    Delete keeps the index (it holds data). The control plane is api.pinecone.io unless
    PINECONE_CONTROLLER_HOST names another one (the SDK reads it; the tests point it at the stand-in).
    """
    props = event.get("ResourceProperties", {})
    name = props["IndexName"]
    if event.get("RequestType") == "Delete":
        return {"PhysicalResourceId": name}
    from pinecone import NotFoundError, Pinecone

    region = props["Region"]
    dimension = int(props["Dimension"])
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS
    pc = Pinecone(api_key=secret_text(props["ApiKeySecretArn"], region, fields=API_KEY_FIELDS))
    try:
        index = pc.indexes.describe(name)
    except NotFoundError:
        index = pc.indexes.create(
            name=name,
            schema={"fields": {DENSE_FIELD: {"type": "dense_vector", "dimension": dimension, "metric": "cosine"}}},
            deployment={"deployment_type": "managed", "cloud": "aws", "region": region},
            timeout=-1,  # waited for below, within this invocation's time
        )
        logger.info("pinecone index created", extra={"index": name, "dimension": dimension, "region": region})
    existing = index_dimension(index)
    if existing != dimension:
        raise ValueError(
            f"Pinecone index {name} has dimension {existing}, the embedder needs {dimension}: "
            "create a new index (another IndexName) or change the embedder"
        )
    index = wait_until_ready(pc, index, deadline)
    return {"PhysicalResourceId": name, "Data": {"Host": index.host}}


def index_dimension(index: IndexModel) -> int:
    """The dimension of a dense vector index; ValueError for an index the vectors API cannot write to."""
    from pinecone import DenseVectorField

    field = index.schema.fields.get(DENSE_FIELD)
    if not isinstance(field, DenseVectorField):
        raise ValueError(
            f"Pinecone index {index.name} is not a dense vector index (fields: {sorted(index.schema.fields)}): "
            "choose another IndexName"
        )
    return field.dimension


def wait_until_ready(pc: Pinecone, index: IndexModel, deadline: float) -> IndexModel:
    """Describe the index until it is ready; TimeoutError (naming its state) once the deadline passes."""
    while not index.status.ready:
        if index.status.state == "InitializationFailed":
            raise RuntimeError(f"Pinecone could not initialize index {index.name}: delete it and deploy again")
        if index.status.state in ("Terminating", "Disabled"):
            # Waiting cannot help: it is being deleted, or its project turned it off.
            raise RuntimeError(f"Pinecone index {index.name} is {index.status.state}: choose another IndexName")
        if time.monotonic() + POLL_SECONDS > deadline:
            raise TimeoutError(f"Pinecone index {index.name} is still {index.status.state}: deploy again to wait more")
        time.sleep(POLL_SECONDS)
        index = pc.indexes.describe(index.name)
    return index
