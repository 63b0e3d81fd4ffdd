"""Each index generation's embedder and vector index, built once per process.

Search asks for the active generation per request (`active`, cached for a few seconds, so every
web task follows a switch within seconds without a restart); Emu asks for every live generation
in each chunk's transaction (`live`), so a change is applied to all of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import psycopg2.errors

from refarch import generations
from refarch.db import Connection, Database
from refarch.embeddings import Embedder, make_embedder
from refarch.generations import EmbedderSpec, Generation, placement
from refarch.index.factory import make_index
from refarch.index.port import DimensionMismatchError, VectorIndex
from refarch.observability import logger
from refarch.settings import Settings

# How long a process keeps using the active generation it last read.
ACTIVE_CACHE_SECONDS = 3.0


@dataclass(frozen=True)
class IndexTarget:
    """A generation with the embedder and index that serve it."""

    generation: Generation
    embedder: Embedder
    index: VectorIndex


def check_dimensions(embedder: Embedder, index: VectorIndex) -> None:
    """Refuse an embedder whose vectors do not fit the index, naming both sizes and the model."""
    if index.dimension != embedder.dimension:
        raise DimensionMismatchError(
            f"vector index dimension {index.dimension} != embedder {embedder.model_id} dimension "
            f"{embedder.dimension}: a generation keeps the model it was built with; change models with "
            "`refarch reindex`"
        )


class GenerationTargets:
    """Builds and caches each generation's embedder and index from the settings (which hold the keys).

    The embedder the settings configure is built by `configured_embedder` (the runtime's own,
    shared with everything else in the process); other generations' embedders are built from
    their recorded model with the same credentials.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        configured_embedder: Callable[[], Embedder] | None = None,
        cache_seconds: float = ACTIVE_CACHE_SECONDS,
    ) -> None:
        self.settings = settings
        self.db = db
        self._configured_embedder = configured_embedder or (lambda: make_embedder(settings))
        self.cache_seconds = cache_seconds
        self._embedders: dict[EmbedderSpec, Embedder] = {}
        self._targets: dict[int, IndexTarget] = {}
        self._active: tuple[float, IndexTarget] | None = None
        self._told: set[int] = set()
        self._lock = threading.RLock()

    def embedder_for(self, spec: EmbedderSpec) -> Embedder:
        """The embedder of this spec (one per process)."""
        with self._lock:
            if spec not in self._embedders:
                if spec == EmbedderSpec.from_settings(self.settings):
                    self._embedders[spec] = self._configured_embedder()
                else:
                    self._embedders[spec] = make_embedder(spec.settings_for(self.settings))
            return self._embedders[spec]

    def target(self, generation: Generation) -> IndexTarget:
        """The embedder and index of a generation (generation 1 is recorded from the settings on first use)."""
        with self._lock:
            cached = self._targets.get(generation.id)
            if cached is not None:
                if cached.generation != generation:
                    cached = IndexTarget(generation, cached.embedder, cached.index)
                    self._targets[generation.id] = cached
                return cached
            kept = generation.recorded
            if not kept:
                generation, kept = self._adopt(generation)
            assert generation.embedder is not None and generation.dimension is not None
            embedder = self.embedder_for(generation.embedder)
            index = self.open_index(generation)
            check_dimensions(embedder, index)
            built = IndexTarget(generation, embedder, index)
            if kept:  # one this process may not record is read again until Emu has recorded it
                self._targets[generation.id] = built
            return built

    def _adopt(self, generation: Generation) -> tuple[Generation, bool]:
        """Record the configured embedder and target on a generation created before they were known;
        (the generation, whether it is recorded in the database)."""
        spec = EmbedderSpec.from_settings(self.settings)
        embedder = self.embedder_for(spec)
        target = placement.default_target(self.settings, generation.id, dimension=embedder.dimension)
        backend = self.settings.vector_backend_kind
        # Checked before it is recorded: an index of another dimension is refused with advice.
        make_index(self.settings, self.db, embedder.dimension, target=target)
        try:
            with self.db.transaction() as conn:
                adopted = generations.adopt(
                    conn,
                    generation.id,
                    spec=spec,
                    model_id=embedder.model_id,
                    dimension=embedder.dimension,
                    backend=backend,
                    target=target,
                )
        except psycopg2.errors.InsufficientPrivilege:
            # Only Emu's role may record a generation: the web role may not rewrite where search reads
            # (migration 0015). Until Emu's first run records it, search reads the configured target.
            logger.info("generation not recorded yet: using the configured target", extra={"generation": generation.id})
            unrecorded = replace(
                generation, embedder=spec, model_id=embedder.model_id, dimension=embedder.dimension, backend=backend
            )
            return replace(unrecorded, target=target), False
        return adopted, True

    def active(self) -> IndexTarget:
        """The generation search reads, re-read from the database at most every `cache_seconds`."""
        now = time.monotonic()
        cached = self._active
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        with self.db.transaction() as conn:
            generation = generations.active(conn)
        found = self.target(generation)
        configured = EmbedderSpec.from_settings(self.settings)
        if found.generation.embedder != configured and found.generation.id not in self._told:
            # Not an error: the index keeps the model it was built with until a re-index switches.
            self._told.add(found.generation.id)
            logger.warning(
                "the settings name another embedder than the active index generation's",
                extra={
                    "generation": found.generation.id,
                    "model_id": found.generation.model_id,
                    "configured": configured.as_json(),
                    "advice": "run `refarch reindex` to build and switch to the configured model (docs/reindex.md)",
                },
            )
        self._active = (now, found)
        return found

    def live(self, conn: Connection) -> list[IndexTarget]:
        """Every generation changes go to, locked FOR SHARE in `conn`'s transaction (see generations.live)."""
        found = generations.live(conn)
        unrecorded = [g.id for g in found if not g.recorded]
        if unrecorded:
            # Recording it here would wait for the lock this transaction holds: `active()` records it first.
            raise generations.GenerationError(f"generation {unrecorded[0]} is not recorded yet: call active() first")
        return [self.target(generation) for generation in found]

    def open_index(self, generation: Generation) -> VectorIndex:
        """A client of the generation's vector index, built from its recorded target (cached by `target`)."""
        assert generation.dimension is not None and generation.target is not None
        return make_index(self.settings, self.db, generation.dimension, target=generation.target)

    def forget(self, generation_id: int) -> None:
        """Drop a generation's cached clients (after it was dropped)."""
        with self._lock:
            self._targets.pop(generation_id, None)
            self._active = None
