"""Dead letters, the decisions: what a dead-lettered message names, why it failed, what a discard marks
failed, and a redriven FIFO copy's deduplication id. Pure functions over values; the effects (SQS, the
ledger) are in `refarch.lanes.dead_letters`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from refarch.lanes.messages import AnyMessage, WorkItem, parse_message
from refarch.lanes.topology import LaneName


@dataclass(frozen=True)
class ReceivedLetter:
    """A DLQ message as SQS returned it, with what a redrive or discard needs to act on it."""

    id: str
    body: str
    receipt_handle: str
    receive_count: int
    sent_at: datetime
    group_id: str | None = None
    deduplication_id: str | None = None

    @classmethod
    def from_sqs(cls, message: dict[str, Any]) -> ReceivedLetter:
        """From one entry of ReceiveMessage's `Messages` (asked with AttributeNames=All)."""
        attrs = message.get("Attributes", {})
        return cls(
            id=message["MessageId"],
            body=message.get("Body", ""),
            receipt_handle=message["ReceiptHandle"],
            receive_count=int(attrs.get("ApproximateReceiveCount", 0)),
            sent_at=datetime.fromtimestamp(int(attrs.get("SentTimestamp", 0)) / 1000, UTC),
            group_id=attrs.get("MessageGroupId"),
            deduplication_id=attrs.get("MessageDeduplicationId"),
        )


@dataclass(frozen=True)
class LedgerView:
    """What the ledger (active generation) says of one product: its status, version and last error."""

    status: str
    indexed_version: int
    last_error: str | None


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message as an operator sees it: what it names, why it failed, how old it is."""

    id: str
    lane: LaneName
    products: list[int]
    reason: str
    malformed: bool
    receive_count: int
    sent_at: datetime
    age_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the CLI's --json and the web API)."""
        return {
            "id": self.id,
            "lane": self.lane,
            "products": self.products,
            "reason": self.reason,
            "malformed": self.malformed,
            "receive_count": self.receive_count,
            "sent_at": self.sent_at.isoformat(),
            "age_seconds": round(self.age_seconds, 1),
        }


def describe(
    letter: ReceivedLetter, lane: LaneName, ledger_views: dict[int, LedgerView], *, now: datetime
) -> DeadLetter:
    """A received message as an operator sees it, its reason taken from the ledger (or the parser)."""
    try:
        message = parse_message(letter.body)
    except ValueError as err:
        return _letter(letter, lane, [], f"Emu could not read this message ({err})", malformed=True, now=now)
    work = message.work()
    return _letter(letter, lane, [item.product_id for item in work], reason_for(work, ledger_views), now=now)


def _letter(
    letter: ReceivedLetter, lane: LaneName, products: list[int], reason: str, *, now: datetime, malformed: bool = False
) -> DeadLetter:
    return DeadLetter(
        id=letter.id,
        lane=lane,
        products=products,
        reason=reason,
        malformed=malformed,
        receive_count=letter.receive_count,
        sent_at=letter.sent_at,
        age_seconds=max(0.0, (now - letter.sent_at).total_seconds()),
    )


def reason_for(work: Sequence[WorkItem], ledger_views: dict[int, LedgerView]) -> str:
    """Why a message's products failed, as Emu recorded it; else what the ledger says of them now.

    A bulk message names up to 100 products and fails when one did: the reason names the failed ones only.
    """
    failed = [
        f"product {item.product_id}: {view.last_error}"
        for item in work
        if (view := ledger_views.get(item.product_id)) is not None and view.status == "failed" and view.last_error
    ]
    if failed:
        return "; ".join(failed)
    if work and all(is_done(item, ledger_views.get(item.product_id)) for item in work):
        return "no failure recorded: the index has caught up with it since (redrive or discard: both are harmless)"
    return "no failure recorded for its products (Emu failed before it could record one: see Emu's log)"


def is_done(item: WorkItem, view: LedgerView | None) -> bool:
    """Whether the index already holds what this item asked for (a later message, or a redrive, did it)."""
    if view is None:
        return False
    return view.status == "deleted" or (view.status == "indexed" and view.indexed_version >= item.version)


def to_mark_failed(work: Sequence[WorkItem], ledger_views: dict[int, LedgerView]) -> list[int]:
    """The products a discarded message leaves unindexed: all it names except those the index caught up with."""
    return sorted({item.product_id for item in work if not is_done(item, ledger_views.get(item.product_id))})


def redrive_deduplication_id(letter: ReceivedLetter) -> str:
    """A FIFO deduplication id for a redriven copy: new (the original's may still be inside the queue's
    five-minute deduplication window, and SQS would drop the copy), yet the same for every attempt to
    redrive this DLQ message, so a redrive retried after a failure does not send it twice."""
    original = letter.deduplication_id or ""
    candidate = f"{original}-redrive-{letter.id}"
    if len(candidate) <= 128:  # SQS's limit
        return candidate
    return f"redrive-{hashlib.sha256(candidate.encode()).hexdigest()}"


def work_of(letter: ReceivedLetter) -> list[WorkItem]:
    """The products a message names (none when it cannot be parsed)."""
    try:
        message: AnyMessage = parse_message(letter.body)
    except ValueError:
        return []
    return message.work()
