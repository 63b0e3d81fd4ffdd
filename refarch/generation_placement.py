"""Where a new index generation's vectors go: a pgvector table, or a Pinecone index and namespace.

`default_target` is the decision (a pure function of the settings and the dimensions);
`configured_index_dimension` reads the one fact it needs from the recorded generations.
"""

from __future__ import annotations

from typing import Any

from refarch.db import Connection
from refarch.generations import GenerationError, list_generations
from refarch.pinecone_indexes import generation_index_name
from refarch.settings import Settings

# The pgvector table of generation 1 keeps its historical name; later ones get a suffix.
FIRST_TABLE = "product_vectors"


def pgvector_table(generation_id: int) -> str:
    """The pgvector table of a generation: product_vectors, product_vectors_g2, ..."""
    return FIRST_TABLE if generation_id == 1 else f"{FIRST_TABLE}_g{int(generation_id)}"


def default_target(
    settings: Settings,
    generation_id: int,
    *,
    dimension: int,
    configured_dimension: int | None = None,
    pinecone_index: str | None = None,
) -> dict[str, Any]:
    """Where a new generation's vectors go, for the configured backend.

    pgvector: a table of its own. Pinecone: a namespace of its own, in the configured index when
    it holds vectors of this dimension (`configured_dimension`, None while unknown); in
    `pinecone_index` when one is named; else in an index of its own (`<configured index>-g<id>`,
    marked `dedicated`: the re-index creates it, gc deletes it). The caller creates the index
    (refarch.reindex.start).
    """
    if settings.vector_backend_kind == "pgvector":
        return {"table": pgvector_table(generation_id)}
    namespace = settings.pinecone_namespace if generation_id == 1 else f"{settings.pinecone_namespace}-g{generation_id}"
    if pinecone_index and pinecone_index != settings.pinecone_index_name:
        return {"index_name": pinecone_index, "host": None, "namespace": namespace}
    if pinecone_index or configured_dimension in (None, dimension):
        return {"index_name": settings.pinecone_index_name, "host": settings.pinecone_host, "namespace": namespace}
    if not settings.pinecone_index_name:
        raise GenerationError(
            f"the Pinecone index holds {configured_dimension}-d vectors and the new model produces {dimension}-d, "
            "and no PINECONE_INDEX_NAME is configured to name a new index after: name one with --pinecone-index"
        )
    name = generation_index_name(settings.pinecone_index_name, generation_id)
    return {"index_name": name, "host": None, "namespace": namespace, "dedicated": True}


def configured_index_dimension(conn: Connection, settings: Settings) -> int | None:
    """The dimension of the configured Pinecone index, as any generation ever written to it recorded it.

    A Pinecone index's dimension never changes, so a dropped generation still tells it. None
    when no generation used it yet.
    """
    configured: str | None = settings.pinecone_index_name
    key = "index_name"
    if not configured:
        key, configured = "host", settings.pinecone_host
    for generation in list_generations(conn, include_dropped=True):
        if generation.backend == "pinecone" and generation.target.get(key) == configured:
            return generation.dimension
    return None
