"""The one place that picks a vector index adapter: the settings' backend, or a generation's recorded target."""

from __future__ import annotations

from refarch.db import Database
from refarch.index.pgvector_index import PgVectorIndex
from refarch.index.pinecone_index import PineconeIndex
from refarch.index.port import VectorIndex
from refarch.index.vector_target import PgVectorTable, PineconeNamespace, VectorTarget
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
    settings: Settings, db: Database, dimension: int, *, target: VectorTarget, ensure: bool = True
) -> VectorIndex:
    """A client of the index at `target`, checked against the embedder's dimension.

    Credentials always come from the settings. `ensure` creates a missing table and checks the
    dimension (off only to drop an index).
    """
    index: PgVectorIndex | PineconeIndex
    match target:
        case PineconeNamespace(index_name=index_name, host=host, namespace=namespace):
            index = PineconeIndex(
                api_key=pinecone_api_key(settings),
                dimension=dimension,
                index_name=index_name,
                host=host,
                namespace=namespace,
                timeout_seconds=settings.pinecone_timeout_seconds,
                max_retries=settings.pinecone_max_retries,
            )
        case PgVectorTable(table=table):
            index = PgVectorIndex(db, dimension, table, query_timeout_seconds=settings.vector_query_timeout_seconds)
    if ensure:
        index.ensure()
    return index
