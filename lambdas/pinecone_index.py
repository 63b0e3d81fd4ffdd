"""CloudFormation custom resource: create the Pinecone serverless index if it does not exist."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from refarch.observability import logger
from refarch.secrets import api_key_from_secret


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Create (cosine, serverless, this region) on Create/Update; never delete the index (it holds data)."""
    props = event.get("ResourceProperties", {})
    name = props["IndexName"]
    if event.get("RequestType") == "Delete":
        return {"PhysicalResourceId": name}
    from pinecone import Pinecone, ServerlessSpec

    pc = Pinecone(api_key=api_key_from_secret(props["ApiKeySecretArn"], props["Region"]))
    dimension = int(props["Dimension"])
    if not pc.has_index(name):
        pc.create_index(
            name=name, dimension=dimension, metric="cosine", spec=ServerlessSpec(cloud="aws", region=props["Region"])
        )
        logger.info("pinecone index created", extra={"index": name, "dimension": dimension})
    description = pc.describe_index(name)
    if int(description.dimension) != dimension:
        raise ValueError(f"Pinecone index {name} has dimension {description.dimension}, the embedder needs {dimension}")
    while not description.status.get("ready"):
        time.sleep(5)
        description = pc.describe_index(name)
    return {"PhysicalResourceId": name, "Data": {"Host": description.host}}
