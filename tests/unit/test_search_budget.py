"""A search's provider budget: at most one retry, and no attempt that cannot finish within the budget."""

from __future__ import annotations

import threading

import pytest

from refarch.search.budget import BudgetSpentError, Deadline, SemanticSlots
from refarch.serving import SEARCH_BUDGET, SearchBudget, layer_timeouts, web_command


class Clock:
    """A clock that moves only when an attempt says how long it took."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowProvider:
    """Each call takes `seconds` on the clock, then fails with `error` (or answers)."""

    def __init__(self, clock: Clock, seconds: float, error: Exception | None) -> None:
        self.clock, self.seconds, self.error, self.calls = clock, seconds, error, 0

    def __call__(self) -> str:
        self.calls += 1
        self.clock.now += self.seconds
        if self.error is not None:
            raise self.error
        return "answer"


BUDGET = SearchBudget(attempt_seconds=1.0, total_seconds=2.5, retries=1)


def test_a_failed_call_is_retried_once_then_its_error_is_raised() -> None:
    # Given a provider that fails quickly every time
    clock = Clock()
    provider = SlowProvider(clock, 0.1, ConnectionError("refused"))
    # When a call is made within the budget
    with pytest.raises(ConnectionError):
        Deadline(BUDGET, clock=clock).call(provider, retryable=lambda err: True, what="embedding")
    # Then it was tried twice: once, and one retry
    assert provider.calls == 2


def test_an_error_that_is_not_retryable_is_raised_at_once() -> None:
    clock = Clock()
    provider = SlowProvider(clock, 0.1, ValueError("our bug"))
    with pytest.raises(ValueError):
        Deadline(BUDGET, clock=clock).call(provider, retryable=lambda err: False, what="embedding")
    assert provider.calls == 1


def test_no_attempt_starts_unless_a_whole_one_fits_in_what_is_left() -> None:
    # Given a search whose embedding took 1.6 s of its 2.5 s budget
    clock = Clock()
    deadline = Deadline(BUDGET, clock=clock)
    SlowProvider(clock, 1.6, None)()
    provider = SlowProvider(clock, 0.1, None)
    # When the vector query would start with 0.9 s left (an attempt may take 1 s)
    with pytest.raises(BudgetSpentError, match="search budget"):
        deadline.call(provider, retryable=lambda err: True, what="vector query")
    # Then it was never sent
    assert provider.calls == 0


def test_two_calls_that_time_out_stay_within_the_budget() -> None:
    # Given providers that each time out after a whole attempt
    clock = Clock()
    started = clock.now
    deadline = Deadline(BUDGET, clock=clock)
    embed = SlowProvider(clock, 0.4, None)
    query = SlowProvider(clock, BUDGET.attempt_seconds, TimeoutError("timed out"))
    # When the embedding answers and the vector query times out, retried while an attempt fits
    assert deadline.call(embed, retryable=lambda err: True, what="embedding") == "answer"
    with pytest.raises((TimeoutError, BudgetSpentError)):
        deadline.call(query, retryable=lambda err: True, what="vector query")
    # Then the providers held the search no longer than the budget
    assert clock.now - started <= BUDGET.total_seconds
    assert query.calls == 2


def test_each_layer_waits_longer_than_the_one_inside_it() -> None:
    # Given the layers from the provider attempt out to gunicorn's worker timeout
    limits = [seconds for _, seconds in layer_timeouts()]
    # Then each is longer than the one before, and the command gunicorn runs carries the same numbers
    assert limits == sorted(limits) and len(set(limits)) == len(limits)
    command = web_command()
    assert float(command[command.index("--timeout") + 1]) == limits[-1]
    assert SEARCH_BUDGET.attempt_seconds * (1 + SEARCH_BUDGET.retries) <= SEARCH_BUDGET.total_seconds


def test_a_search_without_a_slot_answers_at_once_when_the_holders_are_stuck() -> None:
    # Given the only slot held by a search that has waited on a provider for longer than a healthy one takes
    clock = Clock()
    slots = SemanticSlots(1, wait_seconds=30.0, stuck_after_seconds=0.5, clock=clock)
    with slots.slot() as held:
        assert held
        clock.now += 0.6
        # When another search asks for a slot, Then it gets none, without waiting the 30 s it could
        with slots.slot() as other:
            assert not other
    # And once the slot is free again, the next search gets it
    with slots.slot() as later:
        assert later


def test_a_search_waits_briefly_for_a_slot_held_by_a_healthy_search() -> None:
    # Given the only slot held by a search that started just now, and released by it soon after
    slots = SemanticSlots(1, wait_seconds=30.0, stuck_after_seconds=30.0)
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with slots.slot():
            taken.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    taken.wait(5)
    threading.Timer(0.05, release.set).start()
    # When another search asks for a slot, Then it waits for the holder and gets it
    with slots.slot() as got:
        assert got
    thread.join()
