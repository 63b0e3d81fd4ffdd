"""The rehearsal's summary: the core counts, and the counts of the parts plugged in.

Parts measured elsewhere contribute through `SummaryPart`: the IAM enforcement part
(`calls_checked`, `calls_denied`) and the migration upgrade part (`migrations_upgraded`). A part
not plugged in counts 0, so the summary always has every key `make rehearse` promises.
"""

from __future__ import annotations

from typing import Any, Protocol


class SummaryPart(Protocol):
    """A part of the rehearsal that contributes counts to the summary (IAM checks, migration upgrades)."""

    def counts(self) -> dict[str, int]:
        """Its counts, by summary key."""
        ...


SUMMARY_DEFAULTS = {"calls_checked": 0, "calls_denied": 0, "migrations_upgraded": 0}


def build_summary(core: dict[str, Any], parts: list[SummaryPart]) -> dict[str, Any]:
    """The summary: the core counts, the parts' counts over the defaults (0 for a part not plugged in)."""
    summary = {**core, **SUMMARY_DEFAULTS}
    for part in parts:
        summary.update(part.counts())
    return summary
