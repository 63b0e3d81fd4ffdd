"""The re-index start decision, as a table: which generation serves the configured embedder and vector index."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from refarch.generations import EmbedderSpec, Generation, GenerationError
from refarch.generations.placement import Placement
from refarch.generations.reindex_flow import decide_start
from refarch.index.vector_target import PgVectorTable, PineconeNamespace, VectorTarget
from refarch.settings import Settings

SMALL = EmbedderSpec("openai", "text-embedding-3-small", 1536)
LARGE = EmbedderSpec("openai", "text-embedding-3-large", 3072)
SMALL_512 = EmbedderSpec("openai", "text-embedding-3-small", 512)
TITAN = EmbedderSpec("bedrock", "amazon.titan-embed-text-v2:0", 1024)
TITAN_256 = EmbedderSpec("bedrock", "amazon.titan-embed-text-v2:0", 256)


def generation(
    gid: int, status: Any, spec: EmbedderSpec, target: VectorTarget | None = None, backend: Any = "pinecone"
) -> Generation:
    return Generation(
        id=gid,
        status=status,
        embedder=spec,
        model_id=f"{spec.kind}:{spec.model}:{spec.dimensions}",
        dimension=spec.dimensions,
        backend=backend,
        target=target or PineconeNamespace(index_name="refarch-products", host="h", namespace="products"),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        activated_at=None,
        retired_at=None,
    )


ACTIVE = generation(1, "active", SMALL)
BUILDING_LARGE = generation(2, "building", LARGE)
CONFIGURED = Placement("pinecone", "refarch-products")
# The same model moved: into pgvector, into another Pinecone index.
BUILDING_PGVECTOR = generation(2, "building", SMALL, PgVectorTable(table="product_vectors_g2"), backend="pgvector")
BUILDING_NEW_INDEX = generation(
    2, "building", SMALL, PineconeNamespace(index_name="products-v2", host="h2", namespace="p-g2")
)
# A model of another dimension that a re-index put in an index of its own beside the configured one.
ACTIVE_DEDICATED = generation(
    3,
    "active",
    LARGE,
    PineconeNamespace(index_name="refarch-products-g3", host="h3", namespace="products-g3", dedicated=True),
)
# A generation after the first, in its own namespace of the configured index.
ACTIVE_SECOND = generation(
    2, "active", SMALL, PineconeNamespace(index_name="refarch-products", host="h", namespace="products-g2")
)

START_CASES = [
    # (case, active, building, configured embedder, configured index, the generation serving them: None = create)
    ("the active generation uses it: nothing to do", ACTIVE, None, SMALL, CONFIGURED, ACTIVE),
    ("the active generation uses it, another builds: nothing to do", ACTIVE, BUILDING_LARGE, SMALL, CONFIGURED, ACTIVE),
    ("a new model, nothing building: create", ACTIVE, None, LARGE, CONFIGURED, None),
    ("a new model, already building: resume it", ACTIVE, BUILDING_LARGE, LARGE, CONFIGURED, BUILDING_LARGE),
    ("the same model at another dimension is another embedder: create", ACTIVE, None, SMALL_512, CONFIGURED, None),
    ("the same model, the backend moved to pgvector: create", ACTIVE, None, SMALL, Placement("pgvector"), None),
    ("the same model, another Pinecone index: create", ACTIVE, None, SMALL, Placement("pinecone", "products-v2"), None),
    ("a move to pgvector already building: resume it", ACTIVE, BUILDING_PGVECTOR, SMALL, Placement("pgvector"),
     BUILDING_PGVECTOR),
    ("a move to another index already building: resume it", ACTIVE, BUILDING_NEW_INDEX, SMALL,
     Placement("pinecone", "products-v2"), BUILDING_NEW_INDEX),
    ("the active one is in <configured>-g<id> (another dimension): nothing to do", ACTIVE_DEDICATED, None, LARGE,
     CONFIGURED, ACTIVE_DEDICATED),
    ("only a host configured (no index name): the same backend is enough", ACTIVE, None, SMALL,
     Placement("pinecone", None), ACTIVE),
    ("the configured index and namespace: nothing to do", ACTIVE, None, SMALL,
     Placement("pinecone", "refarch-products", "products"), ACTIVE),
    ("the same index, the stage's own namespace: create", ACTIVE, None, SMALL,
     Placement("pinecone", "refarch-products", "dev-products"), None),
    ("a generation after the first is in <namespace>-g<id>: nothing to do", ACTIVE_SECOND, None, SMALL,
     Placement("pinecone", "refarch-products", "products"), ACTIVE_SECOND),
    ("OpenAI to Bedrock (-c embedder=bedrock): create", ACTIVE, None, TITAN, CONFIGURED, None),
    ("Bedrock active and configured: nothing to do", generation(2, "active", TITAN), None, TITAN, CONFIGURED,
     generation(2, "active", TITAN)),
    ("Titan at another size is another embedder: create", generation(2, "active", TITAN), None, TITAN_256,
     CONFIGURED, None),
    ("Bedrock back to OpenAI: create", generation(2, "active", TITAN), None, SMALL, CONFIGURED, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "active", "building", "spec", "placement", "expected"), START_CASES, ids=[c[0] for c in START_CASES]
)
def test_start_decision(
    case: str,
    active: Generation,
    building: Generation | None,
    spec: EmbedderSpec,
    placement: Placement,
    expected: Generation | None,
):
    # Given the active generation, maybe a building one, and the configured embedder and vector index
    # When the start step decides, Then it reports the generation of the table
    assert decide_start(active, building, spec, placement) == expected


def test_a_third_model_while_one_builds_is_refused_with_what_to_do():
    # Given the large model building, When the configuration names a third one, Then it is refused with the way out
    with pytest.raises(GenerationError, match=r'generation 2 .* is building.*\{"action": "abort"\}'):
        decide_start(ACTIVE, BUILDING_LARGE, SMALL_512, CONFIGURED)
    # And so is a move to another index while a move to pgvector builds, naming both places
    with pytest.raises(
        GenerationError, match=r"pgvector table product_vectors_g2\) is building.* in pinecone index products-v2"
    ):
        decide_start(ACTIVE, BUILDING_PGVECTOR, SMALL, Placement("pinecone", "products-v2"))


def test_placement_from_the_settings_names_the_index_and_namespace_only_for_pinecone():
    # Given a Pinecone and a pgvector deployment
    pinecone = Settings(vector_backend="pinecone", pinecone_index_name="catalog", pinecone_namespace="dev-products")
    pgvector = Settings(vector_backend="pgvector", pinecone_index_name="catalog")
    # Then the placement names the index and the namespace only for Pinecone
    assert Placement.from_settings(pinecone) == Placement("pinecone", "catalog", "dev-products")
    assert Placement.from_settings(pgvector) == Placement("pgvector")
