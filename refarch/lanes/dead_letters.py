"""Dead letters an operator can act on: list them with the reason each failed, redrive, or discard.

The CLI (`refarch dlq ...`) and the page's status area (web/dead_letters.py) both use this module.

SQS has no peek: the only way to read a message is to receive it. Listing receives each DLQ
message with a short visibility timeout and makes it visible again at once (ChangeMessageVisibility
0). The costs of that, accepted because a DLQ holds few messages and only operators read it:
each listing adds one to the messages' ApproximateReceiveCount (a DLQ has no redrive policy of its
own, so nothing moves because of it); for the few seconds a listing runs, a concurrent redrive or
discard does not see those messages; and on the live lane's FIFO DLQ, a receive holds back a
product's further messages until the first ones are visible again, so a listing shows up to
`PEEK_BATCH` messages per product (`depth` still counts them all).

Where the reason comes from: when Emu gives up on a message, SQS's redrive policy moves it to the
DLQ as it is, without a reason. Emu recorded why in the ledger (`sync_state.last_error`, per
product and generation), so the listing joins each message's products with the ledger. A message
Emu could not parse has no products: its reason is the parser's (`parse_message`), found again here.

Redrive: on AWS, SQS's own message-move task (StartMessageMoveTask, DLQ to the lane's queue). moto's
server (the local runtime, the deploy rehearsal) does not implement it, so there this module moves
the messages itself: receive, send to the lane's queue, delete once sent; on the FIFO lane with the
message's group and a new deduplication id. The role needs the same actions either way.

Discard: the products a discarded message leaves unindexed are marked failed in the ledger, the
reason saying it was discarded and why it had failed, so each product's status says why it is not
indexed; only then is the message deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlparse

from refarch import generations
from refarch.db import Database
from refarch.emu import ledger
from refarch.lanes.dead_letter_decisions import (
    DeadLetter,
    LedgerView,
    ReceivedLetter,
    describe,
    redrive_deduplication_id,
    to_mark_failed,
    work_of,
)
from refarch.lanes.queues import SQS_BATCH, PartialSendError
from refarch.lanes.topology import LANE_NAMES, LaneName, is_fifo
from refarch.settings import Settings

# Seconds a listed message stays invisible if the lister dies before making it visible again.
PEEK_VISIBILITY_SECONDS = 30
# Messages a listing reads at most per lane (a DLQ that holds more needs a redrive or a discard first).
MAX_LISTED = 200
PEEK_BATCH = 10
DISCARDED = "discarded from the {lane} dead-letter queue"


class DeadLetterError(RuntimeError):
    """A dead-letter operation that cannot be done as asked (no such queue configured, unknown message ids)."""


@dataclass
class Listing:
    """A lane's dead letters: those read, and how many the DLQ holds (more than read when over MAX_LISTED)."""

    lane: LaneName
    depth: int
    letters: list[DeadLetter] = field(default_factory=list)


@dataclass
class RedriveResult:
    """What a redrive did: SQS's move task started (its handle), or the messages moved here, one by one."""

    lane: LaneName
    method: Literal["move-task", "moved", "nothing"]
    messages: int
    task_handle: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"lane": self.lane, "method": self.method, "messages": self.messages, "task_handle": self.task_handle}


@dataclass
class DiscardResult:
    """The messages deleted, the products marked failed because of it, and the ids not found in any DLQ."""

    discarded: list[DeadLetter] = field(default_factory=list)
    marked_failed: list[int] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "discarded": [letter.as_dict() for letter in self.discarded],
            "marked_failed": self.marked_failed,
            "not_found": self.not_found,
        }


# --- effects --------------------------------------------------------------------------------------


class DeadLetters:
    """Both lanes' dead-letter queues: list with reasons, redrive to the lane's queue, discard by id."""

    def __init__(
        self,
        sqs: Any,
        db: Database,
        urls: dict[LaneName, tuple[str, str]],
        *,
        use_move_task: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sqs = sqs
        self.db = db
        # {lane: (queue URL, DLQ URL)} for each lane whose queues are configured.
        self.urls = urls
        self.use_move_task = use_move_task
        self.clock = clock

    @classmethod
    def for_settings(cls, sqs: Any, db: Database, settings: Settings) -> DeadLetters:
        """The lanes the settings configure, redriven the way the client's SQS API can (`has_move_task`)."""
        urls: dict[LaneName, tuple[str, str]] = {}
        for lane in LANE_NAMES:
            queue_url, dlq_url = settings.known_queue_url(lane), settings.dlq_url(lane)
            if queue_url and dlq_url:
                urls[lane] = (queue_url, dlq_url)
        return cls(sqs, db, urls, use_move_task=has_move_task(sqs))

    def lanes(self, lane: LaneName | None = None) -> list[LaneName]:
        """The lanes asked for (all configured ones when None); DeadLetterError for an unconfigured one."""
        if lane is not None and lane not in self.urls:
            raise DeadLetterError(f"the {lane} lane's queue and dead-letter queue are not configured")
        if not self.urls:
            raise DeadLetterError("no dead-letter queue is configured (set the lanes' queue and DLQ URLs)")
        return [lane] if lane is not None else list(self.urls)

    def listings(self, lane: LaneName | None = None) -> list[Listing]:
        """Each lane's dead letters with their reasons, oldest first; the messages stay in the DLQ."""
        listings = []
        for name in self.lanes(lane):
            dlq_url = self.urls[name][1]
            with self._peeked(dlq_url) as received:
                letters = self._describe(received, name)
            listings.append(Listing(name, max(self._depth(dlq_url), len(letters)), letters))
        return listings

    def redrive(self, lane: LaneName | None = None) -> list[RedriveResult]:
        """Send each lane's dead letters back to its queue, for Emu to try again (after the cause is fixed)."""
        results = []
        for name in self.lanes(lane):
            queue_url, dlq_url = self.urls[name]
            waiting = self._depth(dlq_url)
            if self.use_move_task:
                if not waiting:
                    results.append(RedriveResult(name, "nothing", 0))
                    continue
                results.append(self._start_move_task(name, queue_url, dlq_url, waiting))
            else:
                moved = self._move(name, queue_url, dlq_url)
                results.append(RedriveResult(name, "moved" if moved else "nothing", moved))
        return results

    def discard(self, ids: Iterable[str], lane: LaneName | None = None) -> DiscardResult:
        """Delete these DLQ messages; their products the index has not caught up with are marked failed, with
        the reason, so their status says why they are not indexed. The ledger is written before the delete."""
        wanted = set(ids)
        result = DiscardResult()
        for name in self.lanes(lane):
            if not wanted:
                break
            dlq_url = self.urls[name][1]
            with self._peeked(dlq_url) as received:
                chosen = [letter for letter in received if letter.id in wanted]
                if not chosen:
                    continue
                result.discarded += self._mark_discarded(chosen, name, result)
                self._delete(dlq_url, [letter.receipt_handle for letter in chosen])
                wanted -= {letter.id for letter in chosen}
                received[:] = [letter for letter in received if letter not in chosen]
        result.not_found = sorted(wanted)
        return result

    # -- reading ---------------------------------------------------------------------------------

    @contextmanager
    def _peeked(self, dlq_url: str) -> Iterator[list[ReceivedLetter]]:
        """Receive up to MAX_LISTED messages, and make those still held visible again when done (also on error)."""
        received = self._receive_all(dlq_url, visibility=PEEK_VISIBILITY_SECONDS)
        try:
            yield received  # the caller removes the messages it deleted
        finally:
            self._release(dlq_url, [letter.receipt_handle for letter in received])

    def _receive_all(self, dlq_url: str, *, visibility: int, limit: int = MAX_LISTED) -> list[ReceivedLetter]:
        """Receive until the DLQ's visible messages are all held (or `limit`); oldest first."""
        expected = min(self._visible(dlq_url), limit)
        received: dict[str, ReceivedLetter] = {}
        while len(received) < expected:
            batch = self.sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=min(PEEK_BATCH, limit - len(received)),
                VisibilityTimeout=visibility,
                # A short long-poll: a short poll may sample only some of SQS's servers and answer empty.
                WaitTimeSeconds=1,
                AttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break  # the rest are held by someone else (or, on FIFO, behind a held message of their product)
            for message in batch:
                letter = ReceivedLetter.from_sqs(message)
                received[letter.id] = letter
        return sorted(received.values(), key=lambda letter: letter.sent_at)

    def _describe(self, received: list[ReceivedLetter], lane: LaneName) -> list[DeadLetter]:
        ids = {item.product_id for letter in received for item in work_of(letter)}
        views = self._ledger_views(ids)
        now = self.clock()
        return [describe(letter, lane, views, now=now) for letter in received]

    def _ledger_views(self, ids: Iterable[int]) -> dict[int, LedgerView]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        with self.db.transaction() as conn:
            return {
                pid: LedgerView(status, version, error)
                for pid, (status, version, error) in ledger.states(conn, wanted).items()
            }

    def _visible(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"])

    def _depth(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def _arn(self, url: str) -> str:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    # -- acting ----------------------------------------------------------------------------------

    def _start_move_task(self, lane: LaneName, queue_url: str, dlq_url: str, waiting: int) -> RedriveResult:
        """Start SQS's message-move task from the DLQ to the lane's queue; SQS runs one per queue at a time, so
        one already running (an earlier redrive) is reported instead of starting another."""
        source = self._arn(dlq_url)
        tasks = self.sqs.list_message_move_tasks(SourceArn=source, MaxResults=1).get("Results", [])
        running = [task for task in tasks if task.get("Status") == "RUNNING"]
        if running:
            left = int(running[0].get("ApproximateNumberOfMessagesToMove", waiting))
            return RedriveResult(lane, "move-task", left, running[0].get("TaskHandle"))
        # The destination is named (not left to "the original source"): a DLQ serves one lane's queue.
        task = self.sqs.start_message_move_task(SourceArn=source, DestinationArn=self._arn(queue_url))
        return RedriveResult(lane, "move-task", waiting, task["TaskHandle"])

    def _move(self, lane: LaneName, queue_url: str, dlq_url: str) -> int:
        """What SQS's move task does, for an SQS API without one: receive, send to the lane's queue, delete.

        A message is deleted only after the queue accepted its copy; a copy sent twice (a crash between
        send and delete) is harmless to Emu, and FIFO drops it by its deduplication id.
        """
        moved = 0
        while batch := self._receive_all(dlq_url, visibility=PEEK_VISIBILITY_SECONDS, limit=SQS_BATCH):
            entries = [self._copy(str(n), letter, lane) for n, letter in enumerate(batch)]
            response = self.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            sent = {ok["Id"] for ok in response.get("Successful", [])}
            accepted = [letter for n, letter in enumerate(batch) if str(n) in sent]
            self._release(dlq_url, [letter.receipt_handle for n, letter in enumerate(batch) if str(n) not in sent])
            self._delete(dlq_url, [letter.receipt_handle for letter in accepted])
            moved += len(accepted)
            if len(accepted) < len(batch):
                raise PartialSendError(f"{len(batch) - len(accepted)} dead letters refused: {response.get('Failed')}")
        return moved

    @staticmethod
    def _copy(key: str, letter: ReceivedLetter, lane: LaneName) -> dict[str, str]:
        entry = {"Id": key, "MessageBody": letter.body}
        if is_fifo(lane):
            # The product's group keeps its order with its other messages; a new deduplication id (see above).
            entry.update(
                MessageGroupId=letter.group_id or "redriven", MessageDeduplicationId=redrive_deduplication_id(letter)
            )
        return entry

    def _mark_discarded(self, chosen: list[ReceivedLetter], lane: LaneName, result: DiscardResult) -> list[DeadLetter]:
        """Describe the chosen messages and mark the products they leave unindexed failed, with the reason."""
        letters = self._describe(chosen, lane)
        views = self._ledger_views(p for letter in letters for p in letter.products)
        failures: dict[int, str] = {}
        for received, letter in zip(chosen, letters, strict=True):
            for pid in to_mark_failed(work_of(received), views):
                failures.setdefault(pid, f"{DISCARDED.format(lane=lane)}: {letter.reason}")
        if failures:
            with self.db.transaction() as conn:
                ledger.record_failed(conn, failures, generation=generations.active(conn).id)
            result.marked_failed += sorted(failures)
        return letters

    def _release(self, url: str, handles: Sequence[str]) -> None:
        self._batch(
            self.sqs.change_message_visibility_batch,
            url,
            [{"ReceiptHandle": h, "VisibilityTimeout": 0} for h in handles],
            "made visible again",
        )

    def _delete(self, url: str, handles: Sequence[str]) -> None:
        self._batch(self.sqs.delete_message_batch, url, [{"ReceiptHandle": h} for h in handles], "deleted")

    @staticmethod
    def _batch(call: Callable[..., Any], url: str, entries: list[dict[str, Any]], what: str) -> None:
        for start in range(0, len(entries), SQS_BATCH):
            chunk = [{"Id": str(n), **e} for n, e in enumerate(entries[start : start + SQS_BATCH])]
            refused = call(QueueUrl=url, Entries=chunk).get("Failed", [])
            if refused:
                raise PartialSendError(f"{len(refused)} of {len(chunk)} dead letters not {what}: {refused}")


def has_move_task(sqs: Any) -> bool:
    """Whether the client's SQS API is AWS's own (its endpoint under amazonaws.com), which runs message-move
    tasks. moto's server (the local runtime, the deploy rehearsal) does not implement StartMessageMoveTask:
    there the redrive is made by this module with single calls, to the same effect."""
    host = urlparse(str(sqs.meta.endpoint_url)).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
