"""The one message contract between producers (Pelican) and the consumer (Emu).

Messages carry ids and versions, never row data: Emu re-reads the row, so the latest state
wins and a message can be duplicated, delayed or reordered without harm.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 1

SyncOp = Literal["insert", "update", "delete", "sync"]


class SyncMessage(BaseModel):
    """Product `product_id` changed (it is at `version` or later): bring the index up to date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    product_id: int = Field(gt=0)
    version: int = Field(ge=1)
    op: SyncOp
    source: Literal["change", "bootstrap", "repair"]
    outbox_id: int | None = None
    # When the change was committed (the outbox row's created_at): Emu reports sync lag from it.
    changed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # Re-embed even if the ledger says this content is indexed (repairs of corrupted vectors).
    force: bool = False

    @property
    def group_id(self) -> str:
        """FIFO message group: one product's messages are never processed concurrently."""
        return str(self.product_id)

    @property
    def deduplication_id(self) -> str:
        """FIFO deduplication id: product id + version (+ source for forced repairs)."""
        base = f"{self.product_id}-{self.version}"
        return f"{base}-repair-{int(self.changed_at.timestamp() * 1000)}" if self.force else base
