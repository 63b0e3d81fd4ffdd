"""What gc may delete of a dropped generation's index, as a table: never what a live generation uses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from refarch.generations import EmbedderSpec, Generation
from refarch.generations.placement import IndexRemoval, removal_for
from refarch.index.vector_target import PgVectorTable, PineconeNamespace, VectorTarget

SPEC = EmbedderSpec("openai", "text-embedding-3-small", 512)


def generation(gid: int, status: Any, target: VectorTarget, backend: Any = "pinecone") -> Generation:
    return Generation(
        id=gid,
        status=status,
        embedder=SPEC,
        model_id="openai:text-embedding-3-small:512",
        dimension=512,
        backend=backend,
        target=target,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        activated_at=None,
        retired_at=None,
    )


def pinecone(index: str, namespace: str, *, dedicated: bool = False) -> PineconeNamespace:
    return PineconeNamespace(index_name=index, host=f"https://{index}", namespace=namespace, dedicated=dedicated)


# Generation 2 got an index of its own for another dimension (`refarch-dev-products-g2`).
DEDICATED = generation(2, "dropped", pinecone("refarch-dev-products-g2", "dev-products-g2", dedicated=True))
IN_CONFIGURED = generation(2, "dropped", pinecone("refarch-dev-products", "dev-products-g2"))
TABLE = generation(2, "dropped", PgVectorTable(table="product_vectors_g2"), backend="pgvector")
ACTIVE_ELSEWHERE = generation(1, "active", pinecone("refarch-dev-products", "dev-products"))

REMOVAL_CASES = [
    # (case, dropped generation, live generations, what gc deletes)
    ("a dedicated index nobody else uses: deleted whole", DEDICATED, [ACTIVE_ELSEWHERE],
     IndexRemoval("delete_index")),
    ("a dedicated index a live generation was placed in later: only its namespace", DEDICATED,
     [ACTIVE_ELSEWHERE, generation(3, "active", pinecone("refarch-dev-products-g2", "dev-products-g3"))],
     IndexRemoval("drop_own", kept_for=3)),
    ("... also when the live one is still building", DEDICATED,
     [generation(3, "building", pinecone("refarch-dev-products-g2", "dev-products-g3"))],
     IndexRemoval("drop_own", kept_for=3)),
    ("... or retired (kept for a rollback)", DEDICATED,
     [generation(3, "retired", pinecone("refarch-dev-products-g2", "dev-products-g3"))],
     IndexRemoval("drop_own", kept_for=3)),
    ("the same index known only by its host", DEDICATED,
     [generation(3, "active", PineconeNamespace(index_name=None, host="https://refarch-dev-products-g2",
                                              namespace="dev-products-g3"))],
     IndexRemoval("drop_own", kept_for=3)),
    ("a namespace in the configured index: only it", IN_CONFIGURED, [ACTIVE_ELSEWHERE], IndexRemoval("drop_own")),
    ("a namespace a live generation uses too: nothing", IN_CONFIGURED,
     [generation(4, "active", pinecone("refarch-dev-products", "dev-products-g2"))],
     IndexRemoval("nothing", kept_for=4)),
    ("a namespace of the same name in another index: only it", IN_CONFIGURED,
     [generation(4, "active", pinecone("refarch-prod-products", "dev-products-g2"))], IndexRemoval("drop_own")),
    ("a pgvector table: dropped", TABLE, [generation(1, "active", PgVectorTable(table="product_vectors"), "pgvector")],
     IndexRemoval("drop_own")),
    ("a pgvector table a live generation uses: nothing", TABLE,
     [generation(3, "active", PgVectorTable(table="product_vectors_g2"), "pgvector")],
     IndexRemoval("nothing", kept_for=3)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "dropped", "live", "expected"), REMOVAL_CASES, ids=[case[0] for case in REMOVAL_CASES]
)
def test_removal_decision(case: str, dropped: Generation, live: list[Generation], expected: IndexRemoval) -> None:
    # Given a dropped generation and the live ones, When gc decides what to delete, Then it spares what they use
    assert removal_for(dropped, live) == expected
