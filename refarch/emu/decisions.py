"""What Emu does for one product: a pure function of the row, its ledger entry, the model and the flags.

No database, no provider, no index: `Emu` reads the inputs, asks `decide`, and carries the answer
out. The table of cases lives in tests/unit/test_emu_decisions.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from refarch.emu.ledger import LedgerEntry
from refarch.source.rows import SourceRow


class Action(StrEnum):
    """One product's fate in a chunk."""

    SKIP = "skip"  # the index already holds this version (or this delete)
    METADATA = "metadata"  # same text, newer row (a price change): update the stored metadata only
    EMBED = "embed"  # new or changed text, a failed earlier attempt, or a forced repair: embed and upsert
    DELETE = "delete"  # the row is gone: remove its vector


@dataclass(frozen=True)
class Decision:
    """The action, and the content hash the ledger records with it (None for deletes and skipped deletes)."""

    action: Action
    content_hash: str | None = None


def content_hash(model_id: str, text: str) -> str:
    """Hash of exactly what is embedded, and by which model: equal hash = same vector."""
    return hashlib.sha256(f"{model_id}\n{text}".encode()).hexdigest()


def decide(row: SourceRow | None, entry: LedgerEntry | None, model_id: str, *, force: bool = False) -> Decision:
    """What to do so the index holds `row` (or nothing, when it is gone), given what the ledger says it holds.

    The ledger never lets work go backwards: a version it already holds is skipped, unchanged text is
    never embedded again (only its metadata follows), and `force` (a repair of a vector changed behind
    the system's back) re-does the work whatever the ledger says.
    """
    if row is None:
        if entry is not None and entry.status == "deleted" and not force:
            return Decision(Action.SKIP)
        return Decision(Action.DELETE)
    digest = content_hash(model_id, row.embedding_text())
    same_text = entry is not None and entry.status == "indexed" and entry.content_hash == digest
    if not same_text or force or entry is None:
        return Decision(Action.EMBED, digest)
    if entry.indexed_version >= row.version:
        return Decision(Action.SKIP, digest)
    return Decision(Action.METADATA, digest)
