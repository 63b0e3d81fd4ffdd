"""Emu's logic: bring the vector index up to date for the products named by a batch of messages."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from refarch import ledger, products
from refarch.db import Database
from refarch.embeddings import Embedder
from refarch.messages import SyncMessage
from refarch.observability import logger
from refarch.vector_index import VectorIndex, VectorRecord


def content_hash(model_id: str, text: str) -> str:
    """Hash of exactly what is embedded, and by which model: equal hash = same vector."""
    return hashlib.sha256(f"{model_id}\n{text}".encode()).hexdigest()


@dataclass
class BatchOutcome:
    """What one batch did; `failures` maps message ids to the reason they must be retried."""

    embedded: int = 0
    metadata_only: int = 0
    skipped: int = 0
    deleted: int = 0
    embed_calls: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    max_lag_seconds: float | None = None


def parse_message(body: str) -> SyncMessage:
    """Parse one message body; raises ValueError with a readable reason if malformed."""
    try:
        return SyncMessage.model_validate_json(body)
    except ValidationError as err:
        raise ValueError(f"malformed message: {err.errors(include_url=False)}") from err


class Emu:
    """Re-reads rows, skips unchanged content, embeds once per batch, upserts, advances the ledger."""

    def __init__(self, db: Database, embedder: Embedder, index: VectorIndex) -> None:
        if index.dimension != embedder.dimension:
            raise ValueError(
                f"vector index dimension {index.dimension} != embedder {embedder.model_id} dimension "
                f"{embedder.dimension}"
            )
        self.db = db
        self.embedder = embedder
        self.index = index

    def process(self, bodies: dict[str, str]) -> BatchOutcome:
        """Process message bodies keyed by message id; never raises for a bad message or a failed product."""
        outcome = BatchOutcome()
        by_product: dict[int, list[str]] = defaultdict(list)
        messages: dict[str, SyncMessage] = {}
        for message_id, body in bodies.items():
            try:
                messages[message_id] = message = parse_message(body)
            except ValueError as err:
                logger.error("rejecting message", extra={"message_id": message_id, "reason": str(err)})
                outcome.failures[message_id] = str(err)
                continue
            by_product[message.product_id].append(message_id)
        if not by_product:
            return outcome

        force = {m.product_id for m in messages.values() if m.force}
        failed_products = self._sync(sorted(by_product), force, outcome)
        for pid, reason in failed_products.items():
            for message_id in by_product[pid]:
                outcome.failures[message_id] = reason
        ok_changed = [m.changed_at for mid, m in messages.items() if mid not in outcome.failures]
        if ok_changed:
            outcome.max_lag_seconds = (datetime.now(UTC) - min(ok_changed)).total_seconds()
        return outcome

    def _sync(self, ids: list[int], force: set[int], outcome: BatchOutcome) -> dict[int, str]:
        """Sync these products under per-product locks; return {product_id: reason} for failures."""
        failures: dict[int, str] = {}
        with self.db.transaction() as conn:
            ledger.lock_products(conn, ids)
            rows = products.get_many(conn, ids)
            entries = ledger.get_many(conn, ids)

            to_embed: list[tuple[products.Product, str]] = []
            metadata_only: dict[int, dict] = {}
            to_delete: list[int] = []
            done: list[tuple[int, int, str | None, str]] = []
            for pid in ids:
                row, entry = rows.get(pid), entries.get(pid)
                if row is None:
                    if entry is None or entry.status != "deleted" or pid in force:
                        to_delete.append(pid)
                    else:
                        outcome.skipped += 1
                    continue
                digest = content_hash(self.embedder.model_id, row.embedding_text())
                current = entry is not None and entry.status == "indexed" and entry.content_hash == digest
                if current and entry is not None and entry.indexed_version >= row.version and pid not in force:
                    outcome.skipped += 1
                elif current and pid not in force:
                    metadata_only[pid] = {**row.metadata(), "content_hash": digest}
                else:
                    to_embed.append((row, digest))

            if to_embed:
                started = time.perf_counter()
                try:
                    vectors = self.embedder.embed([row.embedding_text() for row, _ in to_embed])
                    outcome.embed_calls += 1
                    ledger.record_embed_call(conn, self.embedder.model_id, len(to_embed))
                    self.index.upsert(
                        [
                            VectorRecord(row.id, vector, {**row.metadata(), "content_hash": digest})
                            for (row, digest), vector in zip(to_embed, vectors, strict=True)
                        ]
                    )
                    done += [(row.id, row.version, digest, "indexed") for row, digest in to_embed]
                    outcome.embedded += len(to_embed)
                    logger.debug(
                        "embedded",
                        extra={"texts": len(to_embed), "ms": round((time.perf_counter() - started) * 1000, 1)},
                    )
                except Exception as err:  # provider or index failure: retry these products later
                    reason = f"embed/upsert failed: {type(err).__name__}: {err}"
                    logger.warning("embedding failed", extra={"products": len(to_embed), "reason": reason})
                    failures.update({row.id: reason for row, _ in to_embed})

            try:
                self.index.update_metadata(metadata_only)
                done += [(pid, m["version"], m["content_hash"], "indexed") for pid, m in metadata_only.items()]
                outcome.metadata_only += len(metadata_only)
            except Exception as err:
                failures.update({pid: f"metadata update failed: {err}" for pid in metadata_only})

            try:
                self.index.delete(to_delete)
                # A deleted row's ledger version moves one past the last indexed version: never backwards.
                done += [
                    (pid, max((entries[pid].indexed_version if pid in entries else 0) + 1, 1), None, "deleted")
                    for pid in to_delete
                ]
                outcome.deleted += len(to_delete)
            except Exception as err:
                failures.update({pid: f"delete failed: {err}" for pid in to_delete})

            ledger.record_indexed(conn, done)
            ledger.record_failed(conn, failures)
        return failures
