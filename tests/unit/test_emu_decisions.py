"""Emu's decision per product, as a table: row, ledger entry, model and force flag -> action."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from refarch.emu.decisions import Action, content_hash, decide
from refarch.emu.ledger import LedgerEntry
from refarch.products import Product

MODEL = "local:all-MiniLM-L6-v2"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def row(version: int = 3, description: str = "A kettle that boils fast.") -> Product:
    return Product(7, "KT-1", "Kettle", description, "kitchen", Decimal("19.99"), NOW, NOW, version)


def hash_of(product: Product, model: str = MODEL) -> str:
    return content_hash(model, product.embedding_text())


def entry(status: str, version: int, digest: str | None) -> LedgerEntry:
    return LedgerEntry(product_id=7, indexed_version=version, content_hash=digest, status=status, attempts=0)


CURRENT = hash_of(row())
OTHER_TEXT = hash_of(row(description="A kettle that whistles."))
OTHER_MODEL = hash_of(row(), model="openai:text-embedding-3-small:1536")

CASES = [
    # (case, row, ledger entry, force, action)
    ("new product, never indexed", row(), None, False, Action.EMBED),
    ("indexed at this version", row(), entry("indexed", 3, CURRENT), False, Action.SKIP),
    ("indexed at a later version (a stale message)", row(), entry("indexed", 4, CURRENT), False, Action.SKIP),
    ("same text, newer row: metadata only", row(version=4), entry("indexed", 3, CURRENT), False, Action.METADATA),
    ("text changed", row(version=4), entry("indexed", 3, OTHER_TEXT), False, Action.EMBED),
    ("same text embedded by another model", row(), entry("indexed", 3, OTHER_MODEL), False, Action.EMBED),
    ("an earlier attempt failed", row(), entry("failed", 3, CURRENT), False, Action.EMBED),
    ("re-inserted after a delete", row(version=1), entry("deleted", 4, None), False, Action.EMBED),
    ("forced repair of an indexed row", row(), entry("indexed", 3, CURRENT), True, Action.EMBED),
    ("row gone, never indexed", None, None, False, Action.DELETE),
    ("row gone, vector indexed", None, entry("indexed", 3, CURRENT), False, Action.DELETE),
    ("row gone, its delete failed before", None, entry("failed", 3, CURRENT), False, Action.DELETE),
    ("row gone, already deleted", None, entry("deleted", 4, None), False, Action.SKIP),
    ("row gone, already deleted, forced", None, entry("deleted", 4, None), True, Action.DELETE),
]


@pytest.mark.parametrize(("case", "product", "ledger_entry", "force", "action"), CASES, ids=[c[0] for c in CASES])
def test_decision(case: str, product: Product | None, ledger_entry: LedgerEntry | None, force: bool, action: Action):
    # Given a row (or none), what the ledger says the index holds, and the force flag
    # When Emu decides, Then it takes the action of the table
    decision = decide(product, ledger_entry, MODEL, force=force)
    assert decision.action is action
    # And the hash it records is the hash of the row's text under this model (none for deletes)
    assert decision.content_hash == (hash_of(product) if product is not None else None)
