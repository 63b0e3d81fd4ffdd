"""Why a search answered lexically when asked for more: each reason's words, and which provider errors are which.

A provider that fails (an outage) and one that is too slow for the search budget (refarch.search.budget)
are told apart: the reason says which, and the logs carry the error. A provider this process has no
settings for (a ConfigurationError building the active generation's embedder or index) is a third reason.
"""

from __future__ import annotations

EMBEDDING_OUTAGE_MESSAGE = (
    "the embedding service is unavailable, so these results come from keyword (lexical) search only"
)
VECTOR_INDEX_OUTAGE_MESSAGE = (
    "the vector index is unavailable, so these results come from keyword (lexical) search only"
)
EMBEDDING_SLOW_MESSAGE = (
    "the embedding service was too slow to answer within the search's {budget:g} s budget, "
    "so these results come from keyword (lexical) search only"
)
VECTOR_INDEX_SLOW_MESSAGE = (
    "the vector index was too slow to answer within the search's {budget:g} s budget, "
    "so these results come from keyword (lexical) search only"
)
# The active generation's embedder or index cannot be built with this process's settings: its provider's key
# is not configured (a move off OpenAI deployed without keep_openai_access, or off Pinecone without
# keep_pinecone_access: docs/deploy.md), or the index holds another dimension than its model's.
NOT_CONFIGURED_MESSAGE = (
    "this server is not configured for the active index's embedding model or vector index, "
    "so these results come from keyword (lexical) search only"
)
BUSY_MESSAGE = (
    "semantic search is busy waiting on a slow provider, so these results come from keyword (lexical) search only"
)


def is_vector_index_outage(err: Exception) -> bool:
    """Whether `err` is the vector index service failing (Pinecone), not our bug.

    pgvector lives in the database: when it fails, lexical search cannot answer either (but a vector
    query cancelled by its statement_timeout is slow, `is_vector_index_timeout`).
    """
    try:
        import pinecone
    except ImportError:  # without the SDK there is no Pinecone index to fail
        return False
    return isinstance(err, pinecone.PineconeError)


def is_vector_index_timeout(err: Exception) -> bool:
    """Whether `err` is the vector index not answering in time: Pinecone's timeout, pgvector's statement_timeout."""
    from psycopg2.errors import QueryCanceled

    return isinstance(err, (TimeoutError, QueryCanceled))


def is_vector_index_retryable(err: Exception) -> bool:
    """Whether one more vector query may help: the service failed or was slow."""
    return is_vector_index_outage(err) or is_vector_index_timeout(err)
