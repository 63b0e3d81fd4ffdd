"""Where a new index generation's vectors go: a pgvector table, or a Pinecone index and namespace.

`default_target` is the decision (a pure function of the settings and the dimensions);
`configured_index_dimension` reads the one fact it needs from the recorded generations;
`Placement` is where the settings place generations, and says whether a generation already is
there (the re-index start step moves it when it is not: a deploy that changes the backend or
the Pinecone index starts a re-index, as one that changes the model does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from refarch.db import Connection
from refarch.generations import Generation, GenerationError, list_generations
from refarch.index.pinecone_indexes import generation_index_name
from refarch.index.vector_target import PgVectorTable, PineconeNamespace, VectorTarget
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
) -> VectorTarget:
    """Where a new generation's vectors go, for the configured backend.

    pgvector: a table of its own. Pinecone: a namespace of its own, in the configured index when
    it holds vectors of this dimension (`configured_dimension`, None while unknown); in
    `pinecone_index` when one is named; else in an index of its own (`<configured index>-g<id>`,
    marked `dedicated`: the re-index creates it, gc deletes it). The caller creates the index
    (refarch.generations.reindex.start).
    """
    if settings.vector_backend_kind == "pgvector":
        return PgVectorTable(table=pgvector_table(generation_id))
    namespace = settings.pinecone_namespace if generation_id == 1 else f"{settings.pinecone_namespace}-g{generation_id}"
    if pinecone_index and pinecone_index != settings.pinecone_index_name:
        return PineconeNamespace(index_name=pinecone_index, host=None, namespace=namespace)
    if pinecone_index or configured_dimension in (None, dimension):
        return PineconeNamespace(
            index_name=settings.pinecone_index_name, host=settings.pinecone_host, namespace=namespace
        )
    if not settings.pinecone_index_name:
        raise GenerationError(
            f"the Pinecone index holds {configured_dimension}-d vectors and the new model produces {dimension}-d, "
            "and no PINECONE_INDEX_NAME is configured to name a new index after: name one with --pinecone-index"
        )
    name = generation_index_name(settings.pinecone_index_name, generation_id)
    return PineconeNamespace(index_name=name, host=None, namespace=namespace, dedicated=True)


def configured_index_dimension(conn: Connection, settings: Settings) -> int | None:
    """The dimension of the configured Pinecone index, as any generation ever written to it recorded it.

    A Pinecone index's dimension never changes, so a dropped generation still tells it. None
    when no generation used it yet.
    """
    by_name = bool(settings.pinecone_index_name)
    configured = settings.pinecone_index_name if by_name else settings.pinecone_host
    for generation in list_generations(conn, include_dropped=True):
        where = generation.target
        if isinstance(where, PineconeNamespace) and (where.index_name if by_name else where.host) == configured:
            return generation.dimension
    return None


@dataclass(frozen=True)
class Placement:
    """The vector index the settings configure: the backend, and with Pinecone the index's name."""

    backend: Literal["pgvector", "pinecone"]
    pinecone_index: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Placement:
        """Where these settings place a new generation."""
        backend = settings.vector_backend_kind
        return cls(backend, settings.pinecone_index_name if backend == "pinecone" else None)

    def holds(self, generation: Generation) -> bool:
        """Whether `generation` lives in this vector index (else a re-index moves it there).

        With Pinecone, the configured index or the one a re-index created beside it for another
        dimension (`<configured index>-g<id>`: see `default_target`) both count; a generation whose
        target names no index (only a host was configured) is taken to be where it belongs.
        """
        if generation.backend != self.backend:
            return False
        name = generation.target.index_name if isinstance(generation.target, PineconeNamespace) else None
        if self.backend == "pgvector" or self.pinecone_index is None or name is None:
            return True
        return name in (self.pinecone_index, generation_index_name(self.pinecone_index, generation.id))

    def as_json(self) -> dict[str, Any]:
        """For the Reindex state machine's input (a deploy that changes it starts an execution)."""
        return {"backend": self.backend, "pinecone_index": self.pinecone_index}
