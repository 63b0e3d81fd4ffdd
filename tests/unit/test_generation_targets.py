"""Where a new index generation's vectors go (refarch.generations.placement.default_target): a table of cases."""

from __future__ import annotations

import pytest

from refarch.generations import GenerationError
from refarch.generations.placement import default_target
from refarch.index.pinecone_indexes import MAX_NAME_LENGTH, generation_index_name
from refarch.index.vector_target import PgVectorTable, PineconeNamespace
from refarch.settings import Settings


def pinecone_settings(**extra: str) -> Settings:
    return Settings(vector_backend="pinecone", pinecone_api_key="k", **extra)


@pytest.mark.parametrize(
    ("configured_dimension", "named", "expected"),
    [
        # The configured index holds this dimension (or nothing was written to it yet): a namespace in it
        (64, None, PineconeNamespace(index_name="products-idx", host=None, namespace="products-g3")),
        (None, None, PineconeNamespace(index_name="products-idx", host=None, namespace="products-g3")),
        # Another dimension: an index of its own, named after the configured one, created and dropped by re-index
        (
            384,
            None,
            PineconeNamespace(index_name="products-idx-g3", host=None, namespace="products-g3", dedicated=True),
        ),
        # An index named by the operator: used (created if missing), never deleted by gc
        (384, "my-index", PineconeNamespace(index_name="my-index", host=None, namespace="products-g3")),
        (384, "products-idx", PineconeNamespace(index_name="products-idx", host=None, namespace="products-g3")),
    ],
)
def test_a_pinecone_generation_goes_where_its_dimension_fits(configured_dimension, named, expected):
    settings = pinecone_settings(pinecone_index_name="products-idx")
    target = default_target(settings, 3, dimension=64, configured_dimension=configured_dimension, pinecone_index=named)
    assert target == expected


def test_a_pgvector_generation_gets_a_table_of_its_own():
    settings = Settings(vector_backend="pgvector")
    assert default_target(settings, 1, dimension=64) == PgVectorTable(table="product_vectors")
    assert default_target(settings, 4, dimension=64, configured_dimension=384) == PgVectorTable(
        table="product_vectors_g4"
    )


def test_another_dimension_with_no_index_name_to_derive_from_is_refused_with_advice():
    settings = pinecone_settings(pinecone_host="http://127.0.0.1:1")
    with pytest.raises(GenerationError, match="holds 384-d vectors and the new model produces 64-d.*--pinecone-index"):
        default_target(settings, 2, dimension=64, configured_dimension=384)


def test_a_generation_index_name_stays_within_pinecone_limits():
    assert generation_index_name("refarch-dev-products", 2) == "refarch-dev-products-g2"
    long = generation_index_name("a" * 40 + "-bcdef", 12)
    assert long == "a" * 40 + "-g12" and len(long) <= MAX_NAME_LENGTH  # cut at 41, the dangling "-" dropped
