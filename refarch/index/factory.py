"""The one place that picks a vector index adapter: the settings' backend, or a generation's recorded target."""

from __future__ import annotations

from typing import Any

from refarch.db import Database
from refarch.index.pgvector_index import PgVectorIndex
from refarch.index.pinecone_index import PineconeIndex
from refarch.index.port import VectorIndex
from refarch.settings import ConfigurationError, Settings


def pinecone_api_key(settings: Settings) -> str:
    """The Pinecone API key: PINECONE_API_KEY, else the secret REFARCH_PINECONE_SECRET_ARN names."""
    from refarch.secrets import API_KEY_FIELDS, from_env_or_secret

    key = from_env_or_secret(
        settings.pinecone_api_key,
        settings.pinecone_secret_arn,
        settings.aws_region,
        what="Pinecone API key",
        fields=API_KEY_FIELDS,
    )
    if not key:
        raise ConfigurationError("Pinecone chosen but no PINECONE_API_KEY or REFARCH_PINECONE_SECRET_ARN set")
    return key


def make_index(
    settings: Settings, db: Database, dimension: int, *, target: dict[str, Any] | None = None, ensure: bool = True
) -> VectorIndex:
    """The index the settings choose (or a generation's recorded target), checked against the embedder's dimension.

    A target is a pgvector table ({"table": ...}) or a Pinecone index and namespace
    ({"index_name", "host", "namespace"}); credentials always come from the settings. `ensure`
    creates a missing table and checks the dimension (off only to drop an index).
    """
    index: PgVectorIndex | PineconeIndex
    pinecone = settings.vector_backend_kind == "pinecone" if target is None else "table" not in target
    if pinecone:
        key = pinecone_api_key(settings)
        where = target or {
            "index_name": settings.pinecone_index_name,
            "host": settings.pinecone_host,
            "namespace": settings.pinecone_namespace,
        }
        index = PineconeIndex(
            api_key=key,
            dimension=dimension,
            index_name=where.get("index_name"),
            host=where.get("host"),
            namespace=where["namespace"],
        )
    else:
        index = PgVectorIndex(db, dimension, (target or {}).get("table", "product_vectors"))
    if ensure:
        index.ensure()
    return index
