"""A product's failure is a value: Emu decides on its kind, people read its text."""

from __future__ import annotations

import pytest

from refarch.emu.failures import Failure, ProductFailure


@pytest.mark.parametrize(
    ("failure", "tried", "text"),
    [
        (ProductFailure(Failure.NOT_STARTED, "5.0 s left"), False, "not started: 5.0 s left"),
        (
            ProductFailure(Failure.EMBED, "RateLimitError: slow down"),
            True,
            "embed/upsert failed: RateLimitError: slow down",
        ),
        (ProductFailure(Failure.METADATA, "timeout"), True, "metadata update failed: timeout"),
        (ProductFailure(Failure.DELETE, "gone", generation=2), True, "generation 2: delete failed: gone"),
        # A detail that happens to read like another kind does not change the kind (no prefix tests).
        (
            ProductFailure(Failure.EMBED, "not started: by the provider"),
            True,
            "embed/upsert failed: not started: by the provider",
        ),
    ],
)
def test_a_failure_says_whether_anything_was_tried_and_reads_as_its_reason(failure, tried, text):
    # Given a failure / When it is asked / Then its kind decides, its text explains
    assert failure.tried is tried
    assert str(failure) == text
