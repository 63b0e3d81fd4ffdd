"""Wiring: build the database, embedder, index and queue from settings, once per process."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from refarch.db import Database, resolve_dsn
from refarch.embeddings import Embedder, make_embedder
from refarch.emu.worker import Emu
from refarch.generations.targets import GenerationTargets
from refarch.index.port import VectorIndex
from refarch.lanes.queues import SyncQueue, make_cloudwatch_client, make_sqs_client
from refarch.serving import STATUS_BUDGET
from refarch.settings import Settings

if TYPE_CHECKING:
    from refarch.search.service import SearchService


class Runtime:
    """Lazily built clients; each piece is created on first use and then reused (Lambda cold start)."""

    def __init__(
        self, settings: Settings | None = None, *, dsn: str | None = None, application_name: str = "refarch"
    ) -> None:
        self.settings = settings or Settings()
        self._dsn = dsn
        self._application_name = application_name

    @cached_property
    def db(self) -> Database:
        """The database."""
        return Database(resolve_dsn(self.settings, self._dsn), application_name=self._application_name)

    @cached_property
    def embedder(self) -> Embedder:
        """The embedder the settings configure (a new index generation's; each generation records its own)."""
        return make_embedder(self.settings)

    @cached_property
    def targets(self) -> GenerationTargets:
        """Each index generation's embedder and index (the configured embedder is this runtime's own)."""
        return GenerationTargets(self.settings, self.db, configured_embedder=lambda: self.embedder)

    @property
    def index(self) -> VectorIndex:
        """The active generation's vector index (the one search reads; it follows a switch)."""
        return self.targets.active().index

    @cached_property
    def sqs(self) -> Any:
        """The SQS client every queue of this process shares."""
        return make_sqs_client(self.settings)

    @cached_property
    def cloudwatch(self) -> Any:
        """A CloudWatch client (the queues' age-of-oldest-message metric for status displays)."""
        return make_cloudwatch_client(self.settings)

    @cached_property
    def status_sqs(self) -> Any:
        """An SQS client for status displays someone waits on (the web's status line): STATUS_BUDGET's short
        timeouts and at most one retry, where `sqs` allows 30 s reads and five retries."""
        return make_sqs_client(
            self.settings, timeout_seconds=STATUS_BUDGET.attempt_seconds, retries=STATUS_BUDGET.retries
        )

    @cached_property
    def status_cloudwatch(self) -> Any:
        """`cloudwatch` with STATUS_BUDGET's short timeouts and at most one retry (the web's status line)."""
        return make_cloudwatch_client(
            self.settings, timeout_seconds=STATUS_BUDGET.attempt_seconds, retries=STATUS_BUDGET.retries
        )

    @cached_property
    def queue(self) -> SyncQueue:
        """The live lane's FIFO queue."""
        return SyncQueue.for_lane(self.sqs, self.settings, "live")

    @cached_property
    def bulk_queue(self) -> SyncQueue:
        """The bulk lane's standard queue (bootstrap, repairs, large backlogs)."""
        return SyncQueue.for_lane(self.sqs, self.settings, "bulk")

    @cached_property
    def emu(self) -> Emu:
        """Emu's logic with its collaborators."""
        return Emu(self.db, self.targets)

    @cached_property
    def search_targets(self) -> GenerationTargets:
        """Each generation's query-path clients: the search budget's short timeouts, no SDK retries.

        A local model has no network to wait on: search shares the runtime's (one copy in memory).
        """
        query_settings = self.settings.query_path_settings()
        local = self.settings.embedder_kind == "local"
        return GenerationTargets(
            query_settings,
            self.db,
            configured_embedder=(lambda: self.embedder) if local else (lambda: make_embedder(query_settings)),
        )

    @cached_property
    def search(self) -> SearchService:
        """The search service the web page and the CLI share (imported here: the Lambdas never search)."""
        from refarch.search.rerank import make_reranker
        from refarch.search.service import SearchService

        return SearchService(
            self.db,
            self.search_targets,
            semantic_slots=self.settings.search_semantic_slots,
            cache_bytes=self.settings.query_cache_bytes,
            reranker=make_reranker(self.settings),
            rerank_candidates=self.settings.rerank_candidates,
        )
