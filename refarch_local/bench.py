"""`refarch bench`: reproducible numbers from the local stack, in one run.

1. Bootstrap throughput end to end (seed -> bulk lane -> Emu -> index) next to the raw throughput
   of the same model on the same texts, in Emu's batch size, measured in the same run; the
   embedding requests and SQS messages the bootstrap needed.
2. Change -> searchable latency: commit until the search path returns the product at its new
   version, for edits made at a steady pace, when idle and while a whole bootstrap is indexed.
3. Search latency per mode (hybrid, semantic, lexical) at two catalog sizes; relevance per query
   class and mode on the labelled query set; the query-embedding cache (refarch_local.search_bench).
4. Re-bootstrap and full re-delivery with nothing changed: embeddings computed (target 0).
5. Re-index every row to a second model through the bulk lane while searching, then switch, by the
   synthesized Reindex state machine (refarch_local.bench_reindex): duration, search errors and empty
   pages meanwhile.
6. Peak memory of each process.
Benchmarks print and write their numbers; they assert nothing (tests check behaviour).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from refarch import catalog
from refarch.db import Database, connect, fetch_one
from refarch.embeddings import LocalEmbedder
from refarch.lanes.messages import bulk_messages
from refarch.observability import log_to_file, metrics_to_file
from refarch.products import embedding_text
from refarch.settings import Settings, read_local_runtime
from refarch_local import bench_reindex
from refarch_local.bench_edits import timed_edits
from refarch_local.bench_report import render
from refarch_local.process_stats import cpu_seconds, machine_description, peak_rss_mb
from refarch_local.standins import OpenAIStandIn
from refarch_local.supervisor import Supervisor, emu_layout, free_port, local_model


def _embed_share(texts: list[str], batch: int, threads: int, barrier: Any, results: Any) -> None:
    """One model process of the parallel raw measurement: load, wait for the others, embed, report seconds."""
    from refarch.embeddings import LocalEmbedder

    embedder = LocalEmbedder(threads=threads)
    embedder.embed(texts[:batch])  # warm-up
    barrier.wait()
    started, usage = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    for start in range(0, len(texts), batch):
        embedder.embed(texts[start : start + batch])
    after = resource.getrusage(resource.RUSAGE_SELF)
    results.put((time.monotonic() - started, after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime))


def raw_parallel_throughput(texts: list[str], batch: int, threads_per_process: list[int]) -> tuple[float, float]:
    """Texts/s and CPU ms per text of the model alone, run as the local bulk-lane Emu workers run it.

    One process per worker with the same number of threads, all starting together.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    count = len(threads_per_process)
    barrier, results = context.Barrier(count), context.Queue()
    processes = [
        context.Process(target=_embed_share, args=(texts[k::count], batch, threads, barrier, results))
        for k, threads in enumerate(threads_per_process)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=3600) for _ in processes]
    for process in processes:
        process.join()
    slowest = max(seconds for seconds, _ in reports)
    return round(len(texts) / slowest, 1), round(1000 * sum(cpu for _, cpu in reports) / len(texts), 2)


class Bench:
    """One benchmark run on a fresh local stack under a temporary REFARCH_HOME."""

    def __init__(
        self,
        *,
        rows: int,
        edits: int,
        search_sizes: tuple[int, int],
        queries: int,
        console: Console,
        compare_fusion: bool = True,
    ) -> None:
        self.rows = rows
        # Relevance under each fusion setting and with reranking as well (`refarch bench relevance` reports them).
        self.compare_fusion = compare_fusion
        self.edits = edits
        self.search_sizes = search_sizes
        self.queries = queries
        self.console = console
        self.home = Path(tempfile.mkdtemp(prefix="refarch-bench-"))
        # Any free SQS port, never the demo's 9324: the stack is private to the run (and parallel
        # test workers each run one).
        self.supervisor = Supervisor(
            Settings(home=self.home), web_port=free_port(), sqs_port=free_port(), console=console
        )
        self.results: dict[str, Any] = {}
        self._embedder: Any = None

    @property
    def embedder(self) -> Any:
        """The same model Emu runs, loaded in this process for the raw and search measurements."""
        if self._embedder is None:
            self._embedder = local_model()
        return self._embedder

    def run(self, *, reindex_only: bool = False) -> dict[str, Any]:
        """All measurements, in order; the stack is stopped at the end whatever happens.

        The temporary home (~1 GB with the 100,000-product index) is removed after a complete run
        and kept, with its logs, after a failed one.
        """
        completed = False
        # Metric records and log lines of anything run in this process go with the run's logs, not to the
        # terminal (which shows progress and tables).
        metrics_to_file(self.home / "logs" / "metrics.log")
        log_to_file(self.home / "logs" / "bench.log")
        # The re-index's second model: the OpenAI stand-in, which every Emu worker must be able to reach.
        second_model = OpenAIStandIn(seed=7).start()
        os.environ.update(
            REFARCH_EMBEDDER="local", OPENAI_API_KEY="bench-local-key", OPENAI_BASE_URL=second_model.base_url
        )
        try:
            # Emu's per-batch "batch done" lines (INFO) are how the re-delivery step counts what Emu
            # received and skipped; the stack's components inherit this environment.
            os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO"
            self.supervisor.start_database()
            self.supervisor.start_components(("emu", "web"))
            self.bootstrap_throughput()
            if not reindex_only:
                self.raw_model_throughput()
                self.change_latency()
                self.change_latency_during_bootstrap()
                self.rebootstrap_unchanged()
                self.search_latency()
                self.search_relevance()
            self.reindex_while_searching()
            if not reindex_only:
                self.peak_memory()
            completed = True
        finally:
            self.supervisor.stop()
            second_model.stop()
            if completed:
                shutil.rmtree(self.home, ignore_errors=True)
            else:
                self.console.print(f"[yellow]kept {self.home} (logs in logs/)[/yellow]")
        self.results["machine"] = machine_description()
        return self.results

    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        conn = connect(self.supervisor.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return int(fetch_one(cur)[0])
        finally:
            conn.close()

    def _wait_indexed(
        self, expected: int, timeout: float = 3600, *, progress: list[list[float]] | None = None, origin: float = 0.0
    ) -> None:
        """Wait until `expected` rows are indexed and none is pending.

        With `progress`, append [seconds since `origin` (a time.monotonic() value), rows indexed] about
        once a second: the bootstrap's progress over time, plotted by the bench.
        """
        deadline = time.monotonic() + timeout
        last_sample = -1.0
        while time.monotonic() < deadline:
            status = self.supervisor.status()
            now = time.monotonic()
            done = status["indexed"] >= expected and status["pending"] == 0
            if progress is not None and (done or now - last_sample >= 1.0):
                progress.append([round(now - origin, 2), status["indexed"]])
                last_sample = now
            if done:
                return
            time.sleep(0.2)
        raise TimeoutError(f"index did not reach {expected} rows in {timeout}s")

    def _wait_queue_empty(self, timeout: float = 3600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.supervisor.status().get("queue_depth") or 0) == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("queue did not drain")

    def bootstrap_throughput(self) -> None:
        """Seed N rows, bootstrap them through the queue and Emu, time until all are indexed."""
        self.console.print(f"[bold]1. bootstrap[/bold] {self.rows} products end to end …")
        self.supervisor.seed(self.rows)
        calls_before = self._count("SELECT count(*) FROM embed_calls")
        cpu_before = self._cpu_by_process()
        messages = {"n": 0}
        started = time.monotonic()
        self.supervisor.bootstrap(on_batch=lambda result: messages.update(n=messages["n"] + result["messages"]))
        self.supervisor.start_components(("listener",))
        self._wait_indexed(self.rows)
        seconds = time.monotonic() - started
        cpu_after = self._cpu_by_process()
        calls = self._count("SELECT count(*) FROM embed_calls") - calls_before
        cpu = {name: spent - cpu_before.get(name, 0.0) for name, spent in cpu_after.items()}
        per_row = {name: round(1000 * spent / self.rows, 2) for name, spent in cpu.items()}
        per_row[f"all ({os.cpu_count()} cores)"] = round(1000 * sum(cpu.values()) / self.rows, 2)
        self.results["bootstrap_cpu_ms_per_row"] = per_row
        self.results["bootstrap"] = {
            "rows": self.rows,
            "seconds": round(seconds, 2),
            "rows_per_s": round(self.rows / seconds, 1),
            "embed_calls": calls,
            "texts_per_call": round(self.rows / calls, 2) if calls else None,
            "sqs_messages": messages["n"],
        }

    def _cpu_by_process(self) -> dict[str, float]:
        """CPU seconds spent so far by each part of the stack (Postgres with all its backends)."""
        pids = json.loads((self.home / "processes.json").read_text())
        spent = {name: cpu_seconds(pid) for name, pid in pids.items()}
        postmaster = self.supervisor.database.postmaster_pid()
        if postmaster is not None:
            spent["postgres"] = cpu_seconds(postmaster)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        spent["bench (bootstrap workers, status polls)"] = usage.ru_utime + usage.ru_stime
        return spent

    def raw_model_throughput(self) -> None:
        """The model alone on the same texts: in Emu's batch size (as the bulk lane runs it), and in 10s."""
        self.console.print("[bold]   raw model[/bold] on the same texts …")
        seeded = [catalog.make_product(i) for i in range(1, self.rows + 1)]
        strings = [embedding_text(p.name, p.category, p.description) for p in seeded]
        self.embedder.embed(strings[:10])  # warm-up
        batch_size = LocalEmbedder.BATCH_SIZE
        raw: dict[str, float] = {}
        for batch in (10, batch_size):
            started, usage = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
            for start in range(0, len(strings), batch):
                self.embedder.embed(strings[start : start + batch])
            raw[f"batch_{batch}"] = round(len(strings) / (time.monotonic() - started), 1)
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
            raw[f"cpu_ms_batch_{batch}"] = round(1000 * cpu / len(strings), 2)
        pipeline = self.results["bootstrap"]["rows_per_s"]
        bulk_threads = [w.threads for w in emu_layout() if w.lane == "bulk"]
        # The model as the bulk-lane workers run it: one process per worker, each on its share of the cores.
        parallel, parallel_cpu = (
            raw_parallel_throughput(strings, batch_size, bulk_threads)
            if len(bulk_threads) > 1
            else (raw[f"batch_{batch_size}"], raw[f"cpu_ms_batch_{batch_size}"])
        )
        best = max(parallel, raw[f"batch_{batch_size}"])
        self.results["raw_model"] = {
            "emu_batch_size": batch_size,
            "texts_per_s_batch_10": raw["batch_10"],
            "texts_per_s_emu_batch": raw[f"batch_{batch_size}"],
            "bulk_processes": len(bulk_threads),
            "texts_per_s_emu_batch_bulk_processes": parallel,
            "ratio": round(pipeline / best, 3),
            "ratio_vs_batch_10": round(pipeline / raw["batch_10"], 3),
            "cpu_ms_per_text_emu_batch": raw[f"cpu_ms_batch_{batch_size}"],
            "cpu_ms_per_text_emu_batch_bulk_processes": parallel_cpu,
        }

    def change_latency(self) -> None:
        """Edits at a steady pace on an idle system; time from each commit until search returns the new version."""
        self.console.print(f"[bold]2. change → searchable[/bold] {self.edits} edits …")
        self.results["change_latency_ms"] = timed_edits(
            self.supervisor.dsn, self.embedder, rows=self.rows, pace=0.2, edits=self.edits, first=self.rows + 1
        )

    def change_latency_during_bootstrap(self) -> None:
        """Edits at ~2/s while a whole bootstrap is indexed (the bulk lane busy): the live lane's latency.

        The index and ledger are emptied first, so the bootstrap re-embeds every row, as a first one does.
        """
        self.console.print(f"[bold]2b. change → searchable during a bootstrap[/bold] of {self.rows} rows …")
        conn = connect(self.supervisor.dsn)
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE sync_state, product_vectors")
        conn.close()
        started = time.monotonic()
        finished = threading.Event()
        progress: list[list[float]] = [[0.0, 0]]

        def bootstrap_and_index() -> None:
            try:
                self.supervisor.bootstrap()
                self._wait_indexed(self.rows, progress=progress, origin=started)
            finally:
                finished.set()

        runner = threading.Thread(target=bootstrap_and_index, daemon=True)
        runner.start()
        result = timed_edits(
            self.supervisor.dsn,
            self.embedder,
            rows=self.rows,
            pace=0.5,
            until=finished,
            first=self.rows + 1 + self.edits,
            origin=started,
        )
        runner.join()
        result["bootstrap_seconds"] = round(time.monotonic() - started, 2)
        result["bootstrap_progress"] = progress
        self.results["change_latency_during_bootstrap_ms"] = result

    def rebootstrap_unchanged(self) -> None:
        """Run the bootstrap again, then re-deliver every row: neither may embed anything."""
        self.console.print("[bold]4. re-bootstrap[/bold] with nothing changed …")
        calls_before = self._count("SELECT count(*) FROM embed_calls")
        started = time.monotonic()
        result = self.supervisor.bootstrap()
        self._wait_queue_empty()
        rerun_seconds = time.monotonic() - started
        calls_after_rerun = self._count("SELECT count(*) FROM embed_calls")
        # Now force every row through the queue and Emu (duplicates of indexed versions).
        from refarch.lanes.queues import SyncQueue, make_sqs_client

        runtime = read_local_runtime(self.home)
        queue = SyncQueue(make_sqs_client(Settings(home=self.home)), runtime["bulk_queue_url"], lane="bulk")
        conn = connect(self.supervisor.dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT id, version FROM products ORDER BY id")
            rows = cur.fetchall()
        conn.close()
        logs_before = self._emu_log_sizes()
        started = time.monotonic()
        messages = bulk_messages([(pid, v, "sync") for pid, v in rows], source="repair")
        queue.send(messages)
        self._wait_queue_empty()
        redelivery_seconds = time.monotonic() - started
        emu = self._emu_batches_since(logs_before)
        self.results["rebootstrap_unchanged"] = {
            "bootstrap_enqueued": result["enqueued"],
            "bootstrap_seconds": round(rerun_seconds, 2),
            "bootstrap_embeddings": calls_after_rerun - calls_before,
            "redelivered": len(rows),
            "redelivery_messages": len(messages),
            # What the Emu workers logged for those batches: messages received, and how many of them
            # were skipped as already indexed (metadata-only updates count as skipped embeddings too)
            "redelivery_emu_received": emu["records"],
            "redelivery_emu_skipped": emu["skipped"] + emu["metadata_only"],
            "redelivery_seconds": round(redelivery_seconds, 2),
            "redelivery_embeddings": self._count("SELECT count(*) FROM embed_calls") - calls_after_rerun,
        }

    def reindex_while_searching(self) -> None:
        """Re-index every row to a second model through the bulk lane while searching (refarch_local.bench_reindex)."""
        from refarch_local.search_bench import MEANING_QUERIES

        self.console.print(f"[bold]5. re-index[/bold] {self.rows} rows to a second model while searching …")
        self.results["reindex"] = bench_reindex.reindex_while_searching(
            Settings(home=self.home, database_url=self.supervisor.dsn),
            self.embedder,
            queries=MEANING_QUERIES,
        )

    def _emu_log_sizes(self) -> dict[Path, int]:
        """Current size of each Emu worker's log (where its next lines will start)."""
        return {log: log.stat().st_size for log in (self.home / "logs").glob("emu*.log")}

    def _emu_batches_since(self, sizes: dict[Path, int]) -> dict[str, int]:
        """Totals of the Emu workers' "batch done" log lines written after `sizes` (records, skipped, ...)."""
        totals = dict.fromkeys(("records", "embedded", "skipped", "metadata_only", "deleted", "failed"), 0)
        for log in (self.home / "logs").glob("emu*.log"):
            with log.open("rb") as f:
                f.seek(sizes.get(log, 0))
                lines = f.read().decode(errors="replace").splitlines()
            for line in lines:
                if '"batch done"' not in line:
                    continue
                entry = json.loads(line)
                for key in totals:
                    totals[key] += int(entry.get(key, 0))
        return totals

    def search_latency(self) -> None:
        """p50/p95 of SearchService.search per mode at two catalog sizes (the larger one in its own database),
        the active index generation looked up as the web app does."""
        from refarch.generations.targets import GenerationTargets
        from refarch.search.service import SearchService
        from refarch_local import search_bench

        self.console.print(f"[bold]3. search latency[/bold] per mode at {self.search_sizes} products …")
        results = {}
        for size in self.search_sizes:
            if size == self.rows:
                dsn = self.supervisor.dsn
            else:
                self.console.print(f"   building a {size}-product index …")
                dsn = search_bench.synthetic_catalog(
                    self.supervisor.dsn, self.supervisor.dsn, size, self.embedder.dimension
                )
            db = Database(dsn)
            settings = Settings(home=self.home, embedder="local", vector_backend="pgvector")
            service = SearchService(db, GenerationTargets(settings, db, configured_embedder=lambda: self.embedder))
            results[str(size)] = search_bench.search_latency(service, queries=self.queries)
            db.close()
        self.results["search_latency"] = results

    def search_relevance(self) -> None:
        """Relevance per query class and mode, and the query-embedding cache (refarch bench relevance / search)."""
        from refarch_local import search_bench

        self.results["search"] = search_bench.prepare_and_measure(
            self.supervisor.dsn,
            latency_sizes=(),
            latency_queries=self.queries,
            console=self.console,
            cache=True,
            embedder=self.embedder,
            comparisons=self.compare_fusion,
            # The cache's latency hardly depends on the catalog's size: a quick run uses its own few rows.
            cache_rows=self.rows,
        )

    def peak_memory(self) -> None:
        """Peak RSS of every component process, the database server and this process."""
        runtime_pids = json.loads((self.home / "processes.json").read_text())
        memory = {name: peak_rss_mb(pid) for name, pid in runtime_pids.items()}
        memory["bench (this process: seed, bootstrap, raw model, search)"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
        postmaster = self.supervisor.database.postmaster_pid()
        if postmaster is not None:
            memory["postgres (postmaster)"] = peak_rss_mb(postmaster)
        self.results["peak_memory_mb"] = memory


def run_bench(
    *, quick: bool, json_path: Path | None, markdown_path: Path | None, reindex_only: bool = False
) -> dict[str, Any]:
    """Run every benchmark (small sizes with quick; only the bootstrap and the re-index with reindex_only)
    and write the results: the JSON, the markdown table and, next to the table (or the JSON), the plots."""
    console = Console(stderr=True)
    if quick:
        bench = Bench(rows=300, edits=20, search_sizes=(300, 2000), queries=30, console=console, compare_fusion=False)
    else:
        bench = Bench(rows=10_000, edits=200, search_sizes=(10_000, 100_000), queries=200, console=console)
    results = bench.run(reindex_only=reindex_only)
    results["quick"] = quick
    markdown = render(results, console)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
    if markdown_path:
        markdown_path.write_text(markdown)
    beside = markdown_path or json_path
    if beside:
        write_plots_and_report(results, beside.parent, console)
    return results


def write_plots_and_report(
    results: dict[str, Any], directory: Path, console: Console, *, only: tuple[str, ...] | None = None
) -> None:
    """Write the plots (refarch_local.bench_plots; those in `only`, or all) into `directory` and say which
    were written or skipped."""
    from refarch_local.bench_plots import PLOT_NAMES, write_plots

    written, skipped = write_plots(results, directory, only=only or PLOT_NAMES)
    for path in written:
        console.print(f"plot: {path}")
    for name in skipped:
        console.print(f"[yellow]plot skipped (the results lack its numbers): {name}[/yellow]")
