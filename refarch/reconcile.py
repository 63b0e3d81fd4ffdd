"""Reconciliation: compare the database, the ledger and the vector index; report and repair drift.

Drift should never happen (the outbox and the ledger guarantee it); this is the safety net for
what they cannot see: vectors deleted or corrupted behind the system's back, a restored index
backup, a bug. Repairs go through the bulk lane as forced messages, so Emu stays the only
writer of the index and a large repair never delays a live edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from refarch.db import Connection, Database
from refarch.emu.worker import content_hash
from refarch.index.id_shards import SHARD_DIGITS, Shard
from refarch.index.port import HeldRow, VectorIndex, held_rows
from refarch.lanes.messages import bulk_messages
from refarch.lanes.queues import SyncQueue
from refarch.observability import logger

SAMPLE = 20
# Per shard in a Map result: 900 shards' results must stay inside Step Functions' 256 KB state.
SHARD_SAMPLE = 5


def plan_shards(db: Database) -> list[Shard]:
    """Shards covering every id the table or the ledger knows (and any the index holds beyond them)."""
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT greatest((SELECT max(id) FROM source_rows), (SELECT max(product_id) FROM sync_state), 1)")
        (highest,) = cur.fetchone() or (1,)
    length = max(1, len(str(highest)) - SHARD_DIGITS)
    shards = [Shard(prefix=str(p)) for p in range(10 ** (length - 1), 10**length)]
    if length > 1:
        shards.insert(0, Shard(below=10 ** (length - 1)))
    return shards


@dataclass
class DriftReport:
    """What differs between Postgres and the index (ids sorted; counts are exact)."""

    products: int = 0
    vectors: int = 0
    missing: list[int] = field(default_factory=list)  # row exists, vector does not
    extra: list[int] = field(default_factory=list)  # vector exists, row does not
    stale: list[int] = field(default_factory=list)  # vector's version or content hash differs from the row
    ledger_drift: list[int] = field(default_factory=list)  # ledger disagrees with the index
    repaired: int = 0

    KINDS = ("missing", "extra", "stale", "ledger_drift")

    @property
    def clean(self) -> bool:
        """True when the index equals the database."""
        return not (self.missing or self.extra or self.stale)

    def as_dict(self, sample: int = SAMPLE) -> dict[str, Any]:
        """Counts plus a sample of ids per kind of drift."""
        result: dict[str, Any] = {
            "products": self.products,
            "vectors": self.vectors,
            "clean": self.clean,
            "repaired": self.repaired,
        }
        for name in self.KINDS:
            ids = getattr(self, name)
            result[name] = len(ids)
            result[f"{name}_sample"] = ids[:sample]
        return result


def merge_reports(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from the shards' `as_dict` outputs (counts summed, samples joined)."""
    merged: dict[str, Any] = {"products": 0, "vectors": 0, "repaired": 0, "shards": len(parts)}
    for name in DriftReport.KINDS:
        merged[name] = sum(int(part[name]) for part in parts)
        merged[f"{name}_sample"] = sorted(pid for part in parts for pid in part[f"{name}_sample"])[:SAMPLE]
    for key in ("products", "vectors", "repaired"):
        merged[key] = sum(int(part[key]) for part in parts)
    merged["clean"] = not (merged["missing"] or merged["extra"] or merged["stale"])
    return merged


def text_superseded(conn: Connection) -> bool:
    """Whether the active generation was made from another text template than the definition's (a re-index is due)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT source_text IS NOT NULL AND source_text IS DISTINCT FROM current_source_text()"
            " FROM index_generations WHERE status = 'active'"
        )
        row = cur.fetchone()
    return bool(row and row[0])


def find_drift(db: Database, index: VectorIndex, model_id: str, shard: Shard | None = None) -> DriftReport:
    """Compare every product of the shard (default: all) with its vector (id, version, content hash) and the ledger.

    Memory grows with the shard's vectors only, as (id, version, hash) each, about 300 bytes in
    Python; products stream through a server-side cursor, descriptions included.
    """
    shard = shard or Shard()
    if shard.below:
        held = {pid: HeldRow({0: meta}) for pid, meta in index.fetch_metadata(list(range(1, shard.below))).items()}
    else:
        held = held_rows(index.scan(shard.prefix))
    vectors: dict[int, tuple[int, str | None]] = {
        pid: (int(row.first.get("version", -1)), row.first.get("content_hash")) for pid, row in held.items()
    }
    # A long text's chunks: a chunk missing, one past the end, or one of another version is drift too.
    torn = {pid for pid, row in held.items() if not row.complete}
    report = DriftReport(vectors=sum(len(row.chunks) for row in held.values()))
    seen: set[int] = set()
    ranges = shard.ranges()
    where = " OR ".join(["p.id BETWEEN %s AND %s"] * len(ranges))
    with db.transaction() as conn:
        # Made from an earlier text template while a re-index builds the new one: its vectors are kept
        # (refarch.emu.worker), so only ids and versions can be compared, not the text's hash.
        previous_text = text_superseded(conn)
    with db.transaction() as conn, conn.cursor(name="reconcile_products") as cur:
        cur.itersize = 5000
        cur.execute(
            "SELECT p.id, p.version, p.embedding_text, s.indexed_version, s.content_hash, s.status"
            " FROM source_rows p LEFT JOIN sync_state s ON s.product_id = p.id AND s.generation = active_generation()"
            f" WHERE {where} ORDER BY p.id",
            [bound for pair in ranges for bound in pair],
        )
        for pid, version, text, ledger_version, ledger_hash, status in cur:
            seen.add(pid)
            stored = vectors.get(pid)
            expected = content_hash(model_id, text)
            if stored is None:
                report.missing.append(pid)
            elif stored[0] != version or (stored[1] != expected and not previous_text) or pid in torn:
                report.stale.append(pid)
            if status == "indexed" and stored != (ledger_version, ledger_hash):
                report.ledger_drift.append(pid)
    report.products = len(seen)
    report.extra = sorted(set(vectors) - seen)
    return report


def repair(db: Database, queue: SyncQueue, report: DriftReport) -> int:
    """Enqueue forced syncs for every drifting product on the bulk lane; return how many products."""
    now = datetime.now(UTC)
    ids = sorted(set(report.missing) | set(report.stale) | set(report.extra) | set(report.ledger_drift))
    if not ids:
        return 0
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, version FROM source_rows WHERE id = ANY(%s)", (ids,))
        versions = dict(cur.fetchall())
        cur.execute(
            "SELECT product_id, indexed_version FROM sync_state WHERE product_id = ANY(%s)"
            " AND generation = active_generation()",
            (ids,),
        )
        ledger_versions = dict(cur.fetchall())
    work = [
        (pid, versions.get(pid) or ledger_versions.get(pid) or 1, "sync" if pid in versions else "delete")
        for pid in ids
    ]
    messages = bulk_messages(work, source="repair", force=True, changed_at=now)
    queue.send(messages)
    report.repaired = len(work)
    logger.info("reconcile repairs enqueued", extra={"products": len(work), "messages": len(messages)})
    return len(work)
