"""One search's provider budget: the query embedding and the vector query share it, then search answers lexically.

Each provider call's client waits at most the budget's attempt time (the web process builds its
query-path clients that way: `Settings.query_path_settings`); a failed call is retried at most
`retries` times, and no attempt starts unless a whole one still fits in what is left. So the
providers hold a search for at most `total_seconds`, however slow they are (refarch.serving).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from refarch.serving import SEARCH_BUDGET, SearchBudget

T = TypeVar("T")


class BudgetSpentError(Exception):
    """Too little of the search budget was left to try a provider call (a slow provider, not a failing one)."""


class Deadline:
    """The time one search has left for its provider calls, started when the search is."""

    def __init__(self, budget: SearchBudget = SEARCH_BUDGET, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._ends = clock() + budget.total_seconds

    def remaining(self) -> float:
        """Seconds left (negative once spent)."""
        return self._ends - self._clock()

    def call(self, attempt: Callable[[], T], *, retryable: Callable[[Exception], bool], what: str) -> T:
        """`attempt()`, retried after a `retryable` failure up to the budget's retries, while a whole attempt fits.

        Raises BudgetSpentError when no (further) attempt fits, else the last attempt's own error.
        """
        failed = 0
        while True:
            if self.remaining() < self.budget.attempt_seconds:
                raise BudgetSpentError(
                    f"{what}: less than {self.budget.attempt_seconds:g} s of the {self.budget.total_seconds:g} s "
                    f"search budget left after {failed} failed attempt(s)"
                )
            try:
                return attempt()
            except Exception as err:
                if failed >= self.budget.retries or not retryable(err):
                    raise
                failed += 1


class SemanticSlots:
    """At most `count` searches of one process wait on the providers at once; the rest answer lexically.

    Fewer slots than the process has threads: a thread is always free for /healthz. A search that finds
    every slot taken waits up to `wait_seconds` for one while the holders look healthy (none has held
    its slot for `stuck_after_seconds`, longer than a healthy embedding and vector query take), so a burst
    of searches on healthy providers queues briefly instead of losing its semantic ranking; once a
    holder is stuck on a slow provider, the search answers lexically at once and the thread moves on.
    """

    def __init__(
        self,
        count: int,
        *,
        wait_seconds: float = 0.05,
        stuck_after_seconds: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = threading.BoundedSemaphore(count)
        self._held_since: dict[int, float] = {}
        self._lock = threading.Lock()
        self.wait_seconds = wait_seconds
        self.stuck_after_seconds = stuck_after_seconds
        self._clock = clock

    def _holders_stuck(self) -> bool:
        with self._lock:
            oldest = min(self._held_since.values(), default=None)
        return oldest is not None and self._clock() - oldest >= self.stuck_after_seconds

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Whether this search got a slot (held until the block ends)."""
        got = self._free.acquire(blocking=False)
        if not got and not self._holders_stuck():
            got = self._free.acquire(timeout=self.wait_seconds)
        if not got:
            yield False
            return
        token = object()
        with self._lock:
            self._held_since[id(token)] = self._clock()
        try:
            yield True
        finally:
            with self._lock:
                del self._held_since[id(token)]
            self._free.release()
