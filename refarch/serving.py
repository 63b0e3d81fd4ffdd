"""How long each layer in front of a search waits, and how the web process is served: stated once.

The web runtime (its query-path clients, the search budget, the semantic-search slots), the CDK
frontend stack (CloudFront, the ALB, the gunicorn command, the query-cache size) and docs/web.md
all read these numbers, so a slow provider is answered lexically long before any layer in front
gives up (docs/web.md, "Latency budget"). From the inside out, each layer waits longer than the
one it calls:

    provider attempt (1 s) x at most 2  <  search budget (2.5 s)  [+ an optional rerank call (1 s)]
    <  CloudFront origin read (10 s)  <  ALB idle (15 s)  <  gunicorn keep-alive (20 s)
    <  gunicorn worker timeout (30 s)

Emu and the Lambdas keep their own, longer provider timeouts (Settings.openai_timeout_seconds):
nobody waits for them, and a retry there saves a re-delivery.

Two more waits sit on a page request's path, each bounded here too: the status line's SQS and
CloudWatch reads (STATUS_BUDGET: a request waits at most 1 s for them, then gets the last known
queue state) and the rate-limit counter store (a lock or statement timeout, then sign-in is refused
and every other limited request goes through). So a page costs at most the search budget plus
about 1.5 s of these, far inside CloudFront's origin read timeout.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchBudget:
    """How long a search may spend on its providers (query embedding + vector query) before answering lexically."""

    # One provider call's own timeout (the OpenAI and Pinecone clients' per-attempt timeout, the pgvector
    # query's statement_timeout): a healthy call takes ~0.1-0.3 s, so 1 s is a slow provider.
    attempt_seconds: float = 1.0
    # Both calls together, retries included: an attempt starts only when a whole one still fits.
    total_seconds: float = 2.5
    # Retries per call on the query path (the SDKs' own are off there: they would honour a Retry-After of
    # up to 60 s).
    retries: int = 1


SEARCH_BUDGET = SearchBudget()


@dataclass(frozen=True)
class StatusBudget:
    """How long the web's status line (the page header, GET /api/sync/status) may wait on SQS and CloudWatch."""

    # One SQS or CloudWatch call's connect and read timeout on the web's status path (a healthy call takes
    # ~10-50 ms). Pelican, Emu, the dead-letter commands and the CLI keep their clients' longer ones.
    attempt_seconds: float = 1.0
    # Retries per call there (botocore's own, with its backoff).
    retries: int = 1
    # How long a request waits for the queues' state to be refreshed (one refresh at a time per process, in
    # the background): slower, it is answered with the last known state, marked stale, and moves on.
    wait_seconds: float = 1.0
    # The last known state is served at most this old; older (or none yet), the queues' depths are unknown.
    stale_seconds: float = 60.0


STATUS_BUDGET = StatusBudget()

# The rate-limit counter store (web/rate_limits.py, Postgres): each of its transactions waits at most this
# long for a lock, and runs a statement at most this long (a healthy counter upsert takes ~1 ms). Slower,
# the store counts as unavailable: sign-in is refused (503) and every other limited request goes through.
COUNTER_STORE_LOCK_TIMEOUT_SECONDS = 0.25
COUNTER_STORE_STATEMENT_TIMEOUT_SECONDS = 0.5

# A hybrid search with a rerank model configured (refarch.search.rerank) gives the rerank call this long, one
# attempt, after the budget's ranking; slower, the fused order is served (Settings.rerank_timeout_seconds).
RERANK_TIMEOUT_SECONDS = 1.0

# gunicorn's gthread workers: processes per task, and request threads per process.
WEB_WORKERS = 2
WEB_THREADS = 4
# gthread with threads of its own for /healthz (web/health_lane.py), so a health check never queues behind
# requests, whatever holds the request threads.
WEB_WORKER_CLASS = "web.health_lane.HealthLaneWorker"
# Searches that may wait on a provider at once in one process: one thread fewer than the process has,
# so a thread is always free for everything else (lexical answers, pages, edits) while every slot waits on
# a slow provider. A search that finds no free slot answers lexically at once (SearchPage.fallback_reason).
SEMANTIC_SEARCH_SLOTS = WEB_THREADS - 1

# CloudFront gives the ALB this long to start answering: a search answers within the budget plus the
# lexical query and the row reads; anything slower is a fault, and the viewer gets a 504 rather than a wait.
ORIGIN_READ_TIMEOUT_SECONDS = 10
# The ALB closes a connection idle this long (with a custom domain it is the viewer's limit too): longer
# than CloudFront's read timeout, so CloudFront (not the ALB) decides when an answer is too late.
ALB_IDLE_TIMEOUT_SECONDS = 15
# gunicorn keeps an idle connection open longer than the ALB does, so the ALB never sends a request on a
# connection gunicorn has just closed (a 502).
GUNICORN_KEEPALIVE_SECONDS = 20
# A gthread worker whose main loop stops for this long is restarted; longer than every request may take.
GUNICORN_TIMEOUT_SECONDS = 30

# The share of the web task's memory the query-vector caches may take, split between the workers.
QUERY_CACHE_SHARE_OF_TASK = 0.10


def web_command() -> list[str]:
    """The web container's command (the CDK task definition's and the Dockerfile's CMD)."""
    return [
        "gunicorn",
        "--bind",
        "0.0.0.0:8000",
        "--workers",
        str(WEB_WORKERS),
        "--threads",
        str(WEB_THREADS),
        "--worker-class",
        WEB_WORKER_CLASS,
        "--timeout",
        str(GUNICORN_TIMEOUT_SECONDS),
        "--keep-alive",
        str(GUNICORN_KEEPALIVE_SECONDS),
        "web:create_app()",
    ]


def query_cache_bytes(task_memory_mib: int, *, workers: int = WEB_WORKERS) -> int:
    """One worker's query-cache budget: QUERY_CACHE_SHARE_OF_TASK of the task's memory, split between workers."""
    return int(task_memory_mib * 2**20 * QUERY_CACHE_SHARE_OF_TASK / workers)


def layer_timeouts() -> list[tuple[str, float]]:
    """Each layer's limit in seconds, from the innermost out (each must exceed the one before it)."""
    budget = SEARCH_BUDGET
    return [
        ("provider attempts (1 + retries)", budget.attempt_seconds * (1 + budget.retries)),
        ("search budget", budget.total_seconds),
        ("CloudFront origin read timeout", ORIGIN_READ_TIMEOUT_SECONDS),
        ("ALB idle timeout", ALB_IDLE_TIMEOUT_SECONDS),
        ("gunicorn keep-alive", GUNICORN_KEEPALIVE_SECONDS),
        ("gunicorn worker timeout", GUNICORN_TIMEOUT_SECONDS),
    ]
