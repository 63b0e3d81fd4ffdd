"""Why Emu could not bring a product up to date: a small value, decided on by kind, read by people as text."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Failure(Enum):
    """What went wrong for a product (the value is how a reason starts in the ledger and the DLQ)."""

    NOT_STARTED = "not started"  # the invocation's time ran short before its chunk: nothing was tried
    EMBED = "embed/upsert failed"
    METADATA = "metadata update failed"
    DELETE = "delete failed"


@dataclass(frozen=True)
class ProductFailure:
    """One product's failure: its kind, what the provider or index said, and (during a re-index) the generation."""

    kind: Failure
    detail: str
    generation: int | None = None

    @property
    def tried(self) -> bool:
        """Whether anything was attempted: a message whose products were only left undone uses up no receive."""
        return self.kind is not Failure.NOT_STARTED

    def __str__(self) -> str:
        where = f"generation {self.generation}: " if self.generation is not None else ""
        return f"{where}{self.kind.value}: {self.detail}"
