"""Typed stage settings (dev, prod). `app.py` picks one; constructs never read context themselves.

Stages share nothing that holds data (docs/deploy.md, "Stages and settings"): every name below that
points at data outside the stage's stacks (the Pinecone index and namespace, the API key secrets)
carries `{stage}`, which each stage replaces with its own name. The names the stacks create
themselves (queues, database, generated secrets, log groups, dashboard) carry the stage too;
`tests/infra/test_stage_isolation.py` proves no two stages share one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from aws_cdk import aws_logs as logs

from refarch.bedrock import (
    EMBEDDING_MODELS,
    RERANK_MODEL_REGIONS,
    RERANK_MODELS,
    foundation_model_arn,
    rerank_model_for,
)
from refarch.generations import EmbedderSpec
from refarch.index.pinecone_indexes import check_index_name
from refarch.lanes.topology import LaneName, Topology, bulk_lane, live_lane
from refarch.source import Source, SourceError, load
from refarch.source.definition import DEFAULT_SOURCE, builtin_path

STAGE_PLACEHOLDER = "{stage}"
# A stage's name goes into queue, database and Pinecone index names: lower-case letters, digits, '-'.
STAGE_NAME = re.compile(r"[a-z][a-z0-9-]{0,19}")


def check_stage_source(name: str) -> Source:
    """The stage's source definition, checked (SourceError names every problem; synth stops on it)."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", name) or not builtin_path(name).is_file():
        raise SourceError(
            name,
            [
                "a stage deploys a definition by name, from refarch/source/definitions/ (it ships with every"
                " runtime): copy your .toml there and name it without the extension (docs/own-table.md)"
            ],
        )
    return load(name)


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """The embedder and vector backend every runtime uses: set here once, passed to all of them."""

    # OpenAI needs an API key in Secrets Manager; Amazon Bedrock needs none (IAM, and the VPC endpoint
    # where the stage has endpoints). Changing it re-indexes with zero downtime (docs/reindex.md).
    embedder: Literal["openai", "bedrock"] = "openai"
    # The table the stage syncs: the name of a source definition in refarch/source/definitions/ (which
    # ships with every runtime). Checked at synth; docs/own-table.md brings your own table.
    source: str = DEFAULT_SOURCE
    openai_model: str = "text-embedding-3-small"
    openai_dimensions: int = 1536
    bedrock_model: str = "amazon.titan-embed-text-v2:0"
    bedrock_dimensions: int = 1024
    # Requests in flight per Emu invocation (Titan embeds one text per request): lane concurrency x this x
    # requests/s per request must fit the account's quota (docs/scaling.md, "Amazon Bedrock").
    bedrock_concurrency: int = 2
    # Moving off a Bedrock model (to OpenAI or another Bedrock model): the models still granted, for the
    # generation search reads until the switch and for a rollback until gc drops it.
    keep_bedrock_models: tuple[str, ...] = ()
    # Moving from OpenAI to Bedrock: the runtimes keep reading the OpenAI key for the same reason.
    keep_openai_access: bool = False
    # Rerank hybrid search's candidates with this Bedrock model (None: off): refarch.search.rerank.
    rerank_model: str | None = None
    vector_backend: Literal["pinecone", "pgvector"] = "pinecone"
    # An index of its own per stage: a stage's gc deletes `<index>-g<n>` indexes whole (docs/reindex.md),
    # so two stages sharing an index would delete each other's. The namespace carries the stage too, so
    # even two stages pinned to one index never write, reconcile or empty each other's vectors.
    # A live stage created before these defaults pins its old names (docs/deploy.md, "Stages and settings").
    pinecone_index_name: str = "refarch-{stage}-products"
    pinecone_namespace: str = "{stage}-products"
    # Secrets the operator creates before the first deploy (docs/deploy.md). Names, not values:
    # the stacks grant read access and the runtimes fetch the value at cold start.
    openai_secret_name: str = "refarch/{stage}/openai-api-key"
    pinecone_secret_name: str = "refarch/{stage}/pinecone-api-key"
    # Moving from Pinecone to pgvector (docs/reindex.md): the runtimes keep reading the Pinecone key,
    # for the generation search reads until the re-index switches and for a rollback until gc drops
    # it. Turn off in a later deploy, once no live generation is in Pinecone.
    keep_pinecone_access: bool = False
    # The stage whose name replaced `{stage}` in the names above (None until a StageConfig did).
    stage: str | None = None

    def for_stage(self, stage: str) -> SearchConfig:
        """These settings with `{stage}` replaced by the stage's name in every name, checked.

        Refused for settings already made for another stage: reusing them (for example with
        `dataclasses.replace(DEV, name="staging")`) would give two stages the same index and secrets.
        """
        if self.stage == stage:
            return self
        if self.stage is not None:
            raise ValueError(
                f"these search settings were made for stage {self.stage!r}, and stage {stage!r} would share their "
                f"Pinecone index, namespace and secrets: give stage {stage!r} a SearchConfig(...) of its own"
            )
        resolved = replace(
            self,
            stage=stage,
            pinecone_index_name=self.pinecone_index_name.replace(STAGE_PLACEHOLDER, stage),
            pinecone_namespace=self.pinecone_namespace.replace(STAGE_PLACEHOLDER, stage),
            openai_secret_name=self.openai_secret_name.replace(STAGE_PLACEHOLDER, stage),
            pinecone_secret_name=self.pinecone_secret_name.replace(STAGE_PLACEHOLDER, stage),
        )
        check_index_name(resolved.pinecone_index_name)
        return resolved

    def __post_init__(self) -> None:
        check_stage_source(self.source)
        if self.bedrock_model not in EMBEDDING_MODELS:
            raise ValueError(f"bedrock_model {self.bedrock_model!r}: choose one of {', '.join(EMBEDDING_MODELS)}")
        if self.bedrock_dimensions not in EMBEDDING_MODELS[self.bedrock_model].dimensions:
            raise ValueError(
                f"{self.bedrock_model} embeds in {EMBEDDING_MODELS[self.bedrock_model].dimensions} dimensions, "
                f"not {self.bedrock_dimensions}"
            )
        if self.rerank_model is not None and self.rerank_model not in RERANK_MODELS:
            raise ValueError(f"rerank_model {self.rerank_model!r}: choose one of {', '.join(RERANK_MODELS)}")

    @property
    def embedder_spec(self) -> EmbedderSpec:
        """The configured embedder, as a generation records it (a change of it starts a re-index)."""
        if self.embedder == "bedrock":
            return EmbedderSpec("bedrock", self.bedrock_model, self.bedrock_dimensions)
        return EmbedderSpec("openai", self.openai_model, self.openai_dimensions)

    @property
    def dimension(self) -> int:
        """The configured embedder's vector size (the first pgvector table's, the Pinecone index's)."""
        return self.bedrock_dimensions if self.embedder == "bedrock" else self.openai_dimensions

    @property
    def openai_access(self) -> bool:
        """Whether the runtimes get the OpenAI key: the embedder is OpenAI, or a move from it goes on."""
        return self.embedder == "openai" or self.keep_openai_access

    def bedrock_model_arns(self, region: str) -> list[str]:
        """The embedding models' ARNs the embedding runtimes may invoke (none without Bedrock)."""
        models = ([self.bedrock_model] if self.embedder == "bedrock" else []) + list(self.keep_bedrock_models)
        return [foundation_model_arn(region, model) for model in dict.fromkeys(models)]

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
    # The WAF web ACL's rate-based rule: requests one client address may make in 5 minutes before WAF
    # blocks it (the app's own per-minute limits are finer; this stops a flood before the tasks).
    waf_requests_per_5_minutes: int = 2000
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

    def __post_init__(self) -> None:
        if not STAGE_NAME.fullmatch(self.name):
            raise ValueError(
                f"stage name {self.name!r}: use 1-20 lower-case letters, digits or '-', starting with a letter "
                "(it goes into queue, database and Pinecone index names)"
            )
        rerank_model = self.search.rerank_model
        if rerank_model is not None and self.region not in RERANK_MODEL_REGIONS[rerank_model]:
            # Every search would call a model the region does not serve, and fall back to the fused order.
            raise ValueError(
                f"rerank_model {rerank_model} is not offered in {self.region}, the stage's region; "
                f"it runs in {', '.join(RERANK_MODEL_REGIONS[rerank_model])}"
            )
        # Frozen: the one place a field is set after __init__, to give `search` this stage's names.
        object.__setattr__(self, "search", self.search.for_stage(self.name))

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


def with_context(
    config: StageConfig,
    *,
    embedder: str | None = None,
    vector_backend: str | None = None,
    rerank: str | None = None,
    source: str | None = None,
    keep_openai_access: str | None = None,
) -> StageConfig:
    """The stage with the choices given on the command line (`-c embedder=bedrock -c vectorBackend=pgvector
    -c rerank=true -c source=articles -c keepOpenaiAccess=true`) over its own; each is checked, so a typo is
    an error, not the default."""
    search = config.search
    if source is not None:
        search = replace(search, source=source)
    if embedder is not None:
        if embedder not in ("openai", "bedrock"):
            raise ValueError(f"-c embedder={embedder}: choose openai or bedrock")
        search = replace(search, embedder=embedder)  # type: ignore[arg-type]
    if vector_backend is not None:
        if vector_backend not in ("pinecone", "pgvector"):
            raise ValueError(f"-c vectorBackend={vector_backend}: choose pinecone or pgvector")
        search = replace(search, vector_backend=vector_backend)  # type: ignore[arg-type]
    if rerank is not None:
        if rerank.lower() not in ("true", "false"):
            raise ValueError(f"-c rerank={rerank}: choose true or false")
        on = rerank.lower() == "true"
        chosen = (search.rerank_model or rerank_model_for(config.region)) if on else None
        search = replace(search, rerank_model=chosen)
    if keep_openai_access is not None:
        # Until a move from OpenAI re-indexes and gc drops the OpenAI generation (docs/deploy.md).
        keep = str(keep_openai_access).lower()  # `cdk.json` context may hold a JSON boolean
        if keep not in ("true", "false"):
            raise ValueError(f"-c keepOpenaiAccess={keep_openai_access}: choose true or false")
        search = replace(search, keep_openai_access=keep == "true")
    return config if search is config.search else replace(config, search=search)


def stage_config(name: str) -> StageConfig:
    """The settings of a named stage, or a clear error listing the valid names."""
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; choose one of: {', '.join(sorted(STAGES))}") from None
