"""PineconeIndex against the Pinecone stand-in: the real `pinecone` SDK v10 over real HTTP."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import httpx
import pinecone
import pytest

from refarch.index.pinecone_index import PineconeIndex
from refarch.index.port import DimensionMismatchError, SearchFilter, VectorRecord
from refarch_local.standins import PineconeStandIn

DIMENSION = 8
CATEGORIES = ("audio", "kitchen", "garden")


@pytest.fixture
def stand_in() -> Iterator[PineconeStandIn]:
    with PineconeStandIn(dimension=DIMENSION) as server:
        yield server


@pytest.fixture
def index(stand_in: PineconeStandIn) -> PineconeIndex:
    index = PineconeIndex(api_key=stand_in.api_key, dimension=DIMENSION, host=stand_in.url, namespace="products")
    index.ensure()
    return index


def record(pid: int, rng: random.Random) -> VectorRecord:
    values = [rng.uniform(-1, 1) for _ in range(DIMENSION)]
    return VectorRecord(
        pid,
        values,
        {
            "product_id": pid,
            "sku": f"S-{pid}",
            "name": f"Item {pid}",
            "category": CATEGORIES[pid % 3],
            "price": float(pid % 50) + 0.5,
            "version": 1,
            "content_hash": f"h{pid}",
        },
    )


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def raw(stand_in: PineconeStandIn, path: str, body: dict, *, key: str | None = None) -> httpx.Response:
    headers = {"Api-Key": key or stand_in.api_key, "X-Pinecone-Api-Version": "2026-07"}
    return httpx.post(f"{stand_in.url}{path}", json=body, headers=headers, timeout=5)


def test_upserts_go_in_request_sized_batches_and_scan_pages_through_everything(stand_in, index):
    # Given 250 vectors (more than one upsert request and more than one list page)
    rng = random.Random(1)
    records = [record(pid, rng) for pid in range(1, 251)]
    # When they are upserted
    index.upsert(records)
    # Then three upsert requests carried them, into our namespace
    assert stand_in.calls["upsert"] == 3
    assert index.count() == 250
    assert set(stand_in.namespaces) == {"products"}
    # And a scan walks every list page and fetches each id's metadata
    scanned = dict(index.scan())
    assert stand_in.calls["list"] == 3
    assert sorted(scanned) == list(range(1, 251))
    assert scanned[17]["content_hash"] == "h17"
    assert scanned[17]["version"] == 1


def test_query_filters_on_category_and_price_and_ranks_by_cosine(stand_in, index):
    # Given 60 vectors across three categories and many prices
    rng = random.Random(2)
    records = [record(pid, rng) for pid in range(1, 61)]
    index.upsert(records)
    query = [rng.uniform(-1, 1) for _ in range(DIMENSION)]
    wanted = SearchFilter(category="kitchen", min_price=10, max_price=30)
    # When querying with a filter
    matches = index.query(query, top_k=5, filter=wanted)
    # Then the SDK sent Pinecone's filter syntax with metadata requested
    _, request = stand_in.received[-1]
    assert request.body["filter"] == {"category": {"$eq": "kitchen"}, "price": {"$gte": 10, "$lte": 30}}
    assert request.body["includeMetadata"] is True
    # And the answer is exactly the brute-force top 5 of the admitted vectors, best first
    admitted = [r for r in records if r.metadata["category"] == "kitchen" and 10 <= r.metadata["price"] <= 30]
    expected = sorted(admitted, key=lambda r: -cosine(query, r.values))[:5]
    assert [m.id for m in matches] == [r.id for r in expected]
    assert [m.score for m in matches] == pytest.approx([cosine(query, r.values) for r in expected])
    assert all(m.metadata["category"] == "kitchen" for m in matches)


def test_metadata_update_changes_only_the_given_fields_and_keeps_the_vector(stand_in, index):
    rng = random.Random(3)
    original = record(5, rng)
    index.upsert([original])
    # When the price and version change (a metadata-only update)
    index.update_metadata({5: {**original.metadata, "price": 99.0, "version": 2}})
    # Then the stored metadata changed and the vector did not
    stored = stand_in.vectors("products")["5"]
    assert stored.metadata["price"] == 99.0
    assert stored.metadata["version"] == 2
    assert stored.metadata["sku"] == "S-5"
    assert stored.values == pytest.approx(original.values)


def test_numbers_come_back_as_floats_as_pinecone_stores_them(index):
    index.upsert([record(3, random.Random(4))])
    ((_, metadata),) = index.scan()
    assert metadata["version"] == 1
    assert isinstance(metadata["version"], float)


def test_delete_removes_vectors_and_ignores_absent_ids(index):
    rng = random.Random(5)
    index.upsert([record(pid, rng) for pid in (1, 2, 3)])
    index.delete([2, 404])
    assert sorted(pid for pid, _ in index.scan()) == [1, 3]
    index.delete([])
    assert index.count() == 2


def test_ensure_refuses_an_index_of_another_dimension_naming_both(stand_in):
    # Given a 8-d index and an embedder producing 384-d vectors
    index = PineconeIndex(api_key=stand_in.api_key, dimension=384, host=stand_in.url)
    # When the index is checked at start, Then the error names both sizes
    with pytest.raises(DimensionMismatchError, match="dimension 8 but the embedder produces 384-d"):
        index.ensure()


def test_a_wrong_api_key_is_refused(stand_in):
    index = PineconeIndex(api_key="not-the-key", dimension=DIMENSION, host=stand_in.url)
    with pytest.raises(pinecone.errors.UnauthorizedError):
        index.count()


def test_a_transient_500_is_retried_by_the_sdk(stand_in, index):
    stand_in.fail_next("server_error")
    index.upsert([record(1, random.Random(6))])
    assert stand_in.faults["server_error"] == 1
    assert index.count() == 1


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/vectors/upsert", {"vectors": [{"id": "1", "values": [0.1] * 3}]}, "Vector dimension 3 does not match"),
        ("/vectors/upsert", {"vectors": [{"id": "1", "values": [0.0] * DIMENSION}]}, "at least one non-zero"),
        (
            "/vectors/upsert",
            {"vectors": [{"id": "1", "values": [0.1] * DIMENSION, "metadata": {"a": None}}]},
            "unsupported value",
        ),
        ("/vectors/upsert", {"vectors": []}, "non-empty"),
        ("/vectors/upsert", {"vectors": [{"id": "", "values": [0.1] * DIMENSION}]}, "1-512 characters"),
        ("/query", {"topK": 3, "vector": [0.1] * DIMENSION, "filter": {"price": {"$near": 3}}}, "unknown filter"),
        ("/query", {"topK": 3, "vector": [0.1] * DIMENSION, "filter": {"price": {"$gte": "3"}}}, "takes a number"),
        ("/query", {"topK": 0, "vector": [0.1] * DIMENSION}, "topK"),
        ("/query", {"topK": 3}, "exactly one of vector or id"),
        ("/vectors/delete", {"namespace": "products"}, "exactly one of ids, deleteAll or filter"),
        ("/vectors/update", {"id": "1", "namespace": "products"}, "nothing to update"),
        ("/describe_index_stats", {"filter": {"a": 1}}, "does not support a filter"),
    ],
)
def test_malformed_requests_are_refused_with_a_message(stand_in, path, body, message):
    response = raw(stand_in, path, body)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_filters_support_the_operators_pinecone_documents(stand_in):
    # Given three vectors with varied metadata
    for pid, metadata in {
        "a": {"tag": ["x", "y"], "n": 1, "ok": True},
        "b": {"tag": ["y"], "n": 5},
        "c": {"n": 9, "ok": False},
    }.items():
        assert (
            raw(
                stand_in,
                "/vectors/upsert",
                {"vectors": [{"id": pid, "values": [1.0] * DIMENSION, "metadata": metadata}]},
            ).status_code
            == 200
        )

    def ids(query_filter: dict) -> list[str]:
        response = raw(stand_in, "/query", {"topK": 10, "vector": [1.0] * DIMENSION, "filter": query_filter})
        assert response.status_code == 200, response.text
        return sorted(m["id"] for m in response.json()["matches"])

    # Then each operator admits what Pinecone's documentation says it does
    assert ids({"tag": "y"}) == ["a", "b"]
    assert ids({"tag": {"$in": ["x"]}}) == ["a"]
    assert ids({"tag": {"$nin": ["x"]}}) == ["b", "c"]
    assert ids({"n": {"$gt": 1, "$lte": 9}}) == ["b", "c"]
    assert ids({"n": {"$ne": 5}}) == ["a", "c"]
    assert ids({"ok": {"$exists": True}}) == ["a", "c"]
    assert ids({"ok": {"$eq": True}}) == ["a"]
    assert ids({"n": {"$eq": 1}, "ok": True}) == ["a"]
    assert ids({"$or": [{"n": 1}, {"n": 9}]}) == ["a", "c"]
    assert ids({"$and": [{"n": {"$gte": 5}}, {"tag": {"$exists": False}}]}) == ["c"]


def test_each_created_index_has_a_data_plane_of_its_own_at_its_host_until_it_is_deleted(stand_in):
    # Given an index of another dimension created through the control plane
    pc = pinecone.Pinecone(api_key=stand_in.api_key, host=stand_in.url)
    schema = {"fields": {"_values": {"type": "dense_vector", "dimension": 3, "metric": "cosine"}}}
    host = pc.indexes.create(name="other", schema=schema).host
    assert host == f"{stand_in.url}/index/other"
    # When vectors are written at its host
    other = PineconeIndex(api_key=stand_in.api_key, dimension=3, host=host, namespace="products")
    other.ensure()
    other.upsert([VectorRecord(1, [1.0, 0.0, 0.0], {"version": 1})])
    # Then they are in that index only, checked against its dimension, not the stand-in's own
    assert list(stand_in.vectors("products", index="other")) == ["1"]
    assert stand_in.vectors("products") == {}
    with pytest.raises(pinecone.ApiError, match="dimension 8 does not match the dimension of the index 3"):
        other._index.upsert(vectors=[{"id": "2", "values": [0.5] * DIMENSION}], namespace="products")
    # And once the index is deleted its host answers 404
    pc.indexes.delete("other")
    with pytest.raises(pinecone.NotFoundError, match="index other not found"):
        other.upsert([VectorRecord(1, [1.0, 0.0, 0.0], {"version": 1})])
