"""Pinecone indexes through the control plane: create one for a dimension, wait until it is ready, drop it.

One implementation for the two callers: the deploy's custom resource (`lambdas/pinecone_index.py`,
the first index) and `refarch reindex` (an index for a model of another dimension,
`refarch.generations.reindex.start`). The control plane is api.pinecone.io unless PINECONE_CONTROLLER_HOST
names another one (the SDK reads it; the tests point it at the stand-in).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from refarch.observability import logger

if TYPE_CHECKING:
    from pinecone import IndexModel, Pinecone

# The one field of an index created with a dimension and a metric: the vectors API that
# refarch.index.pinecone_index.PineconeIndex writes through (upsert/query) serves only such indexes.
DENSE_FIELD = "_values"
POLL_SECONDS = 5.0
# Pinecone index names: 1-45 lower-case alphanumerics or '-'.
MAX_NAME_LENGTH = 45
INDEX_NAME = re.compile(rf"[a-z0-9](?:[a-z0-9-]{{0,{MAX_NAME_LENGTH - 2}}}[a-z0-9])?")


class IndexDimensionError(ValueError):
    """An index of that name exists with another dimension; `host` is where it answers."""

    def __init__(self, message: str, *, existing: int, host: str | None) -> None:
        super().__init__(message)
        self.existing = existing
        self.host = host


@dataclass(frozen=True)
class EnsuredIndex:
    """A ready index of the asked dimension: its name, its data-plane host, and whether this call created it."""

    name: str
    host: str
    created: bool


def ensure_index(pc: Pinecone, name: str, *, dimension: int, region: str, deadline: float) -> EnsuredIndex:
    """Create the index (dense, cosine, serverless on AWS in `region`) if missing; check its dimension; wait for it.

    IndexDimensionError when an index of that name exists with another dimension (ValueError when
    it is not a dense index); TimeoutError (naming its state) when it is not ready by `deadline` (time.monotonic()).
    """
    from pinecone import NotFoundError

    created = False
    try:
        index = pc.indexes.describe(name)
    except NotFoundError:
        index = pc.indexes.create(
            name=name,
            schema={"fields": {DENSE_FIELD: {"type": "dense_vector", "dimension": dimension, "metric": "cosine"}}},
            deployment={"deployment_type": "managed", "cloud": "aws", "region": region},
            timeout=-1,  # waited for below, within the caller's deadline
        )
        created = True
        logger.info("pinecone index created", extra={"index": name, "dimension": dimension, "region": region})
    existing = index_dimension(index)
    if existing != dimension:
        raise IndexDimensionError(
            f"Pinecone index {name} has dimension {existing}, the embedder needs {dimension}: "
            "create a new index (another name) or change the embedder",
            existing=existing,
            host=index.host,
        )
    index = wait_until_ready(pc, index, deadline)
    if not index.host:
        raise RuntimeError(f"Pinecone index {name} is ready but has no host: describe it and report this")
    return EnsuredIndex(name=name, host=index.host, created=created)


def index_dimension(index: IndexModel) -> int:
    """The dimension of a dense vector index; ValueError for an index the vectors API cannot write to."""
    from pinecone import DenseVectorField

    field = index.schema.fields.get(DENSE_FIELD)
    if not isinstance(field, DenseVectorField):
        raise ValueError(
            f"Pinecone index {index.name} is not a dense vector index (fields: {sorted(index.schema.fields)}): "
            "choose another name"
        )
    return field.dimension


def wait_until_ready(pc: Pinecone, index: IndexModel, deadline: float) -> IndexModel:
    """Describe the index until it is ready; TimeoutError (naming its state) once the deadline passes."""
    while not index.status.ready:
        if index.status.state == "InitializationFailed":
            raise RuntimeError(f"Pinecone could not initialize index {index.name}: delete it and try again")
        if index.status.state in ("Terminating", "Disabled"):
            # Waiting cannot help: it is being deleted, or its project turned it off.
            raise RuntimeError(f"Pinecone index {index.name} is {index.status.state}: choose another name")
        if time.monotonic() + POLL_SECONDS > deadline:
            raise TimeoutError(f"Pinecone index {index.name} is still {index.status.state}: try again to wait more")
        time.sleep(POLL_SECONDS)
        index = pc.indexes.describe(index.name)
    return index


def region_of(pc: Pinecone, name: str | None, default: str) -> str:
    """The region an existing serverless index runs in (a new one goes beside it), else `default`."""
    from pinecone import NotFoundError

    if not name:
        return default
    try:
        deployment = pc.indexes.describe(name).deployment
    except NotFoundError:
        return default
    return getattr(deployment, "region", None) or default


def check_index_name(name: str) -> None:
    """ValueError naming the rule when Pinecone would refuse `name` as an index name."""
    if not INDEX_NAME.fullmatch(name):
        raise ValueError(
            f"Pinecone index name {name!r}: use 1-{MAX_NAME_LENGTH} lower-case letters, digits or '-', "
            "starting and ending with a letter or digit"
        )


def generation_index_name(base: str, generation_id: int) -> str:
    """The index a generation of another dimension gets: `<base>-g<id>`, within Pinecone's name length."""
    suffix = f"-g{int(generation_id)}"
    return base[: MAX_NAME_LENGTH - len(suffix)].rstrip("-") + suffix


def delete_index(pc: Pinecone, name: str) -> None:
    """Delete an index and everything in it (a missing one is already deleted)."""
    from pinecone import NotFoundError

    try:
        pc.indexes.delete(name, timeout=-1)
    except NotFoundError:
        return
    logger.info("pinecone index deleted", extra={"index": name})
