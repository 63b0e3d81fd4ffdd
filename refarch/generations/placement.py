"""Where a new index generation's vectors go: a pgvector table, or a Pinecone index and namespace;
and what gc may remove of a dropped generation's.

`default_target` is the decision (a pure function of the settings and the dimensions);
`configured_index_dimension` reads the one fact it needs from the recorded generations;
`Placement` is where the settings place generations, and says whether a generation already is
there (the re-index start step moves it when it is not: a deploy that changes the backend, the
Pinecone index or its namespace starts a re-index, as one that changes the model does).
`removal_for` decides what removing a dropped generation's index deletes, given the live ones.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def generation_namespace(base: str, generation_id: int) -> str:
    """The Pinecone namespace of a generation: the configured one for generation 1, `<base>-g<id>` after."""
    return base if generation_id == 1 else f"{base}-g{int(generation_id)}"


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
    namespace = generation_namespace(settings.pinecone_namespace, generation_id)
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
    """The vector index the settings configure: the backend, and with Pinecone the index's name and
    the namespace generations are named after (None: not checked)."""

    backend: Literal["pgvector", "pinecone"]
    pinecone_index: str | None = None
    pinecone_namespace: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Placement:
        """Where these settings place a new generation."""
        backend = settings.vector_backend_kind
        if backend == "pgvector":
            return cls(backend)
        return cls(backend, settings.pinecone_index_name, settings.pinecone_namespace)

    def holds(self, generation: Generation) -> bool:
        """Whether `generation` lives in this vector index (else a re-index moves it there).

        With Pinecone, the configured index or the one a re-index created beside it for another
        dimension (`<configured index>-g<id>`: see `default_target`) both count, and the namespace
        must be the one `generation_namespace` names; a generation whose target names no index
        (only a host was configured) is taken to be in the configured index.
        """
        if generation.backend != self.backend:
            return False
        if self.backend == "pgvector":
            return True
        where = generation.target
        if not isinstance(where, PineconeNamespace):
            return True  # not recorded yet (generation 1): it will be recorded where the settings say
        name, namespace = where.index_name, where.namespace
        in_index = (
            self.pinecone_index is None
            or name is None
            or name in (self.pinecone_index, generation_index_name(self.pinecone_index, generation.id))
        )
        in_namespace = self.pinecone_namespace is None or namespace == generation_namespace(
            self.pinecone_namespace, generation.id
        )
        return in_index and in_namespace

    def as_json(self) -> dict[str, Any]:
        """For the Reindex state machine's input (a deploy that changes it starts an execution)."""
        return {"backend": self.backend, "pinecone_index": self.pinecone_index, "namespace": self.pinecone_namespace}


@dataclass(frozen=True)
class IndexRemoval:
    """What gc deletes for a dropped generation.

    `delete_index`: its dedicated Pinecone index, whole; `drop_own`: only its table or namespace;
    `nothing`: a live generation uses that very table or namespace (or no target was recorded).
    `kept_for` is the live generation that kept the index (or the namespace) from being deleted,
    if one did.
    """

    action: Literal["delete_index", "drop_own", "nothing"]
    kept_for: int | None = None


def removal_for(dropped: Generation, live: Iterable[Generation]) -> IndexRemoval:
    """What removing `dropped`'s index may delete without touching a live generation's vectors.

    A dedicated Pinecone index (created for `dropped`, for another dimension) is deleted whole only
    when no live generation was placed in it later (`--pinecone-index`, or a stage config naming
    it); otherwise only `dropped`'s namespace is emptied. A table or namespace a live generation
    uses is never dropped.
    """
    where = dropped.target
    if where is None:
        return IndexRemoval("nothing")
    others = [(g.id, g.target) for g in live if g.id != dropped.id and g.target is not None]
    for other_id, other in others:
        if _same_place(where, other):
            return IndexRemoval("nothing", kept_for=other_id)
    if isinstance(where, PineconeNamespace) and where.dedicated:
        for other_id, other in others:
            if isinstance(other, PineconeNamespace) and _same_pinecone_index(where, other):
                return IndexRemoval("drop_own", kept_for=other_id)
        return IndexRemoval("delete_index")
    return IndexRemoval("drop_own")


def _same_pinecone_index(a: PineconeNamespace, b: PineconeNamespace) -> bool:
    """Whether two Pinecone targets name the same index (by name, or by host when one has no name)."""
    if a.index_name and b.index_name:
        return a.index_name == b.index_name
    return a.host is not None and a.host == b.host


def _same_place(a: VectorTarget, b: VectorTarget) -> bool:
    """Whether two targets hold their vectors in the same place: one table, or one namespace of one index."""
    match a, b:
        case PgVectorTable(), PgVectorTable():
            return a.table == b.table
        case PineconeNamespace(), PineconeNamespace():
            return a.namespace == b.namespace and _same_pinecone_index(a, b)
    return False
