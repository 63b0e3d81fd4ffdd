"""Change the embedding model or the vector index with zero downtime (docs/reindex.md).

`start` records a building generation and creates its index; a bootstrap run targeted at it
fills it through the bulk lane while search keeps reading the active one, and Emu applies every
live change to both. `switch` makes it active in one update once it holds every row at its
current version; `rollback` makes the previous one active again; `collect_garbage` drops
retired generations after the grace period. Waiting for a build and switching is the Reindex state
machine's (its steps are `refarch.generations.reindex_flow`), on AWS and locally alike.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from refarch import generations
from refarch.generations import EmbedderSpec, Generation, placement
from refarch.generations.targets import GenerationTargets
from refarch.index import pinecone_indexes
from refarch.index.factory import make_index, pinecone_api_key
from refarch.index.vector_target import PineconeNamespace, VectorTarget
from refarch.observability import logger
from refarch.settings import Settings

if TYPE_CHECKING:
    from pinecone import Pinecone

# A retired generation is kept (and kept in sync) this long for a rollback, unless told otherwise.
DEFAULT_GRACE = timedelta(hours=24)
# How long a re-index waits for a new Pinecone index to become ready (usually under a minute).
PINECONE_READY_SECONDS = 600.0


def start(targets: GenerationTargets, spec: EmbedderSpec, *, pinecone_index: str | None = None) -> Generation:
    """Record a building generation for this embedder and create its index (the table, or the namespace).

    With Pinecone, a model of the same dimension gets a namespace of its own in the configured
    index; one of another dimension gets an index of its own, created here by the code the
    deploy's custom resource uses (refarch.index.pinecone_indexes), in the configured index's region.
    `pinecone_index` names the index to use instead (created if missing).
    """
    settings, db = targets.settings, targets.db
    active = targets.active().generation  # records generation 1 first if needed
    embedder = targets.embedder_for(spec)
    with db.transaction() as conn:
        configured_dimension = placement.configured_index_dimension(conn, settings)

    def target_for(generation_id: int, current: Generation) -> VectorTarget:
        target = placement.default_target(
            settings,
            generation_id,
            dimension=embedder.dimension,
            configured_dimension=configured_dimension,
            pinecone_index=pinecone_index,
        )
        if isinstance(target, PineconeNamespace) and target.host is None and target.index_name:
            target = replace(target, host=_ensure_pinecone_index(settings, target.index_name, embedder.dimension))
        # Created before the generation is visible, so Emu never writes to an index that is not there.
        make_index(settings, db, embedder.dimension, target=target)
        return target

    with db.transaction() as conn:
        created = generations.create_building(
            conn,
            spec=spec,
            model_id=embedder.model_id,
            dimension=embedder.dimension,
            backend=settings.vector_backend_kind,
            target_for=target_for,
        )
    logger.info(
        "re-index started",
        extra={"generation": created.id, "model_id": created.model_id, "active": active.id},
    )
    return created


def status(targets: GenerationTargets) -> dict[str, Any]:
    """Every generation (not dropped), and the building one's progress."""
    with targets.db.transaction() as conn:
        listed = generations.list_generations(conn)
        found = generations.building(conn)
        progress = generations.progress(conn, found.id) if found else None
    return {"generations": [g.describe() for g in listed], "building": progress}


def switch(targets: GenerationTargets, expected: int | None = None) -> tuple[Generation, Generation]:
    """Make the building generation active (refused unless it holds every row, or if it is not
    `expected`); returns (previous, new)."""
    with targets.db.transaction() as conn:
        previous, new = generations.switch(conn, expected)
    targets.forget(new.id)
    logger.info("generation switched", extra={"previous": previous.id, "active": new.id})
    return previous, new


def rollback(targets: GenerationTargets) -> tuple[Generation, Generation]:
    """Make the most recently retired generation active again; returns (previous, restored)."""
    with targets.db.transaction() as conn:
        previous, restored = generations.rollback(conn)
    targets.forget(restored.id)
    logger.info("generation rolled back", extra={"previous": previous.id, "active": restored.id})
    return previous, restored


def abort(targets: GenerationTargets) -> Generation:
    """Abandon the building generation (the next gc drops it)."""
    with targets.db.transaction() as conn:
        return generations.abort_building(conn)


def collect_garbage(targets: GenerationTargets, grace: timedelta = DEFAULT_GRACE) -> list[int]:
    """Drop abandoned generations, and retired ones older than `grace`; returns their ids.

    First they are marked dropped and their ledger rows deleted, in one transaction: from then on
    no writer touches them and no rollback can restore them. Then each one's index is removed and
    that is recorded (`remove_index`). A removal that fails is tried again by the next gc
    (GenerationError after the others were tried), and never leaves a live generation without its index.
    """
    with targets.db.transaction() as conn:
        dropped = generations.drop_expired(conn, grace)
    for generation in dropped:
        targets.forget(generation.id)
        logger.info("generation dropped", extra={"generation": generation.id, "model_id": generation.model_id})
    with targets.db.transaction() as conn:
        leftover = generations.to_remove(conn)
    failed: dict[int, str] = {}
    for generation in leftover:
        try:
            remove_index(targets, generation)
        except Exception as err:
            logger.warning(
                "could not remove a dropped generation's index", extra={"generation": generation.id, "error": str(err)}
            )
            failed[generation.id] = f"{type(err).__name__}: {err}"
    if failed:
        raise generations.GenerationError(
            f"dropped generation(s) {sorted(failed)} keep their index for now (the next gc removes it): {failed}"
        )
    return [g.id for g in dropped]


def remove_index(targets: GenerationTargets, generation: Generation) -> None:
    """Remove a dropped generation's index, checked against the live generations first, and record it.

    Its table or namespace is dropped; a Pinecone index created for it (another dimension) is
    deleted whole, unless a live generation was placed in that index later: then only its
    namespace goes (`placement.removal_for`). The check, the removal and the record are one
    transaction that holds off new generations, which commits only once the removal succeeded.
    """
    settings, db = targets.settings, targets.db
    with db.transaction() as conn:
        live = generations.live_while_removing(conn)
        removal = placement.removal_for(generation, live)
        generations.mark_index_removed(conn, generation.id)
        if removal.kept_for is not None:
            logger.info(
                "a live generation uses the dropped generation's index: kept",
                extra={"generation": generation.id, "live_generation": removal.kept_for, "removal": removal.action},
            )
        where = generation.target
        if removal.action == "delete_index" and isinstance(where, PineconeNamespace) and where.index_name:
            pinecone_indexes.delete_index(_pinecone(settings), where.index_name)
        elif removal.action == "drop_own" and where is not None and generation.dimension is not None:
            make_index(settings, db, generation.dimension, target=where, ensure=False).drop()


def _pinecone(settings: Settings) -> Pinecone:
    from pinecone import Pinecone

    return Pinecone(api_key=pinecone_api_key(settings))


def _ensure_pinecone_index(settings: Settings, name: str, dimension: int) -> str:
    """Create the index if missing (beside the configured one), wait until it is ready; returns its host."""
    pc = _pinecone(settings)
    region = pinecone_indexes.region_of(pc, settings.pinecone_index_name, default=settings.aws_region)
    deadline = time.monotonic() + PINECONE_READY_SECONDS
    return pinecone_indexes.ensure_index(pc, name, dimension=dimension, region=region, deadline=deadline).host
