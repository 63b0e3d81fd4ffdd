"""A re-index in short, repeatable steps, for a state machine to drive (the Reindex state machine, docs/reindex.md).

A Lambda cannot wait hours, so the Reindex state machine owns the loop (wait, poll, re-send,
switch) and calls these steps, each one safe to repeat; `refarch reindex` runs the same synthesized
state machine locally (`refarch_local.stepfunctions.run_reindex`), so there is no other loop:

- `ensure_building`: the building generation for the configured embedder and vector index:
  created, or found already building, or not needed because the active generation already
  uses that embedder in that index;
- `building_progress`: how far it is, and whether both lanes are idle (rows still missing with
  idle lanes mean a message was lost or dead-lettered: time to re-send what is missing);
- `switch_to`: the switch, only to the generation this execution builds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from refarch import generations
from refarch.generations import EmbedderSpec, Generation, GenerationError, reindex
from refarch.generations.placement import Placement
from refarch.generations.targets import GenerationTargets
from refarch.lanes.queues import SyncQueue
from refarch.observability import logger


def decide_start(
    active: Generation,
    building: Generation | None,
    spec: EmbedderSpec,
    placement: Placement,
    source_text: str | None = None,
) -> Generation | None:
    """The generation that already serves `spec` in `placement`: the active one (nothing to do) or the
    building one (resume it); None when a building generation must be created.

    A generation serves them when it uses that embedder, lives in that vector index and was made from
    the source definition's embedded text (`source_text`, when known), so a new model, another
    backend, another Pinecone index or a new text template each start a re-index. Refused while a
    generation of another embedder or index builds: one build at a time.
    """

    def serves(generation: Generation) -> bool:
        same_text = source_text is None or generation.source_text in (None, source_text)
        return generation.embedder == spec and placement.holds(generation) and same_text

    if serves(active):
        return active
    if building is None:
        return None
    if serves(building):
        return building
    raise GenerationError(
        f"generation {building.id} ({building.model_id}, {building.backend} {_where(building)}) is building, not "
        f"the configured {spec.kind} model {spec.model} ({spec.dimensions or 'its'} dimensions) in "
        f"{placement.backend}{f' index {placement.pinecone_index}' if placement.pinecone_index else ''}"
        f"{f' namespace {placement.pinecone_namespace}' if placement.pinecone_namespace else ''}: let its "
        're-index finish, or abandon it ({"action": "abort"}) and start again'
    )


def _where(generation: Generation) -> str:
    """The generation's index, as an operator names it: a pgvector table or a Pinecone index."""
    return generation.target.describe() if generation.target else "no index recorded yet"


def ensure_building(targets: GenerationTargets, spec: EmbedderSpec) -> tuple[Generation, bool]:
    """The generation for this embedder, in the vector index the settings configure, and whether a
    re-index is needed: (active, False) when it already serves both, else (the building
    generation, True), created when none builds yet."""
    active = targets.active().generation  # records generation 1 first if needed
    with targets.db.transaction() as conn:
        building = generations.building(conn)
        source_text = generations.current_source_text(conn)
    found = decide_start(active, building, spec, Placement.from_settings(targets.settings), source_text)
    if found is active:
        if building is not None:
            # Not refused: the configuration asks for what search already uses. The other build goes on.
            logger.warning(
                "another generation is building while the configured embedder and index are the active one's",
                extra={
                    "building": building.id,
                    "model_id": building.model_id,
                    "advice": 'abandon it with {"action": "abort"} if it is no longer wanted',
                },
            )
        return active, False
    if found is not None:
        logger.info("re-index already building", extra={"generation": found.id, "model_id": found.model_id})
        return found, True
    return reindex.start(targets, spec), True


def lanes_idle(queues: Iterable[SyncQueue]) -> bool:
    """Nothing waiting and nothing in flight in any of these queues (SQS's approximate counts)."""
    return all(queue.depth() == {"visible": 0, "in_flight": 0} for queue in queues)


def building_progress(
    targets: GenerationTargets, generation_id: int | None, *, lanes: Iterable[SyncQueue]
) -> dict[str, Any]:
    """The building generation's progress (`refarch.generations.progress`), its id, and `lanes_idle`.

    `generation_id` names the generation the caller builds (default: whichever builds); another
    one, or none, is refused: it was switched, abandoned or replaced meanwhile.

    The lanes count as idle only when they were idle both before and after the table was read:
    Emu finishing its last messages between the two reads would otherwise look like rows lost
    (missing, with idle lanes) and start a needless Fill.
    """
    lanes = list(lanes)
    idle_before = lanes_idle(lanes)
    with targets.db.transaction() as conn:
        building = generations.building_as_expected(conn, generation_id)
        state = generations.progress(conn, building.id)
    return {"generation": building.id, **state, "lanes_idle": idle_before and lanes_idle(lanes)}


def switch_to(targets: GenerationTargets, generation_id: int | None) -> tuple[Generation, Generation]:
    """Switch to the building generation (checked complete and checked to be `generation_id` when
    one is named, in the switch's own transaction: `refarch.generations.reindex.switch`). Returns (previous, new)."""
    return reindex.switch(targets, generation_id)
