"""Emu's logic: bring the vector index up to date for the products named by a batch of messages.

The same code serves both lanes (docs/emu.md). A delivery is split into chunks sized for the
embedding provider, not for the queue: each chunk is one transaction holding its products'
locks, one embedding request, upserts of at most 100 vectors, and one ledger write. Locks are
held for one chunk only, so a live edit of a product in a large bulk delivery waits for at most
one chunk, never for the whole delivery.

A delivery may hold more work than one invocation has time for (a slow or throttling provider):
before each chunk Emu checks the time left, and when it is short, stops and fails the messages
whose products it did not reach ("not started"), so they are retried and nothing is half done
when Lambda would cut the invocation off.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from refarch import generations
from refarch.db import Connection, Database
from refarch.embeddings import Embedder
from refarch.emu import ledger
from refarch.emu.decisions import Action, Decision, content_hash, decide
from refarch.emu.failures import Failure, ProductFailure
from refarch.generations.targets import GenerationTargets, IndexTarget
from refarch.index.port import VectorIndex, VectorRecord
from refarch.lanes.messages import AnyMessage, parse_message
from refarch.observability import logger
from refarch.source import rows as source_rows
from refarch.source.rows import SourceRow

__all__ = ["BatchOutcome", "Emu", "ProductFailure", "content_hash", "is_input_error", "parse_message"]

# A chunk is started only with at least this much time left, and twice the slowest chunk so far.
MIN_TIME_LEFT_SECONDS = 10.0


def is_input_error(err: BaseException) -> bool:
    """True when a provider refused the request for what it contained (HTTP 400/413/422), not for load.

    Only then is a chunk split to find the product at fault: an outage or throttling would fail
    every part as well, and splitting would only multiply the calls.
    """
    status = getattr(err, "status_code", None) or getattr(err, "status", None)
    return status in (400, 413, 422)


@dataclass
class BatchOutcome:
    """What one delivery did; `failures` maps message ids to the reason they must be retried."""

    embedded: int = 0
    metadata_only: int = 0
    skipped: int = 0
    deleted: int = 0
    embed_calls: int = 0
    chunks: int = 0
    # Products not reached because the invocation's time ran short, and their messages (retried).
    not_started: int = 0
    not_started_messages: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)
    max_lag_seconds: float | None = None


def chunked(ids: list[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of at most `size` ids."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class Emu:
    """Re-reads rows, skips unchanged content, embeds once per chunk, upserts, advances the ledger.

    Every change goes to every live index generation (refarch.generations): the active one,
    the one being built by a re-index, and a retired one kept for a rollback. Each has its own
    embedder, index and ledger rows, so the content-hash skip is per model.
    """

    def __init__(self, db: Database, targets: GenerationTargets, *, chunk_size: int | None = None) -> None:
        self.db = db
        self.targets = targets
        self.chunk_size = chunk_size

    def warm_up(self) -> None:
        """Build the active generation's embedder and index now (a local model loads for seconds), so
        the first change a long-running worker receives does not wait for it. A failure is left for the
        first change to meet again (and report), as it would without the warm-up."""
        try:
            self.targets.active()
        except Exception as err:
            logger.warning("warm-up failed: the first change builds the embedder", extra={"error": str(err)})

    @property
    def embedder(self) -> Embedder:
        """The active generation's embedder (the one search uses)."""
        return self.targets.active().embedder

    @property
    def index(self) -> VectorIndex:
        """The active generation's index (the one search reads)."""
        return self.targets.active().index

    def _chunk_size(self) -> int:
        """The provider's preferred request size (refarch.embeddings): of the building generation while
        one builds (it does nearly all the embedding), else of the active one."""
        if self.chunk_size:
            return self.chunk_size
        with self.db.transaction() as conn:
            lead = generations.building(conn)
        return (self.targets.target(lead) if lead and lead.recorded else self.targets.active()).embedder.batch_size

    def process(self, bodies: dict[str, str], *, time_left: Callable[[], float] | None = None) -> BatchOutcome:
        """Process message bodies keyed by message id; never raises for a bad message or a failed product.

        `time_left` (seconds, e.g. from the Lambda context) stops the work before a chunk that might
        not finish in time; the messages not done are failed with the reason, for a retry.
        """
        outcome = BatchOutcome()
        by_product: dict[int, list[str]] = defaultdict(list)
        messages: dict[str, AnyMessage] = {}
        force: set[int] = set()
        for message_id, body in bodies.items():
            try:
                messages[message_id] = message = parse_message(body)
            except ValueError as err:
                logger.error("rejecting message", extra={"message_id": message_id, "reason": str(err)})
                outcome.failures[message_id] = str(err)
                continue
            for item in message.work():
                by_product[item.product_id].append(message_id)
                if item.force:
                    force.add(item.product_id)
        failed_products: dict[int, ProductFailure] = {}
        if by_product:
            # Records generation 1's embedder before any chunk locks the generations (index_targets.live).
            self.targets.active()
            chunks = list(chunked(sorted(by_product), self._chunk_size()))
            slowest = 0.0
            for n, chunk in enumerate(chunks):
                if time_left is not None and time_left() < max(MIN_TIME_LEFT_SECONDS, 2 * slowest):
                    failed_products.update(self._not_started(chunks[n:], time_left(), outcome))
                    break
                started = time.monotonic()
                failed_products.update(self._sync_chunk(chunk, force, outcome))
                slowest = max(slowest, time.monotonic() - started)
        tried_and_failed: set[str] = set()
        for pid, failure in failed_products.items():
            for message_id in by_product[pid]:
                # A bulk message fails when any of its products did; its retry skips the others (ledger).
                outcome.failures.setdefault(message_id, f"product {pid}: {failure}")
                if not failure.tried:
                    outcome.not_started_messages.add(message_id)
                else:
                    tried_and_failed.add(message_id)
        # "Not started" only when no product of the message was tried and failed: a real failure must
        # count against the message's receives (lambdas.emu hands not-started messages back as new ones).
        outcome.not_started_messages -= tried_and_failed
        ok_changed = [m.changed_at for mid, m in messages.items() if mid not in outcome.failures]
        if ok_changed:
            outcome.max_lag_seconds = (datetime.now(UTC) - min(ok_changed)).total_seconds()
        return outcome

    @staticmethod
    def _not_started(chunks: list[list[int]], seconds_left: float, outcome: BatchOutcome) -> dict[int, ProductFailure]:
        """The products of the chunks left undone: their messages are failed (retried), their ledger untouched."""
        left = [pid for chunk in chunks for pid in chunk]
        outcome.not_started += len(left)
        failure = ProductFailure(
            Failure.NOT_STARTED, f"{seconds_left:.1f} s left in the invocation, too little for another chunk"
        )
        logger.warning("time running out, leaving products for the retry", extra={"products": len(left)})
        return dict.fromkeys(left, failure)

    def _sync_chunk(self, ids: list[int], force: set[int], outcome: BatchOutcome) -> dict[int, ProductFailure]:
        """Sync one chunk into every live generation under its products' locks, in one transaction;
        return the failures by product (a product fails when any generation failed it)."""
        failures: dict[int, ProductFailure] = {}
        outcome.chunks += 1
        with self.db.transaction() as conn:
            ledger.lock_products(conn, ids)
            targets = self.targets.live(conn)
            rows = source_rows.get_many(conn, ids)
            text = generations.current_source_text(conn)
            for target in targets:
                made_from = target.generation.source_text
                # A generation made from an earlier text template (a re-index to the new one builds)
                # keeps the vector of every row not edited since: the switch replaces them all at once.
                keeps_vectors = made_from is not None and text is not None and made_from != text
                synced = self._sync_generation(conn, target, ids, rows, force, outcome, keeps_vectors=keeps_vectors)
                for pid, failure in synced.items():
                    # With two generations live (a re-index), the reason says which one failed.
                    failures.setdefault(
                        pid, replace(failure, generation=target.generation.id) if len(targets) > 1 else failure
                    )
        return failures

    def _sync_generation(
        self,
        conn: Connection,
        target: IndexTarget,
        ids: list[int],
        rows: dict[int, SourceRow],
        force: set[int],
        outcome: BatchOutcome,
        *,
        keeps_vectors: bool = False,
    ) -> dict[int, ProductFailure]:
        """Bring one generation's index and ledger up to date for these rows (`keeps_vectors`: see _sync_chunk)."""
        failures: dict[int, ProductFailure] = {}
        generation, index = target.generation.id, target.index
        entries = ledger.get_many(conn, ids, generation=generation)

        to_embed: list[tuple[SourceRow, str]] = []
        metadata_only: dict[int, dict[str, Any]] = {}
        to_delete: list[int] = []
        done: list[tuple[int, int, str | None, str]] = []
        for pid in ids:
            row = rows.get(pid)
            entry = entries.get(pid)
            decision = decide(row, entry, target.embedder.model_id, force=pid in force)
            if (
                keeps_vectors
                and decision.action is Action.EMBED
                and row is not None
                and entry is not None
                and entry.status == "indexed"
                and entry.indexed_version >= row.version
                and pid not in force
            ):
                decision = Decision(Action.SKIP)  # unchanged since indexed: only the template differs
            if decision.action is Action.SKIP:
                outcome.skipped += 1
            elif decision.action is Action.DELETE:
                to_delete.append(pid)
            elif row is not None and decision.content_hash is not None:
                if decision.action is Action.METADATA:
                    metadata_only[pid] = {**row.metadata(), "content_hash": decision.content_hash}
                else:
                    to_embed.append((row, decision.content_hash))

        if to_embed:
            embed_failures = self._embed_and_upsert(conn, target, to_embed, outcome)
            failures.update(embed_failures)
            done += [(row.id, row.version, digest, "indexed") for row, digest in to_embed if row.id not in failures]

        try:
            index.update_metadata(metadata_only)
            done += [(pid, m["version"], m["content_hash"], "indexed") for pid, m in metadata_only.items()]
            outcome.metadata_only += len(metadata_only)
        except Exception as err:
            failures.update(dict.fromkeys(metadata_only, ProductFailure(Failure.METADATA, str(err))))

        try:
            index.delete(to_delete)
            # A deleted row's ledger version moves one past the last indexed version: never backwards.
            done += [
                (pid, max((entries[pid].indexed_version if pid in entries else 0) + 1, 1), None, "deleted")
                for pid in to_delete
            ]
            outcome.deleted += len(to_delete)
        except Exception as err:
            failures.update(dict.fromkeys(to_delete, ProductFailure(Failure.DELETE, str(err))))

        # One ledger write per chunk and generation (plus one for its failures, if any).
        ledger.record_indexed(conn, done, generation=generation)
        ledger.record_failed(conn, {pid: str(failure) for pid, failure in failures.items()}, generation=generation)
        return failures

    def _embed_and_upsert(
        self, conn: Connection, target: IndexTarget, to_embed: list[tuple[SourceRow, str]], outcome: BatchOutcome
    ) -> dict[int, ProductFailure]:
        """One embedding request and its upserts; a refused chunk is halved until the refused product is alone."""
        started = time.perf_counter()
        try:
            vectors = target.embedder.embed([row.embedding_text() for row, _ in to_embed])
            outcome.embed_calls += 1
            ledger.record_embed_call(conn, target.embedder.model_id, len(to_embed))
            target.index.upsert(
                [
                    VectorRecord(row.id, vector, {**row.metadata(), "content_hash": digest})
                    for (row, digest), vector in zip(to_embed, vectors, strict=True)
                ]
            )
        except Exception as err:  # provider or index failure: retry these products later
            failure = ProductFailure(Failure.EMBED, f"{type(err).__name__}: {err}")
            if len(to_embed) > 1 and is_input_error(err):
                # One product's content was refused: find it, so its neighbours are indexed now.
                logger.warning("chunk refused, splitting it", extra={"products": len(to_embed), "reason": str(failure)})
                half = len(to_embed) // 2
                return {
                    **self._embed_and_upsert(conn, target, to_embed[:half], outcome),
                    **self._embed_and_upsert(conn, target, to_embed[half:], outcome),
                }
            logger.warning("embedding failed", extra={"products": len(to_embed), "reason": str(failure)})
            return {row.id: failure for row, _ in to_embed}
        outcome.embedded += len(to_embed)
        logger.debug(
            "embedded",
            extra={"texts": len(to_embed), "ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return {}
