"""The chaos harness: the local stack with an embedding provider's stand-in (OpenAI or Amazon Bedrock),
convergence checks, the scenario runner, and the faults the scenarios inject (kills mid-batch, cut
database connections)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg2
from rich.console import Console

from refarch.db import Database, connect
from refarch.embeddings import make_embedder
from refarch.index.pgvector_index import PgVectorIndex
from refarch.observability import log_to_file, metrics_to_file
from refarch.settings import Settings
from refarch_local.convergence import Convergence, check_convergence
from refarch_local.standins import BedrockStandIn, OpenAIStandIn, StandInServer
from refarch_local.supervisor import Component, Supervisor, free_port

DIMENSION = 64
MODEL = "text-embedding-3-small"
# With Bedrock: Titan, one text per request (the most requests, so the most throttles), at its smallest size.
BEDROCK_MODEL = "amazon.titan-embed-text-v2:0"
BEDROCK_DIMENSION = 256
ChaosEmbedder = Literal["openai", "bedrock"]
VISIBILITY_TIMEOUT = 3
# The bulk lane's messages come back this many seconds after an Emu worker is killed with them. The
# local default, 180 s, is sized for 10,000 products on the local model, and the quick run waited it
# out twice; here a delivery is a few hundred products embedded by the stand-in, done in a few
# seconds even on a busy machine. (One that outlived it would be delivered again, which the ledger
# makes harmless; only five such in a row would reach the DLQ.)
BULK_VISIBILITY_TIMEOUT = 30
# How long the embedding call of the batch chosen for a kill is held: ample time to see that it
# arrived and kill its worker while the batch is still inside the Emu handler.
HELD_EMBED_SECONDS = 2.0


@dataclass
class ScenarioResult:
    """What one scenario did and what the convergence check found."""

    name: str
    changes: int
    lost: int
    stale: int
    seconds: float
    detail: str = ""
    problems: list[str] = field(default_factory=list)  # what else went wrong (did not settle, fault not injected)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing stale, and no other problem."""
        return self.lost == 0 and self.stale == 0 and not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "scenario": self.name,
            "changes": self.changes,
            "lost": self.lost,
            "stale": self.stale,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
            "detail": self.detail,
            "problems": self.problems,
        }


class ChaosHarness:
    """A local stack with a provider stand-in, and what every scenario needs from it (see ChaosScenarios).

    `embedder`: which provider Emu embeds with, through its real SDK against its stand-in (`provider`):
    OpenAI (429s with Retry-After, 500s, hangs) or Amazon Bedrock (ThrottlingException, 500s, hangs).
    """

    def __init__(self, *, rows: int, edits: int, console: Console, embedder: ChaosEmbedder = "openai") -> None:
        self.rows = rows
        self.edits = edits
        self.console = console
        self.embedder = embedder
        self.home = Path(tempfile.mkdtemp(prefix="refarch-chaos-"))
        self.provider: StandInServer = (
            BedrockStandIn(hang_seconds=5, seed=7)
            if embedder == "bedrock"
            else OpenAIStandIn(hang_seconds=5, retry_after_seconds=0.2, seed=7)
        )
        self.supervisor: Supervisor | None = None
        self.results: list[ScenarioResult] = []

    @property
    def stack(self) -> Supervisor:
        """The running supervisor."""
        assert self.supervisor is not None
        return self.supervisor

    def start(self) -> None:
        """Start the stand-in and the stack (no web page), seed and bootstrap, wait until synced."""
        self.provider.start()
        os.environ.update({**self._embedder_environment(), "REFARCH_HOME": str(self.home)})
        # The in-process deliveries' metric records and log lines (a bootstrap's warnings while the queue
        # server is down, say) go with the run's logs, not to the terminal.
        metrics_to_file(self.home / "logs" / "metrics.log")
        log_to_file(self.home / "logs" / "chaos.log")
        self.supervisor = Supervisor(
            Settings(home=self.home),
            web_port=free_port(),
            # Any free port, never the demo's 9324: this stack is private to the run, and two runs
            # (parallel test workers) must not meet on one port.
            sqs_port=free_port(),
            sqs_visibility_timeout=VISIBILITY_TIMEOUT,
            sqs_bulk_visibility_timeout=BULK_VISIBILITY_TIMEOUT,
            console=self.console,
        )
        self.stack.start_database()
        self.stack.start_components(("emu",))
        self.stack.seed(self.rows)
        self.stack.bootstrap()
        self.stack.start_components(("listener",))
        self.wait_converged(timeout=600)

    def _embedder_environment(self) -> dict[str, str]:
        """What points every component of the stack at the provider's stand-in (1 s timeouts, 3 attempts)."""
        if isinstance(self.provider, BedrockStandIn):
            return {
                "REFARCH_EMBEDDER": "bedrock",
                "REFARCH_BEDROCK_ENDPOINT_URL": self.provider.url,
                "REFARCH_BEDROCK_MODEL": BEDROCK_MODEL,
                "REFARCH_BEDROCK_DIMENSIONS": str(BEDROCK_DIMENSION),
                "REFARCH_BEDROCK_TIMEOUT_SECONDS": "1",
                "REFARCH_BEDROCK_MAX_ATTEMPTS": "3",
                # boto3 signs with any keys; the stand-in checks only that a request is signed.
                "AWS_ACCESS_KEY_ID": "chaos-local",
                "AWS_SECRET_ACCESS_KEY": "chaos-local",
                "AWS_REGION": "us-east-1",
            }
        assert isinstance(self.provider, OpenAIStandIn)
        return {
            "REFARCH_EMBEDDER": "openai",
            "OPENAI_API_KEY": "chaos-local-key",
            "OPENAI_BASE_URL": self.provider.base_url,
            "REFARCH_OPENAI_MODEL": MODEL,
            "REFARCH_OPENAI_DIMENSIONS": str(DIMENSION),
            "REFARCH_OPENAI_TIMEOUT_SECONDS": "1",
            "REFARCH_OPENAI_MAX_RETRIES": "2",
        }

    @property
    def dimension(self) -> int:
        """The vector size the stack's embedder produces."""
        return BEDROCK_DIMENSION if self.embedder == "bedrock" else DIMENSION

    def stop(self) -> None:
        """Stop everything."""
        if self.supervisor is not None:
            self.supervisor.stop()
        self.provider.stop()

    # -- convergence ---------------------------------------------------------------------------

    def settled(self) -> bool:
        """Nothing left to do: no pending or failed rows, empty outbox backlog and queue."""
        status = self.stack.status()
        return (
            status["pending"] == 0
            and status["failed"] == 0
            and status["outbox_backlog"] == 0
            and (status.get("queue_depth") or 0) == 0
        )

    def wait_converged(self, timeout: float) -> bool:
        """Wait until settled (True) or the timeout (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.settled():
                    return True
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                pass
            time.sleep(0.5)
        return False

    def drift(self) -> Convergence:
        """Index against table (ids, metadata, content hashes, a re-embedded sample); the ledger only reported."""
        db = Database(self.stack.dsn)
        try:
            index = PgVectorIndex(Database(self.stack.dsn), self.dimension)
            return check_convergence(db, index, make_embedder(Settings(home=self.home)), sample=50)
        finally:
            db.close()

    def scenario(
        self, name: str, body: Callable[[], int], *, timeout: float = 300, problems: list[str] | None = None
    ) -> ScenarioResult:
        """Run one scenario body (returns changes made), wait for convergence, check it.

        `problems` is a list the body may append to (a fault it could not inject): each fails the scenario.
        """
        self.console.print(f"[bold]chaos[/bold] {name} …")
        started = time.monotonic()
        problems = problems if problems is not None else []
        changes = body()
        settled = self.wait_converged(timeout)
        check = self.drift()
        if not settled:
            # A stack that never settles has not converged, whatever the drift check saw.
            problems.append(f"did not settle in {timeout}s; status {self.stack.status()}")
        if check.ledger_drift:
            problems.append(f"the ledger disagrees with the index for {len(check.ledger_drift)} products")
        result = ScenarioResult(
            name, changes, check.lost, check.stale, time.monotonic() - started, check.detail(), problems
        )
        self.results.append(result)
        self.console.print(
            f"  changes {result.changes} · lost {result.lost} · stale {result.stale} · "
            f"{result.seconds:.1f}s {'[green]ok[/green]' if result.ok else '[red]FAILED[/red]'}"
        )
        return result

    # -- faults --------------------------------------------------------------------------------

    def _kill_emu_mid_batch(self, missed: list[str], *, timeout: float = 60) -> bool:
        """SIGKILL every Emu worker while one of them is provably inside a batch.

        The next embedding call is held in the stand-in; once it has arrived, the worker that sent
        it has received messages, locked their rows and is waiting for vectors, so a kill of every
        worker now cuts that batch in half. If no call arrives within `timeout`, the kill is not
        made (False) and the reason goes to `missed`.
        """
        self.provider.delay_next(HELD_EMBED_SECONDS)
        deadline = time.monotonic() + timeout
        while self.provider.delays_pending:  # taken the moment a call arrives, which it then holds
            if time.monotonic() > deadline:
                self.provider.cancel_delays()  # or it would hold some later, unrelated call
                missed.append(f"no embedding call (so no batch in flight) within {timeout}s: kill not made")
                return False
            time.sleep(0.01)
        for component in self.stack.components:
            if component.name == "emu" or component.name.startswith("emu-"):
                self.stack.kill(component.name)
        return True

    def _emu_workers(self) -> list[Component]:
        return [c for c in self.stack.components if c.name == "emu" or c.name.startswith("emu-")]

    def _terminate_backends(self) -> None:
        """Cut every other connection to the stack's database (its clients must reconnect)."""
        conn = connect(self.stack.dsn, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )
        finally:
            conn.close()
