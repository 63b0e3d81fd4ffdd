"""Runtime settings, read once from the environment (and, locally, from REFARCH_HOME)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from refarch.lanes.topology import LaneName
from refarch.serving import RERANK_TIMEOUT_SECONDS, SEARCH_BUDGET, SEMANTIC_SEARCH_SLOTS

# Where each lane's queue and dead-letter queue URLs come from on AWS (set by cdk_app.constructs.runtime_access).
QUEUE_URL_VARIABLES: dict[LaneName, str] = {"live": "REFARCH_QUEUE_URL", "bulk": "REFARCH_BULK_QUEUE_URL"}
DLQ_URL_VARIABLES: dict[LaneName, str] = {"live": "REFARCH_DLQ_URL", "bulk": "REFARCH_BULK_DLQ_URL"}


class ConfigurationError(RuntimeError):
    """A setting is missing or contradicts another; the message says which and how to fix it."""


class Settings(BaseSettings):
    """Everything a runtime needs to find its database, queue, embedder and vector index.

    Standard names are honoured (DATABASE_URL, OPENAI_API_KEY, PINECONE_API_KEY); the rest use
    the REFARCH_ prefix. On AWS, secrets arrive as Secrets Manager ARNs (`*_SECRET_ARN`) and are
    read at cold start; they never appear in environment values or templates.
    """

    model_config = SettingsConfigDict(env_prefix="REFARCH_", extra="ignore", populate_by_name=True)

    # Only REFARCH_HOME: an alias `home` would also match the HOME variable (names are case-insensitive).
    home: Path = Field(default=Path(".refarch"), validation_alias="REFARCH_HOME")
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    database_secret_arn: str | None = None
    # Only the migrate step: {"web"|"emu"|"pelican": secret ARN} of each runtime's own database login.
    database_role_secret_arns: dict[str, str] = Field(default_factory=dict)

    aws_region: str = Field(default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "aws_region"))
    sqs_endpoint_url: str | None = None
    # Each lane's queue and dead-letter queue (docs/emu.md); read through `queue_url(lane)` and `dlq_url(lane)`.
    live_queue_url: str | None = Field(
        default=None, validation_alias=AliasChoices(QUEUE_URL_VARIABLES["live"], "live_queue_url")
    )
    live_dlq_url: str | None = Field(
        default=None, validation_alias=AliasChoices(DLQ_URL_VARIABLES["live"], "live_dlq_url")
    )
    # REFARCH_BULK_QUEUE_URL and REFARCH_BULK_DLQ_URL: the prefix and the field names match the mappings above.
    bulk_queue_url: str | None = None
    bulk_dlq_url: str | None = None
    # Which lane this Emu function serves: the same handler, configured per function.
    emu_lane: LaneName = "live"

    # The table this deployment syncs: a source definition file, or a shipped one's name (refarch/source).
    source: str | None = None

    embedder: Literal["local", "openai", "bedrock"] | None = None
    local_model: str = "all-MiniLM-L6-v2"
    # CPU threads for the local model in this process (None: torch's default, one per core).
    local_model_threads: int | None = None
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    openai_secret_arn: str | None = None
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    openai_model: str = "text-embedding-3-small"
    openai_dimensions: int | None = 1536
    # Worst case 4 attempts x 10 s + backoff stays inside Emu's 60 s Lambda timeout. Search builds its
    # own clients with the short timeouts of refarch.serving.SEARCH_BUDGET (`query_path_settings`).
    openai_timeout_seconds: float = 10.0
    openai_max_retries: int = 3

    # Amazon Bedrock (chosen explicitly: REFARCH_EMBEDDER=bedrock; IAM, no key). refarch.bedrock lists the models.
    bedrock_model: str = "amazon.titan-embed-text-v2:0"
    # Titan Text Embeddings V2: 256, 512 or 1024; Cohere Embed v3 is always 1024 (None: the model's own).
    bedrock_dimensions: int | None = 1024
    # A stand-in's address (refarch_local.standins); None on AWS (the Region's endpoint, or the VPC endpoint).
    bedrock_endpoint_url: str | None = None
    # Requests in flight per embedding call (Titan embeds one text per request): 2 per Emu execution keeps
    # dev's lanes inside Titan's default quota (docs/scaling.md, "Amazon Bedrock").
    bedrock_concurrency: int = Field(default=2, ge=1, le=64)
    bedrock_timeout_seconds: float = 10.0
    # Attempts per request, the first included (botocore's standard retry: backoff with jitter on throttling).
    bedrock_max_attempts: int = Field(default=4, ge=1, le=10)
    # Optional reranking of hybrid search's candidates by a Bedrock rerank model (None: off).
    rerank_model: str | None = None
    rerank_candidates: int = Field(default=50, ge=2, le=1000)
    # Rerank is skipped (the fused order kept) when it takes longer than this.
    rerank_timeout_seconds: float = RERANK_TIMEOUT_SECONDS

    vector_backend: Literal["pgvector", "pinecone"] | None = None
    # Only the migrate step: the size of the first pgvector table (the stage's embedder's, whichever it is).
    vector_dimensions: int | None = None
    pinecone_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PINECONE_API_KEY", "pinecone_api_key")
    )
    pinecone_secret_arn: str | None = None
    pinecone_index_name: str | None = Field(
        default=None, validation_alias=AliasChoices("PINECONE_INDEX_NAME", "pinecone_index_name")
    )
    pinecone_host: str | None = Field(default=None, validation_alias=AliasChoices("PINECONE_HOST", "pinecone_host"))
    # Generation 1's namespace; later generations get `<namespace>-g<n>`. On AWS each stage's own
    # (cdk_app.config.SearchConfig.pinecone_namespace), so stages sharing a Pinecone project never meet.
    pinecone_namespace: str = "products"
    # The Pinecone client's per-request timeout and retries (the SDK's defaults); search's are shorter.
    pinecone_timeout_seconds: float = 30.0
    pinecone_max_retries: int = 3
    # pgvector's equivalent: a statement_timeout on the vector query (None: none; search sets its budget's).
    vector_query_timeout_seconds: float | None = None

    # Search (the web process; docs/web.md "Latency budget"). Bytes of query vectors one process keeps
    # (LRU; on AWS the frontend stack sets it from the task's memory, refarch.serving.query_cache_bytes).
    query_cache_bytes: int = Field(default=32 * 2**20, ge=0)
    # Searches that may wait on the embedding service or vector index at once in one process; more answer
    # lexically at once. Below gunicorn's threads per process, so a thread is always free for lexical answers
    # (and /healthz has threads of its own, web/health_lane.py).
    search_semantic_slots: int = Field(default=SEMANTIC_SEARCH_SLOTS, ge=1)

    # Web page: editing needs this password when one is set (locally open when neither is set).
    edit_password: SecretStr | None = None
    edit_password_secret_arn: str | None = None
    # Signs session cookies; without one each process draws a random key (sessions end on restart).
    session_secret: SecretStr | None = None
    session_secret_arn: str | None = None
    # Only plain-http local use (http://127.0.0.1) may turn this off.
    session_cookie_secure: bool = True
    # How many proxies append to X-Forwarded-For in front of the web app (AWS: CloudFront + ALB = 2,
    # ALB alone = 1). 0: clients reach it directly, so nobody may claim an address or scheme.
    proxy_hops: int = Field(default=0, ge=0, le=5)
    # Requests per client address (Flask-Limiter notation, e.g. "60 per minute"; several separated
    # by ";"). Search: the page and /api/search together. Write: product changes and sign-in. Read:
    # the other reads that cost (listing, sync status). Each holds per address and per session too.
    rate_limit_search: str = "60 per minute"
    rate_limit_write: str = "30 per minute"
    rate_limit_read: str = "120 per minute"
    # Where the counters live: "postgres" (the database every worker and task shares), or any
    # Flask-Limiter storage URI ("memory://" for one process, "redis://host:6379", ...).
    rate_limit_storage: str = "postgres"

    @property
    def embedder_kind(self) -> Literal["local", "openai", "bedrock"]:
        """The embedder in use: explicit choice, else OpenAI when a key is available, else local."""
        if self.embedder:
            return self.embedder
        return "openai" if (self.openai_api_key or self.openai_secret_arn) else "local"

    @property
    def vector_backend_kind(self) -> Literal["pgvector", "pinecone"]:
        """The vector index in use: explicit choice, else Pinecone when a key is available, else pgvector."""
        if self.vector_backend:
            return self.vector_backend
        return "pinecone" if (self.pinecone_api_key or self.pinecone_secret_arn) else "pgvector"

    def query_path_settings(self) -> Settings:
        """These settings with the search budget's short provider timeouts and no SDK retries.

        The web process builds its query-path clients from these (the search service retries at most
        once itself, within the budget); Emu, the Lambdas and the CLI's other commands keep the long ones.
        """
        attempt = SEARCH_BUDGET.attempt_seconds
        return self.model_copy(
            update={
                "openai_timeout_seconds": attempt,
                "openai_max_retries": 0,
                "pinecone_timeout_seconds": attempt,
                "pinecone_max_retries": 0,
                "vector_query_timeout_seconds": attempt,
                "bedrock_timeout_seconds": attempt,
                "bedrock_max_attempts": 1,
            }
        )

    @property
    def runtime_file(self) -> Path:
        """Where local components publish their addresses for each other."""
        return self.home / "runtime.json"

    @cached_property
    def local_runtime(self) -> dict[str, str]:
        """Addresses published by locally running components (empty when none are)."""
        return read_local_runtime(self.home)

    def queue_url(self, lane: LaneName) -> str:
        """The lane's queue URL: from the environment, or else from the local SQS server."""
        url = self.known_queue_url(lane)
        if not url:
            raise ConfigurationError(
                f"No {lane} queue configured: set {QUEUE_URL_VARIABLES[lane]}, or start the local SQS server "
                "(`refarch sqs-server` or `refarch demo`) with the same REFARCH_HOME."
            )
        return url

    def known_queue_url(self, lane: LaneName) -> str | None:
        """The lane's queue URL, or None when none is configured (status displays)."""
        return self._lane_url(lane, "queue_url")

    def dlq_url(self, lane: LaneName) -> str | None:
        """The lane's dead-letter queue URL, when known."""
        return self._lane_url(lane, "dlq_url")

    def _lane_url(self, lane: LaneName, kind: Literal["queue_url", "dlq_url"]) -> str | None:
        # A queue URL from the environment means AWS (or a server chosen on purpose): then a local
        # server's addresses left in runtime.json are never mixed in.
        configured = getattr(self, f"{lane}_{kind}")
        if configured or self.queues_configured:
            return configured or None
        return self.local_runtime.get(kind if lane == "live" else f"bulk_{kind}") or None

    @property
    def queues_configured(self) -> bool:
        """Whether the environment names a queue (either lane's): AWS, or a server chosen on purpose.

        A runtime may be given one lane only (the bootstrap's Batch function: the bulk lane), so any
        lane's URL counts, not only the live one's.
        """
        named = self.model_fields_set & {"live_queue_url", "bulk_queue_url"}
        return any(getattr(self, name) for name in named)

    def resolved_sqs_endpoint(self) -> str | None:
        """A custom SQS endpoint (the local server), or None for AWS.

        A queue URL from the environment means "that queue", so a local server's address left in
        runtime.json is not used with it.
        """
        if self.sqs_endpoint_url or self.queues_configured:
            return self.sqs_endpoint_url
        return self.local_runtime.get("sqs_endpoint_url")


def read_local_runtime(home: Path) -> dict[str, str]:
    """The addresses local components published in HOME/runtime.json (empty when none did, or mid-write)."""
    try:
        addresses: dict[str, str] = json.loads((home / "runtime.json").read_text())
        return addresses
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_local_runtime(settings: Settings, **addresses: str) -> None:
    """Publish local component addresses (merged) into REFARCH_HOME/runtime.json."""
    settings.home.mkdir(parents=True, exist_ok=True)
    current = read_local_runtime(settings.home)
    current.update(addresses)
    tmp = settings.runtime_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2))
    tmp.replace(settings.runtime_file)
    settings.__dict__.pop("local_runtime", None)
