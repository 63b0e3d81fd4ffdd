"""An independent check that the index equals the table, trusting neither the ledger nor Emu.

Used by `refarch chaos` after every scenario. It reads the table and the index, and compares
ids, every metadata field and the content hash; then it embeds a random sample of rows again and
compares those vectors with the stored ones. The ledger is compared too, but only to report its
drift: "synced" is decided by the index and the table alone.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from refarch.db import Database
from refarch.embeddings import Embedder
from refarch.emu.worker import content_hash
from refarch.index.port import VectorIndex, held_rows
from refarch.settings import Settings
from refarch.source import load as load_source
from refarch.source import rows as source_rows
from refarch.source.chunking import Chunking, chunker_for

# Two embeddings of the same text by the same model agree to far better than this.
SAME_VECTOR_COSINE = 0.999
SAMPLE_IDS = 10


@dataclass
class Convergence:
    """What differs between the table and the index (ids sorted), and what the ledger claims."""

    rows: int = 0
    vectors: int = 0
    missing: list[int] = field(default_factory=list)  # row without a vector
    extra: list[int] = field(default_factory=list)  # vector without a row (a lost delete)
    wrong_metadata: list[int] = field(default_factory=list)  # a metadata column or the version differs
    wrong_hash: list[int] = field(default_factory=list)  # embedded from other text than the row's
    wrong_chunks: list[int] = field(default_factory=list)  # not exactly the chunks of the row's text
    wrong_vector: list[int] = field(default_factory=list)  # re-embedding the row gives another vector
    ledger_drift: list[int] = field(default_factory=list)  # the ledger disagrees with the index
    vectors_checked: int = 0

    @property
    def lost(self) -> int:
        """Changes that never reached the index: rows missing, deletes not applied."""
        return len(self.missing) + len(self.extra)

    @property
    def stale(self) -> int:
        """Vectors present but not what the row says."""
        return len(set(self.wrong_metadata) | set(self.wrong_hash) | set(self.wrong_chunks) | set(self.wrong_vector))

    @property
    def clean(self) -> bool:
        """Index == table, and the ledger agrees."""
        return self.lost == 0 and self.stale == 0 and not self.ledger_drift

    def detail(self) -> str:
        """A short description of every kind of difference found (empty when clean)."""
        kinds = ("missing", "extra", "wrong_metadata", "wrong_hash", "wrong_chunks", "wrong_vector", "ledger_drift")
        return " ".join(
            f"{kind}={len(ids)} {ids[:SAMPLE_IDS]}" for kind in kinds if (ids := getattr(self, kind))
        ).strip()


def check_convergence(
    db: Database,
    index: VectorIndex,
    embedder: Embedder,
    *,
    sample: int = 50,
    seed: int = 0,
    generation: int | None = None,
    chunking: Chunking | None = None,
) -> Convergence:
    """Compare every row with its vectors (metadata, hash, and every chunk of a long text: exactly the chunks
    its text splits into, by `chunking`, default the configured source's), and `sample` random rows' first
    vectors with a re-embedding.

    The ledger compared is `generation`'s (default: the active one, whose index and embedder these are).
    """
    chunker = chunker_for(chunking or load_source(Settings().source).chunking, embedder)
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM source_rows")
        rows = source_rows.get_many(conn, [r[0] for r in cur.fetchall()])
        cur.execute(
            "SELECT product_id, indexed_version, content_hash, status FROM sync_state"
            " WHERE generation = coalesce(%s, active_generation())",
            (generation,),
        )
        ledger = {pid: (version, digest, status) for pid, version, digest, status in cur.fetchall()}
    held = held_rows(index.scan())
    stored = {pid: row.first for pid, row in held.items()}
    result = Convergence(rows=len(rows), vectors=sum(len(row.chunks) for row in held.values()))
    texts = {pid: chunker.split(row.embedding_text()) for pid, row in rows.items()}
    result.missing = sorted(set(rows) - set(stored))
    result.extra = sorted(set(stored) - set(rows))
    for pid in sorted(set(rows) & set(stored)):
        row, meta = rows[pid], stored[pid]
        if not _same_metadata(row.metadata(), meta):
            result.wrong_metadata.append(pid)
        if meta.get("content_hash") != content_hash(embedder.model_id, row.embedding_text()):
            result.wrong_hash.append(pid)
        chunks = held[pid].chunks
        expected = [content_hash(embedder.model_id, chunk.text) for chunk in texts[pid]]
        found = [chunks[n].get("chunk_hash", chunks[n].get("content_hash")) for n in sorted(chunks)]
        if sorted(chunks) != list(range(len(expected))) or found != expected or not held[pid].complete:
            result.wrong_chunks.append(pid)
    for pid, (version, digest, status) in sorted(ledger.items()):
        first = stored.get(pid)
        holds = first is not None and (int(first["version"]), first.get("content_hash")) == (version, digest)
        if (status == "indexed" and not holds) or (status == "deleted" and first is not None):
            result.ledger_drift.append(pid)

    both = sorted(set(rows) & set(stored))
    chosen = random.Random(seed).sample(both, min(sample, len(both)))
    if chosen:
        vectors = index.fetch_vectors(chosen)
        fresh = embedder.embed([texts[pid][0].text for pid in chosen])
        for pid, vector in zip(chosen, fresh, strict=True):
            if pid not in vectors or _cosine(vectors[pid], vector) < SAME_VECTOR_COSINE:
                result.wrong_vector.append(pid)
        result.vectors_checked = len(chosen)
    return result


def _same_metadata(expected: dict[str, Any], stored: dict[str, Any]) -> bool:
    for key, value in expected.items():
        if key == "product_id" and key not in stored:
            continue  # pgvector keeps the id as the key, not as a metadata field
        if key == "price":
            if not math.isclose(float(stored.get(key, math.nan)), float(value), abs_tol=1e-6):
                return False
        elif stored.get(key) != value:
            return False
    return True


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
