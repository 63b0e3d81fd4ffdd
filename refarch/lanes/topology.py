"""The deployment shape shared by the CDK app and the local runtime (one place, no drift).

Handler strings are what the CDK stack declares for each Lambda; the local runner loads the
same strings by name, exactly as Lambda does. Scaling knobs live here too so `refarch demo`
runs with the same reserved concurrency, batch size and Map concurrency as AWS.

Emu runs as two lanes (docs/emu.md): the same handler, two functions, two queues, each with
its own reserved concurrency, so bulk work can never take the capacity live edits need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EMU_HANDLER = "lambdas.emu.handler"
BOOTSTRAP_PLAN_HANDLER = "lambdas.bootstrap.plan"
BOOTSTRAP_BATCH_HANDLER = "lambdas.bootstrap.batch"
BOOTSTRAP_FINALIZE_HANDLER = "lambdas.bootstrap.finalize"
MIGRATE_HANDLER = "lambdas.migrate.handler"
PINECONE_INDEX_HANDLER = "lambdas.pinecone_index.handler"
RECONCILE_PLAN_HANDLER = "lambdas.reconcile.plan"
RECONCILE_SHARD_HANDLER = "lambdas.reconcile.shard"
RECONCILE_FINALIZE_HANDLER = "lambdas.reconcile.finalize"
REINDEX_HANDLER = "lambdas.reindex.handler"

QUEUE_NAME = "refarch-sync.fifo"
DLQ_NAME = "refarch-sync-dlq.fifo"
BULK_QUEUE_NAME = "refarch-bulk"
BULK_DLQ_NAME = "refarch-bulk-dlq"

LaneName = Literal["live", "bulk"]
LANE_NAMES: tuple[LaneName, ...] = ("live", "bulk")


def is_fifo(lane: LaneName) -> bool:
    """The live lane's queue is FIFO (order per product, deduplication); the bulk lane's is standard."""
    return lane == "live"


@dataclass(frozen=True, kw_only=True)
class Lane:
    """One Emu lane: its function's size and concurrency, and how its event source delivers."""

    name: LaneName
    reserved_concurrency: int
    # Lambda's SQS event source: max concurrency must be >= 2 and <= reserved concurrency.
    max_concurrency: int
    # Records (messages) per invocation: FIFO allows at most 10; standard queues up to 10,000
    # (above 10 only with a batching window).
    batch_size: int
    # Seconds the event source gathers records before it invokes (standard queues only; FIFO: 0).
    batching_window_seconds: int = 0
    timeout_seconds: int = 60
    memory_mb: int = 512

    @property
    def fifo(self) -> bool:
        """The live lane's queue is FIFO (group = product id); the bulk lane's is standard."""
        return is_fifo(self.name)

    @property
    def queue_name(self) -> str:
        """The lane's queue name (prefixed with the stage on AWS)."""
        return QUEUE_NAME if self.fifo else BULK_QUEUE_NAME

    @property
    def dlq_name(self) -> str:
        """The lane's dead-letter queue name."""
        return DLQ_NAME if self.fifo else BULK_DLQ_NAME

    @property
    def visibility_timeout_seconds(self) -> int:
        """SQS visibility timeout: at least 6 x the function's timeout, as AWS recommends."""
        return 6 * self.timeout_seconds

    @property
    def concurrency(self) -> int:
        """Invocations that can run at once: the smaller of reserved and event-source maximum."""
        return min(self.reserved_concurrency, self.max_concurrency)


def live_lane(concurrency: int = 4) -> Lane:
    """Outbox changes: FIFO, 10 records, no window: the lowest latency for one edit."""
    return Lane(name="live", reserved_concurrency=concurrency, max_concurrency=concurrency, batch_size=10)


def bulk_lane(concurrency: int = 4) -> Lane:
    """Bootstrap ranges, repairs, large backlogs: 100 messages x up to 100 products per invocation.

    A full invocation is up to 10,000 products; Emu works through them in provider-sized chunks,
    ~20 embedding requests with OpenAI, so 5 minutes leave a wide margin.
    """
    return Lane(
        name="bulk",
        reserved_concurrency=concurrency,
        max_concurrency=concurrency,
        batch_size=100,
        batching_window_seconds=5,
        timeout_seconds=300,
        memory_mb=1024,
    )


@dataclass(frozen=True, kw_only=True)
class Topology:
    """Scaling and delivery settings; defaults are the dev stage."""

    live: Lane = field(default_factory=live_lane)
    bulk: Lane = field(default_factory=bulk_lane)
    max_receive_count: int = 5
    # An outbox backlog larger than this (e.g. one UPDATE touching 50,000 rows) is relayed to the
    # bulk lane, 100 products per message, until it is below again (refarch.pelican.listener).
    relay_bulk_threshold: int = 2000
    bootstrap_range_size: int = 1000
    bootstrap_max_concurrency: int = 4
    # A range another worker holds is retried, not skipped (Step Functions Retry and the local Map):
    # waits of 5, 10, 20, 40, 80 s, long enough for Postgres to drop a dead worker's connection.
    bootstrap_busy_retry_seconds: float = 5.0
    bootstrap_busy_retry_attempts: int = 5
    # Reconcile shards compared at once (each one Lambda, ~100k ids at most: refarch/index/id_shards.py).
    reconcile_max_concurrency: int = 4

    def lane(self, name: LaneName) -> Lane:
        """The named lane."""
        return self.live if name == "live" else self.bulk


DEFAULT_TOPOLOGY = Topology()
