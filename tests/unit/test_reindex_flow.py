"""The re-index start decision, as a table: which generation serves the configured embedder."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from refarch.generations import EmbedderSpec, Generation, GenerationError
from refarch.reindex_flow import decide_start

SMALL = EmbedderSpec("openai", "text-embedding-3-small", 1536)
LARGE = EmbedderSpec("openai", "text-embedding-3-large", 3072)
SMALL_512 = EmbedderSpec("openai", "text-embedding-3-small", 512)


def generation(gid: int, status: Any, spec: EmbedderSpec, target: dict[str, Any] | None = None) -> Generation:
    return Generation(
        id=gid,
        status=status,
        embedder=spec,
        model_id=f"{spec.kind}:{spec.model}:{spec.dimensions}",
        dimension=spec.dimensions,
        backend="pinecone",
        target=target or {"index_name": "refarch-products", "host": "h", "namespace": "products"},
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        activated_at=None,
        retired_at=None,
    )


ACTIVE = generation(1, "active", SMALL)
BUILDING_LARGE = generation(2, "building", LARGE)

START_CASES = [
    # (case, building generation, configured embedder, the generation that serves it: None = create one)
    ("the active generation uses it: nothing to do", None, SMALL, ACTIVE),
    ("the active generation uses it, another builds: nothing to do", BUILDING_LARGE, SMALL, ACTIVE),
    ("a new model, nothing building: create", None, LARGE, None),
    ("a new model, already building: resume it", BUILDING_LARGE, LARGE, BUILDING_LARGE),
    ("the same model at another dimension is another embedder: create", None, SMALL_512, None),
]


@pytest.mark.parametrize(("case", "building", "spec", "expected"), START_CASES, ids=[c[0] for c in START_CASES])
def test_start_decision(case: str, building: Generation | None, spec: EmbedderSpec, expected: Generation | None):
    # Given the active generation (small model), maybe a building one, and the configured embedder
    # When the start step decides, Then it reports the generation of the table
    assert decide_start(ACTIVE, building, spec) == expected


def test_a_third_model_while_one_builds_is_refused_with_what_to_do():
    # Given the large model building, When the configuration names a third one, Then it is refused with the way out
    with pytest.raises(GenerationError, match=r'generation 2 .* is building.*\{"action": "abort"\}'):
        decide_start(ACTIVE, BUILDING_LARGE, SMALL_512)
