"""The latency budget and the query cache, measured against the web app as production serves it.

`refarch bench budget` starts the web app under gunicorn with the container's own command
(`refarch.serving.web_command`: the same workers, threads and timeouts), on an embedded Postgres
with a seeded catalog, the real SDKs talking to the local stand-ins:

- slow embedding service: the OpenAI stand-in answers every request after 20 s while clients search
  as fast as they can (as many as the task has threads) and two probers ask /healthz every 50 ms, one on
  a kept connection, one on a new connection per check (as the load balancer does);
- slow vector index: the same with Pinecone's stand-in answering after 20 s (embeddings prompt);
- memory: 10,000 distinct queries with 1,536-d vectors, then each process's peak memory (VmHWM),
  against the dev web task's memory limit, with the query cache sized as the stack sizes it.

Benchmarks print and write their numbers; they assert nothing (tests check behaviour).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refarch.db import Database
from refarch.embeddings import OpenAIEmbedder
from refarch.serving import SEARCH_BUDGET, WEB_THREADS, WEB_WORKERS, query_cache_bytes, web_command
from refarch_local.bench_report import publish
from refarch_local.process_stats import peak_rss_mb
from refarch_local.search_bench import MEANING_QUERIES, embedded_catalog, fresh_database, percentile
from refarch_local.standins import OpenAIStandIn, PineconeStandIn

REPO_ROOT = Path(__file__).resolve().parents[1]
SLOW_SECONDS = 20.0
DIMENSION = 1536
CATALOG_ROWS = 1000
# The dev stage's web task (cdk_app.config): what the memory run is compared with.
TASK_MEMORY_MB = 512
HEALTH_INTERVAL_S = 0.05


class Client:
    """One keep-alive HTTP connection to the web app (a load balancer keeps its connections open too)."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port, self.timeout = port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET a JSON answer: (status, body); reconnects once if the server closed the connection."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self._conn.request("GET", path)
                response = self._conn.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            except (http.client.HTTPException, OSError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(dsn: str, home: Path, env: dict[str, str]) -> Iterator[tuple[int, int]]:
    """The web app under gunicorn with the container's command on a free local port: (port, master pid)."""
    port = free_port()
    command = [sys.executable, "-m", *web_command()]
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REFARCH_", "OPENAI_", "PINECONE_"))}
    full_env = {
        **base,
        "PYTHONPATH": str(REPO_ROOT),
        "DATABASE_URL": dsn,
        "REFARCH_HOME": str(home),
        # The bench is one client address sending thousands of searches: the limit is not what is measured.
        "REFARCH_RATE_LIMIT_STORAGE": "memory://",
        "REFARCH_RATE_LIMIT_SEARCH": "1000000 per minute",
        **env,
    }
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client, deadline = Client(port, timeout=2), time.monotonic() + 90
        while True:
            try:
                if client.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {server.stderr.read().decode() if server.stderr else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer /healthz within 90 s")
            time.sleep(0.2)
        client.close()
        yield port, server.pid
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def workers_of(master: int) -> list[int]:
    """The gunicorn worker processes of a master."""
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def warm_up(port: int, rounds: int = 4) -> None:
    """Searches enough to reach every worker: each opens its clients and records the generation."""

    def one(n: int) -> None:
        client = Client(port)
        for r in range(rounds):
            client.get("/api/search?" + urllib.parse.urlencode({"q": f"warm up {n} {r}"}))
        client.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(WEB_WORKERS * WEB_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def reason_kind(body: dict[str, Any]) -> str:
    """How a search was answered: semantic (no fallback), slow, busy, unavailable."""
    reason = body.get("fallback_reason") or ""
    if not reason:
        return "as asked"
    for kind in ("too slow", "busy", "unavailable"):
        if kind in reason:
            return kind
    return "other"


def summary(latencies_s: list[float]) -> dict[str, Any]:
    """Count, p50, p99 and max in milliseconds."""
    if not latencies_s:
        return {"count": 0}
    ms = [t * 1000 for t in latencies_s]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


def under_slow_provider(port: int, *, seconds: float, clients: int) -> dict[str, Any]:
    """Searches from `clients` threads for `seconds` with /healthz probed meanwhile: latencies and answers."""
    stop = threading.Event()
    searches: list[float] = []
    kinds: Counter[str] = Counter()
    health: list[float] = []
    health_new: list[float] = []  # a new connection per check, as the ALB's health checks come
    lock = threading.Lock()

    def search(n: int) -> None:
        client, i = Client(port), 0
        while not stop.is_set():
            query = f"{MEANING_QUERIES[i % len(MEANING_QUERIES)]} {n}-{i}"
            started = time.perf_counter()
            status, body = client.get("/api/search?" + urllib.parse.urlencode({"q": query}))
            took = time.perf_counter() - started
            with lock:
                searches.append(took)
                kinds[reason_kind(body) if status == 200 else f"HTTP {status}"] += 1
            i += 1
        client.close()

    def probe(checks: list[float], *, keep_alive: bool) -> None:
        client = Client(port)
        while not stop.is_set():
            started = time.perf_counter()
            status, _ = client.get("/healthz")
            checks.append(time.perf_counter() - started if status == 200 else float("inf"))
            if not keep_alive:
                client.close()
                client = Client(port)
            stop.wait(HEALTH_INTERVAL_S)
        client.close()

    threads = [threading.Thread(target=search, args=(n,)) for n in range(clients)] + [
        threading.Thread(target=probe, args=(health,), kwargs={"keep_alive": True}),
        threading.Thread(target=probe, args=(health_new,), kwargs={"keep_alive": False}),
    ]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return {
        "search": summary(searches),
        "answers": dict(kinds),
        "healthz": summary(health),
        "healthz_new_connection": summary(health_new),
    }


def slow_runs(admin_dsn: str, home: Path, *, seconds: float, console: Any) -> dict[str, Any]:
    """The two slow-provider runs: a slow embedding service, then a slow vector index."""
    results: dict[str, Any] = {}
    clients = WEB_WORKERS * WEB_THREADS
    with OpenAIStandIn() as openai, PineconeStandIn(dimension=DIMENSION) as pinecone:
        openai_env = {
            "REFARCH_EMBEDDER": "openai",
            "OPENAI_API_KEY": "sk-local-bench",
            "OPENAI_BASE_URL": openai.base_url,
            "REFARCH_OPENAI_DIMENSIONS": str(DIMENSION),
        }
        for name, env, slow in (
            ("slow_embedding_service", {"REFARCH_VECTOR_BACKEND": "pgvector"}, openai),
            (
                "slow_vector_index",
                {
                    "REFARCH_VECTOR_BACKEND": "pinecone",
                    "PINECONE_API_KEY": pinecone.api_key,
                    "PINECONE_HOST": pinecone.url,
                },
                pinecone,
            ),
        ):
            console.print(f"[bold]{name}[/bold]: answers after {SLOW_SECONDS:g} s; {clients} clients for {seconds:g} s")
            dsn = catalog_database(admin_dsn, name, openai)
            with gunicorn(dsn, home / name, {**openai_env, **env}) as (port, _):
                warm_up(port)
                slow.delay_next(SLOW_SECONDS, times=1_000_000)
                try:
                    results[name] = under_slow_provider(port, seconds=seconds, clients=clients)
                finally:
                    slow.cancel_delays()
    return results


def catalog_database(admin_dsn: str, name: str, openai: OpenAIStandIn) -> str:
    """A fresh database with the seeded catalog indexed in pgvector at 1,536-d (the stand-in's vectors)."""
    dsn = fresh_database(admin_dsn, name)
    embedder = OpenAIEmbedder(
        api_key="sk-local-bench", model="text-embedding-3-small", dimensions=DIMENSION, base_url=openai.base_url
    )
    embedded_catalog(dsn, CATALOG_ROWS, embedder, batch=500)
    Database(dsn).close()
    return dsn


def memory_run(admin_dsn: str, home: Path, *, queries: int, console: Any) -> dict[str, Any]:
    """Peak memory of the web processes after `queries` distinct 1,536-d queries, the cache sized for the dev task."""
    cache_bytes = query_cache_bytes(TASK_MEMORY_MB)
    clients = WEB_WORKERS * WEB_THREADS
    console.print(f"[bold]memory[/bold]: {queries} distinct queries at {DIMENSION}-d, {clients} clients …")
    with OpenAIStandIn() as openai:
        dsn = catalog_database(admin_dsn, "memory", openai)
        env = {
            "REFARCH_EMBEDDER": "openai",
            "OPENAI_API_KEY": "sk-local-bench",
            "OPENAI_BASE_URL": openai.base_url,
            "REFARCH_OPENAI_DIMENSIONS": str(DIMENSION),
            "REFARCH_VECTOR_BACKEND": "pgvector",
            "REFARCH_QUERY_CACHE_BYTES": str(cache_bytes),
        }
        with gunicorn(dsn, home / "memory", env) as (port, master):
            warm_up(port)
            warm = {pid: peak_rss_mb(pid) or 0.0 for pid in [master, *workers_of(master)]}
            calls_before = openai.embed_calls
            started = time.perf_counter()
            counter = iter(range(queries))
            lock = threading.Lock()
            kinds: Counter[str] = Counter()

            def send() -> None:
                client = Client(port)
                while True:
                    with lock:
                        n = next(counter, None)
                    if n is None:
                        break
                    query = f"{MEANING_QUERIES[n % len(MEANING_QUERIES)]} number {n}"
                    status, body = client.get("/api/search?" + urllib.parse.urlencode({"q": query}))
                    with lock:
                        kinds[reason_kind(body) if status == 200 else f"HTTP {status}"] += 1
                client.close()

            threads = [threading.Thread(target=send) for _ in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            took = time.perf_counter() - started
            peaks = {pid: peak_rss_mb(pid) or 0.0 for pid in [master, *workers_of(master)]}
    total = round(sum(peaks.values()), 1)
    return {
        "queries": queries,
        "dimension": DIMENSION,
        "queries_per_s": round(queries / took, 1),
        "answers": dict(kinds),
        "embedding_requests": openai.embed_calls - calls_before,
        "cache_bytes_per_worker": cache_bytes,
        "workers": WEB_WORKERS,
        "peak_rss_mb_after_warm_up": {str(pid): mb for pid, mb in warm.items()},
        "peak_rss_mb": {str(pid): mb for pid, mb in peaks.items()},
        "peak_rss_mb_total": total,
        "task_memory_mb": TASK_MEMORY_MB,
        "share_of_task": round(total / TASK_MEMORY_MB, 2),
    }


def markdown(results: dict[str, Any]) -> str:
    """The slow-provider table and the memory table."""
    budget = results["budget"]
    parts = [
        f"### Search with a slow provider (answers after {SLOW_SECONDS:g} s; budget {budget['total_seconds']:g} s, "
        f"gunicorn {WEB_WORKERS} workers x {WEB_THREADS} threads, {WEB_WORKERS * WEB_THREADS} clients searching)\n\n"
        "| Slow provider | Searches | p50 ms | p99 ms | max ms | Answers | /healthz p50 / p99 / max ms, "
        "kept connection | the same, new connection per check |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    ]
    for name in ("slow_embedding_service", "slow_vector_index"):
        if name not in results:
            continue
        run = results[name]
        s, h, n = run["search"], run["healthz"], run.get("healthz_new_connection", {})
        answers = ", ".join(f"{kind}: {n}" for kind, n in sorted(run["answers"].items()))
        parts.append(
            f"| {name.replace('_', ' ')} | {s['count']} | {s.get('p50_ms')} | {s.get('p99_ms')} | {s.get('max_ms')} "
            f"| {answers} | {h.get('p50_ms')} / {h.get('p99_ms')} / {h.get('max_ms')} "
            f"| {n.get('p50_ms')} / {n.get('p99_ms')} / {n.get('max_ms')} |\n"
        )
    if "memory" in results:
        m = results["memory"]
        parts.append(
            f"\n### Web process memory after {m['queries']} distinct queries ({m['dimension']}-d vectors, "
            f"query cache {m['cache_bytes_per_worker'] / 2**20:.1f} MiB per worker)\n\n"
            "| Process | Peak RSS after warm-up (MB) | Peak RSS after the queries (MB) |\n| --- | --- | --- |\n"
        )
        for n, (pid, mb) in enumerate(m["peak_rss_mb"].items()):
            label = "gunicorn master" if n == 0 else f"worker {n}"
            parts.append(f"| {label} | {m['peak_rss_mb_after_warm_up'].get(pid)} | {mb} |\n")
        parts.append(
            f"| **total** | | **{m['peak_rss_mb_total']}** of the {m['task_memory_mb']} MB task "
            f"({m['share_of_task']:.0%}) |\n\n"
            f"{m['queries_per_s']} queries/s; {m['embedding_requests']} embedding requests; answers: "
            + ", ".join(f"{kind}: {n}" for kind, n in sorted(m["answers"].items()))
            + "\n"
        )
    return "".join(parts)


def run_budget_bench(
    *, quick: bool = False, json_path: Path | None = None, markdown_path: Path | None = None
) -> dict[str, Any]:
    """`refarch bench budget`: on an embedded Postgres in a temporary directory."""
    from rich.console import Console

    from refarch_local.database import LocalDatabase

    console = Console(stderr=True)
    home = Path(tempfile.mkdtemp(prefix="refarch-budget-bench-"))
    server = LocalDatabase(home / "pg")
    results: dict[str, Any] = {
        "budget": {
            "attempt_seconds": SEARCH_BUDGET.attempt_seconds,
            "total_seconds": SEARCH_BUDGET.total_seconds,
            "retries": SEARCH_BUDGET.retries,
        },
        "quick": quick,
    }
    try:
        admin_dsn = server.start()
        results.update(slow_runs(admin_dsn, home, seconds=8.0 if quick else 20.0, console=console))
        results["memory"] = memory_run(admin_dsn, home, queries=2_000 if quick else 10_000, console=console)
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return publish(results, markdown, json_path=json_path, markdown_path=markdown_path)
