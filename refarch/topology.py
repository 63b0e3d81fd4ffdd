"""The deployment shape shared by the CDK app and the local runtime (one place, no drift).

Handler strings are what the CDK stack declares for each Lambda; the local runner loads the
same strings by name, exactly as Lambda does. Scaling knobs live here too so `refarch demo`
runs with the same reserved concurrency, batch size and Map concurrency as AWS.
"""

from __future__ import annotations

from dataclasses import dataclass

EMU_HANDLER = "lambdas.emu.handler"
BOOTSTRAP_PLAN_HANDLER = "lambdas.bootstrap.plan"
BOOTSTRAP_BATCH_HANDLER = "lambdas.bootstrap.batch"
BOOTSTRAP_FINALIZE_HANDLER = "lambdas.bootstrap.finalize"
MIGRATE_HANDLER = "lambdas.migrate.handler"
PINECONE_INDEX_HANDLER = "lambdas.pinecone_index.handler"
RECONCILE_PLAN_HANDLER = "lambdas.reconcile.plan"
RECONCILE_SHARD_HANDLER = "lambdas.reconcile.shard"
RECONCILE_FINALIZE_HANDLER = "lambdas.reconcile.finalize"

QUEUE_NAME = "refarch-sync.fifo"
DLQ_NAME = "refarch-sync-dlq.fifo"


@dataclass(frozen=True, kw_only=True)
class Topology:
    """Scaling and delivery settings; defaults are the dev stage."""

    emu_reserved_concurrency: int = 8
    # Lambda's SQS event source: max concurrency must be >= 2 and <= reserved concurrency.
    emu_max_concurrency: int = 8
    # FIFO event sources take at most 10 records per batch and support no batching window.
    emu_batch_size: int = 10
    emu_timeout_seconds: int = 60
    emu_memory_mb: int = 512
    max_receive_count: int = 5
    bootstrap_range_size: int = 1000
    bootstrap_max_concurrency: int = 4
    # A range another worker holds is retried, not skipped (Step Functions Retry and the local Map):
    # waits of 5, 10, 20, 40, 80 s, long enough for Postgres to drop a dead worker's connection.
    bootstrap_busy_retry_seconds: float = 5.0
    bootstrap_busy_retry_attempts: int = 5
    # Reconcile shards compared at once (each one Lambda, ~100k ids at most: refarch/id_shards.py).
    reconcile_max_concurrency: int = 4

    @property
    def visibility_timeout_seconds(self) -> int:
        """SQS visibility timeout: at least 6 x Emu's timeout, as AWS recommends."""
        return 6 * self.emu_timeout_seconds


DEFAULT_TOPOLOGY = Topology()
