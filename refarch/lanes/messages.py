"""The one message contract between producers (Pelican, reconcile) and the consumer (Emu).

Messages carry ids and versions, never row data: Emu re-reads the row, so the latest state
wins and a message can be duplicated, delayed or reordered without harm.

Two schema versions, one per lane (docs/emu.md):

- version 1, `SyncMessage`: one product, sent to the live lane (SQS FIFO, group = product id).
- version 2, `BulkSyncMessage`: up to `BULK_MESSAGE_MAX_ITEMS` products, sent to the bulk lane
  (SQS standard queue) by the bootstrap, reconcile repairs and large outbox backlogs.

`parse_message` reads both (a body without `schema_version` is version 1, as every message
written before version 2 existed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

SCHEMA_VERSION: Final = 1
BULK_SCHEMA_VERSION: Final = 2
# 100 items are ~4 KB of JSON: far inside SQS's 256 KiB message limit, and a 10,000-row
# bootstrap becomes 100 messages (10 SendMessageBatch calls).
BULK_MESSAGE_MAX_ITEMS: Final = 100

SyncOp = Literal["insert", "update", "delete", "sync"]
BulkSource = Literal["bootstrap", "repair", "backlog"]


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

    def work(self) -> list[WorkItem]:
        """The one product this message names."""
        return [WorkItem(self.product_id, self.version, self.op, self.force, self.changed_at)]


class BulkItem(BaseModel):
    """One product of a bulk message: its id, the version it was at, and what happened to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: int = Field(gt=0)
    version: int = Field(ge=1)
    # Informative only: Emu re-reads the row, so a missing row is deleted whatever `op` says.
    op: SyncOp = "sync"


class BulkSyncMessage(BaseModel):
    """Many products to bring up to date (bulk lane); each is handled as a `SyncMessage` would be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[2] = BULK_SCHEMA_VERSION
    items: list[BulkItem] = Field(min_length=1, max_length=BULK_MESSAGE_MAX_ITEMS)
    source: BulkSource
    changed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    force: bool = False

    def work(self) -> list[WorkItem]:
        """Every product this message names."""
        return [WorkItem(i.product_id, i.version, i.op, self.force, self.changed_at) for i in self.items]


@dataclass(frozen=True)
class WorkItem:
    """One product named by a message, whichever schema carried it."""

    product_id: int
    version: int
    op: str
    force: bool
    changed_at: datetime


AnyMessage = SyncMessage | BulkSyncMessage


def _schema_tag(value: Any) -> str:
    """The body's schema version as a tag; none given means version 1 (bodies older than version 2)."""
    if isinstance(value, dict):
        return str(value.get("schema_version", SCHEMA_VERSION))
    return str(getattr(value, "schema_version", SCHEMA_VERSION))


_ANY_MESSAGE: TypeAdapter[AnyMessage] = TypeAdapter(
    Annotated[
        Annotated[SyncMessage, Tag("1")] | Annotated[BulkSyncMessage, Tag("2")],
        Discriminator(_schema_tag),
    ]
)


def parse_message(body: str) -> AnyMessage:
    """Parse a body of either schema version; raises ValueError with a readable reason if malformed."""
    try:
        return _ANY_MESSAGE.validate_json(body)
    except (ValidationError, ValueError, TypeError) as err:
        reason = err.errors(include_url=False) if isinstance(err, ValidationError) else str(err)
        raise ValueError(f"malformed message: {reason}") from err


def bulk_messages(
    items: Iterable[tuple[int, int, str]],
    *,
    source: BulkSource,
    force: bool = False,
    changed_at: datetime | None = None,
    per_message: int = BULK_MESSAGE_MAX_ITEMS,
) -> list[BulkSyncMessage]:
    """Group (product_id, version, op) work items into bulk messages of at most `per_message` items."""
    if not 1 <= per_message <= BULK_MESSAGE_MAX_ITEMS:
        raise ValueError(f"per_message must be 1..{BULK_MESSAGE_MAX_ITEMS}, got {per_message}")
    when = changed_at or datetime.now(UTC)
    listed = [BulkItem(product_id=pid, version=version, op=op) for pid, version, op in items]  # type: ignore[arg-type]
    return [
        BulkSyncMessage(items=listed[start : start + per_message], source=source, force=force, changed_at=when)
        for start in range(0, len(listed), per_message)
    ]
