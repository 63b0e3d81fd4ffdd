"""One search's provider budget: the query embedding and the vector query share it, then search answers lexically.

Each provider call's client waits at most the budget's attempt time (the web process builds its
query-path clients that way: `Settings.query_path_settings`); a failed call is retried at most
`retries` times, and no attempt starts unless a whole one still fits in what is left. So the
providers hold a search for at most `total_seconds`, however slow they are (refarch.serving).
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
