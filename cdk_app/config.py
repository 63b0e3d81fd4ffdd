"""Typed stage settings (dev, prod). `app.py` picks one; constructs never read context themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from aws_cdk import aws_logs as logs

from refarch.lanes.topology import LaneName, Topology, bulk_lane, live_lane


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """The embedder and vector backend every runtime uses: set here once, passed to all of them."""

    openai_model: str = "text-embedding-3-small"
    openai_dimensions: int = 1536
    vector_backend: Literal["pinecone", "pgvector"] = "pinecone"
    pinecone_index_name: str = "refarch-products"
    # Secrets the operator creates before the first deploy (docs/deploy.md). Names, not values:
    # the stacks grant read access and the runtimes fetch the value at cold start.
    openai_secret_name: str = "refarch/openai-api-key"
    pinecone_secret_name: str = "refarch/pinecone-api-key"
    # Moving from Pinecone to pgvector (docs/reindex.md): the runtimes keep reading the Pinecone key,
    # for the generation search reads until the re-index switches and for a rollback until gc drops
    # it. Turn off in a later deploy, once no live generation is in Pinecone.
    keep_pinecone_access: bool = False

    @property
    def pinecone_access(self) -> bool:
        """Whether the runtimes get the Pinecone key: the backend is Pinecone, or a move from it goes on."""
        return self.vector_backend == "pinecone" or self.keep_pinecone_access


@dataclass(frozen=True, kw_only=True)
class CustomDomain:
    """Serve the site on your own domain from the ALB with an ACM certificate (no CloudFront)."""

    domain_name: str
    certificate_arn: str
    hosted_zone_id: str
    hosted_zone_name: str


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """Everything that differs between stages. Stack names are prefixed with `name`."""

    name: str
    # Every stack deploys here, and so does the Pinecone serverless index ("the stack's region"):
    # choose a region Pinecone serverless offers on AWS (see docs/deploy.md: us-east-1, us-west-2, eu-west-1, ...).
    region: str = "us-east-1"
    nat_gateways: int
    # Interface endpoints (SQS, Secrets Manager, Logs) keep AWS API traffic off the NAT gateway;
    # each costs ~$7/month per AZ, so only stages with real traffic turn them on.
    vpc_endpoints: bool
    db_instance_type: str
    db_allocated_storage_gb: int
    db_max_allocated_storage_gb: int
    db_multi_az: bool
    db_backup_retention_days: int
    # Deletion protection on the database and RETAIN on stateful resources.
    protect_data: bool
    log_retention: logs.RetentionDays
    container_insights: bool
    # The web and listener image is built on the deploying machine: x86_64 builds natively on most
    # laptops and CI runners; arm64 (Graviton) is ~20% cheaper where the builder is arm64 too.
    container_architecture: Literal["x86_64", "arm64"] = "x86_64"
    web_cpu: int = 256
    web_memory_mb: int = 512
    web_desired_count: int = 1
    listener_cpu: int = 256
    listener_memory_mb: int = 512
    # Rows the first deploy seeds into an empty catalog (0 = none).
    seed_rows: int = 0
    alarm_email: str | None = None
    custom_domain: CustomDomain | None = None
    # Oldest-message age (seconds) in the live lane's queue that pages someone.
    queue_age_alarm_seconds: int = 900
    # The same for the bulk lane: a 1M-row bootstrap legitimately queues for ~an hour (docs/scaling.md).
    bulk_queue_age_alarm_seconds: int = 6 * 3600
    reconcile_schedule_days: int = 7
    # The Reindex state machine (docs/reindex.md): how often it checks the building generation, and
    # when it gives up (the build goes on; start another execution to finish it).
    reindex_poll_seconds: int = 60
    reindex_timeout_hours: int = 24
    search: SearchConfig = field(default_factory=SearchConfig)
    topology: Topology = field(default_factory=Topology)

    @property
    def stack_prefix(self) -> str:
        """`Refarch-dev`, `Refarch-prod`: the first part of every stack name."""
        return f"Refarch-{self.name}"

    def queue_age_alarm_threshold(self, lane: LaneName) -> int:
        """The oldest-message age (seconds) in the lane's queue that raises its alarm."""
        return self.queue_age_alarm_seconds if lane == "live" else self.bulk_queue_age_alarm_seconds


DEV = StageConfig(
    name="dev",
    nat_gateways=1,
    vpc_endpoints=False,
    db_instance_type="t4g.micro",
    db_allocated_storage_gb=20,
    db_max_allocated_storage_gb=50,
    db_multi_az=False,
    db_backup_retention_days=1,
    protect_data=False,
    log_retention=logs.RetentionDays.TWO_WEEKS,
    container_insights=False,
    seed_rows=10_000,
)

PROD = StageConfig(
    name="prod",
    nat_gateways=2,
    vpc_endpoints=True,
    db_instance_type="m7g.large",
    db_allocated_storage_gb=100,
    db_max_allocated_storage_gb=500,
    db_multi_az=True,
    db_backup_retention_days=14,
    protect_data=True,
    log_retention=logs.RetentionDays.THREE_MONTHS,
    container_insights=True,
    web_cpu=512,
    web_memory_mb=1024,
    web_desired_count=2,
    # Live edits need few invocations (one per product with a pending change); bulk work takes the rest.
    topology=Topology(live=live_lane(16), bulk=bulk_lane(32), bootstrap_max_concurrency=8, reconcile_max_concurrency=8),
)

STAGES: dict[str, StageConfig] = {stage.name: stage for stage in (DEV, PROD)}


def stage_config(name: str) -> StageConfig:
    """The settings of a named stage, or a clear error listing the valid names."""
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; choose one of: {', '.join(sorted(STAGES))}") from None
