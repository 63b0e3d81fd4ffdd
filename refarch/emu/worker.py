"""Emu's logic: bring the vector index up to date for the products named by a batch of messages.

The same code serves both lanes (docs/emu.md). A delivery is split into chunks sized for the
embedding provider, not for the queue: each chunk is one transaction holding its products'
locks, one embedding request, upserts of at most 100 vectors, and one ledger write. Locks are
held for one chunk only, so a live edit of a product in a large bulk delivery waits for at most
one chunk, never for the whole delivery.

A long text is several chunks (refarch.source.chunking), each its own vector: a chunk whose text the
index already holds (its hash in the stored chunk's metadata, at any place in the row) is reused,
not embedded again, so editing one paragraph re-embeds the chunks it touched; chunks past the new
end are deleted. Chunks of rows sort into the same request-sized chunks of work: a batch counts
chunks, not rows.

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
from refarch.embeddings import Embedder, take_throttles
from refarch.emu import ledger
from refarch.emu.decisions import Action, Decision, content_hash, decide
from refarch.emu.failures import Failure, ProductFailure
from refarch.generations.targets import GenerationTargets, IndexTarget
from refarch.index.port import StoredChunk, VectorIndex, VectorRecord
from refarch.lanes.messages import AnyMessage, parse_message
from refarch.observability import logger
from refarch.source import load as load_source
from refarch.source import rows as source_rows
from refarch.source.chunking import Chunker, TextChunk, chunker_for
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
    # Chunks of the embedded rows: embedded now, or reused from the index (their text was already there).
    chunks_embedded: int = 0
    chunks_reused: int = 0
    metadata_only: int = 0
    skipped: int = 0
    deleted: int = 0
    embed_calls: int = 0
    # Throttled answers the provider gave while this delivery's chunks were embedded (retried or not).
    embed_throttles: int = 0
    chunks: int = 0
    # Products not reached because the invocation's time ran short, and their messages (retried).
    not_started: int = 0
    not_started_messages: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)
    max_lag_seconds: float | None = None


def chunked(ids: list[int], size: int, weights: dict[int, int] | None = None) -> Iterator[list[int]]:
    """Consecutive slices of ids weighing at most `size` together (each id weighs 1 unless `weights` says
    more: its text's estimated chunks); an id heavier than `size` is a slice of its own."""
    weights = weights or {}
    batch: list[int] = []
    load = 0
    for pid in ids:
        weight = weights.get(pid, 1)
        if batch and load + weight > size:
            yield batch
            batch, load = [], 0
        batch.append(pid)
        load += weight
    if batch:
        yield batch


@dataclass
class RowPlan:
    """One row to embed in one generation: its chunks, and the vectors of those whose text the index holds."""

    row: SourceRow
    digest: str
    chunks: list[TextChunk]
    hashes: list[str]
    reusable: dict[int, list[float]] = field(default_factory=dict)  # chunk number -> stored vector

    def metadata(self, chunk: TextChunk) -> dict[str, Any]:
        """A chunk's metadata: the row's, and for a row of several chunks, the chunk's own keys."""
        metadata = {**self.row.metadata(), "content_hash": self.digest}
        if len(self.chunks) > 1:
            metadata |= {
                "chunk": chunk.number,
                "chunks": len(self.chunks),
                "chunk_hash": self.hashes[chunk.number],
                "chunk_start": chunk.start,
                "chunk_end": chunk.end,
            }
        return metadata

    def to_embed(self) -> list[TextChunk]:
        return [chunk for chunk in self.chunks if chunk.number not in self.reusable]


def _chunk_hash(metadata: dict[str, Any]) -> str | None:
    """The hash of a stored chunk's text: its own, or for a row that was one vector, the row's (its whole text)."""
    if "chunks" in metadata:
        return metadata.get("chunk_hash")
    return metadata.get("content_hash")


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
        self._chunking = load_source(targets.settings.source).chunking
        self._chunkers: dict[str, Chunker] = {}

    def chunker(self, target: IndexTarget) -> Chunker:
        """How this generation's embedder splits long texts (its own window and tokens)."""
        model = target.embedder.model_id
        if model not in self._chunkers:
            self._chunkers[model] = chunker_for(self._chunking, target.embedder)
        return self._chunkers[model]

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

    def _batches(self, ids: list[int]) -> list[list[int]]:
        """The delivery's ids in chunks of work sized for the provider's preferred request (refarch.embeddings),
        counted in text chunks: of the building generation while one builds (it does nearly all the
        embedding), else of the active one."""
        with self.db.transaction() as conn:
            lead = generations.building(conn)
        target = self.targets.target(lead) if lead and lead.recorded else self.targets.active()
        chunker = self.chunker(target)
        weights: dict[int, int] = {}
        if chunker.enabled:
            with self.db.transaction() as conn:
                lengths = source_rows.text_lengths(conn, ids)
            weights = {pid: chunker.estimated_chunks(chars) for pid, chars in lengths.items()}
        return list(chunked(ids, self.chunk_size or target.embedder.batch_size, weights))

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
            chunks = self._batches(sorted(by_product))
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
                    chunks = len(self.chunker(target).split(row.embedding_text()))
                    if chunks > 1:
                        metadata_only[pid]["chunks"] = chunks  # every chunk of the row is updated
                else:
                    to_embed.append((row, decision.content_hash))

        if to_embed:
            embed_failures = self._embed_rows(conn, target, to_embed, outcome)
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

    def _embed_rows(
        self, conn: Connection, target: IndexTarget, to_embed: list[tuple[SourceRow, str]], outcome: BatchOutcome
    ) -> dict[int, ProductFailure]:
        """Split the rows into chunks, find the chunks the index already holds, embed the rest and upsert."""
        chunker = self.chunker(target)
        model = target.embedder.model_id
        plans = []
        for row, digest in to_embed:
            chunks = chunker.split(row.embedding_text())
            hashes = [content_hash(model, chunk.text) for chunk in chunks]
            plans.append(RowPlan(row, digest, chunks, hashes))
        try:
            self._find_reusable(target.index, plans)
        except Exception as err:  # the index is down: the upsert would fail the same way
            failure = ProductFailure(Failure.EMBED, f"{type(err).__name__}: {err}")
            logger.warning("reading stored chunks failed", extra={"products": len(plans), "reason": str(failure)})
            return {plan.row.id: failure for plan in plans}
        return self._embed_and_upsert(conn, target, plans, outcome)

    @staticmethod
    def _find_reusable(index: VectorIndex, plans: list[RowPlan]) -> None:
        """For rows of several chunks: the stored chunks whose text is unchanged, wherever they moved to.

        Stored chunks are looked up up to half again as many places as the new text has (a text that
        shrank by more re-embeds a chunk or two that moved further); a row of one chunk is embedded whole.
        """
        several = [plan for plan in plans if len(plan.chunks) > 1]
        if not several:
            return
        keys = [(plan.row.id, n) for plan in several for n in range(len(plan.chunks) + len(plan.chunks) // 2 + 2)]
        stored: dict[tuple[int, int], StoredChunk] = index.fetch_chunks(keys)
        for plan in several:
            held = {
                digest: chunk.values
                for (pid, _), chunk in stored.items()
                if pid == plan.row.id and (digest := _chunk_hash(chunk.metadata))
            }
            plan.reusable = {n: held[digest] for n, digest in enumerate(plan.hashes) if digest in held}

    @staticmethod
    def _embed(target: IndexTarget, texts: list[str], outcome: BatchOutcome) -> list[list[float]]:
        """The texts' vectors; the throttled answers the provider gave meanwhile are counted, failed or not."""
        try:
            return target.embedder.embed(texts) if texts else []
        finally:
            outcome.embed_throttles += take_throttles(target.embedder)

    def _embed_and_upsert(
        self, conn: Connection, target: IndexTarget, plans: list[RowPlan], outcome: BatchOutcome
    ) -> dict[int, ProductFailure]:
        """One embedding request (split by the provider's limits) and its upserts, then the chunks past each
        row's end deleted; a refused chunk of work is halved until the refused row is alone."""
        started = time.perf_counter()
        texts = [chunk.text for plan in plans for chunk in plan.to_embed()]
        try:
            embedded = self._embed(target, texts, outcome)
            if len(embedded) != len(texts):
                raise ValueError(f"the embedder returned {len(embedded)} vectors for {len(texts)} texts")
            vectors = iter(embedded)
            if texts:
                outcome.embed_calls += 1
                ledger.record_embed_call(conn, target.embedder.model_id, len(texts))
            records = []
            for plan in plans:
                for chunk in plan.chunks:
                    values = plan.reusable[chunk.number] if chunk.number in plan.reusable else next(vectors)
                    records.append(VectorRecord(plan.row.id, values, plan.metadata(chunk), chunk=chunk.number))
            target.index.upsert(records)
            # A text that shrank leaves no chunk behind; nor does one whose earlier attempt died mid-way.
            target.index.delete_chunks_from({plan.row.id: len(plan.chunks) for plan in plans})
        except Exception as err:  # provider or index failure: retry these products later
            failure = ProductFailure(Failure.EMBED, f"{type(err).__name__}: {err}")
            if len(plans) > 1 and is_input_error(err):
                # One product's content was refused: find it, so its neighbours are indexed now.
                logger.warning("chunk refused, splitting it", extra={"products": len(plans), "reason": str(failure)})
                half = len(plans) // 2
                return {
                    **self._embed_and_upsert(conn, target, plans[:half], outcome),
                    **self._embed_and_upsert(conn, target, plans[half:], outcome),
                }
            logger.warning("embedding failed", extra={"products": len(plans), "reason": str(failure)})
            return {plan.row.id: failure for plan in plans}
        outcome.embedded += len(plans)
        outcome.chunks_embedded += len(texts)
        outcome.chunks_reused += sum(len(plan.reusable) for plan in plans)
        logger.debug(
            "embedded",
            extra={"texts": len(texts), "ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return {}
