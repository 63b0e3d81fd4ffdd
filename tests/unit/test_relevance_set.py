"""The relevance benchmark's labelled query set and metrics."""

from __future__ import annotations

import pytest

from refarch import catalog
from refarch_local.relevance import CLASSES, PER_CLASS, build_query_set, hit_at, load_query_set, ndcg


def test_the_stored_query_set_is_what_the_builder_makes_from_the_catalog():
    # Given the query set stored in the repository, When it is built again from the seed catalog
    stored = load_query_set()
    # Then they are the same (a change to the catalog or the builder must be stored with it)
    assert stored == build_query_set(stored["catalog_rows"])


def test_every_class_has_its_queries_and_judgements_follow_the_catalog():
    query_set = load_query_set()
    by_class = {cls: [q for q in query_set["queries"] if q["class"] == cls] for cls in CLASSES}
    # Then every class has its share of queries (rare words: as many as the catalog has), each with a highest
    # grade of 3
    counts = {cls: len(qs) for cls, qs in by_class.items()}
    assert 5 <= counts.pop("rare_word") <= PER_CLASS
    assert counts == dict.fromkeys(set(CLASSES) - {"rare_word"}, PER_CLASS)
    assert all(max(q["judgements"].values()) == 3 for q in query_set["queries"])
    # And every judged product is named by the SKU it has in the benchmark's catalog (after its changes)
    new_skus = {c["sku"]: c["new_sku"] for c in query_set["catalog_changes"]}
    seeded = (catalog.make_product(i) for i in range(1, query_set["catalog_rows"] + 1))
    products = {new_skus.get(p.sku, p.sku): p for p in seeded}
    assert all(sku in products for q in query_set["queries"] for sku in q["judgements"])
    # And a SKU query judges exactly that product relevant, a brand query only products of that brand
    for query in by_class["sku"]:
        assert query["judgements"] == {query["query"]: 3}
    for query in by_class["brand"]:
        top = [sku for sku, grade in query["judgements"].items() if grade == 3]
        assert top and all(query["query"].startswith(products[sku].brand) for sku in top)
        # (every product of the brand, a longer SKU or not, when the query is the brand alone)
        if query["query"] in {p.brand for p in products.values()}:
            assert set(top) == {sku for sku, p in products.items() if p.brand == query["query"]}


@pytest.mark.parametrize(
    ("ranked", "judgements", "expected"),
    [
        (["a", "b"], {"a": 3, "b": 1}, 1.0),  # the ideal order
        (["b", "a"], {"a": 3, "b": 1}, (1 + 7 / 1.5849625) / (7 + 1 / 1.5849625)),
        (["x", "y"], {"a": 3}, 0.0),  # nothing relevant found
        (["x", "a"], {"a": 3}, 1 / 1.5849625),  # found second
    ],
)
def test_ndcg_at_10_with_graded_gains(ranked, judgements, expected):
    assert ndcg(ranked, judgements) == pytest.approx(expected, rel=1e-6)


def test_the_exact_intent_classes_judge_the_product_the_catalog_changes_made():
    # Given the stored set and its catalog changes (longer SKUs, model codes at the end of names)
    query_set = load_query_set()
    changes = {c["new_sku"]: c for c in query_set["catalog_changes"]}
    for query in query_set["queries"]:
        top = [sku for sku, grade in query["judgements"].items() if grade == 3]
        # Then a SKU prefix is the start of its product's new SKU, a model code is in its product's new name
        if query["class"] == "sku_prefix":
            assert top[0].lower().startswith(query["query"].lower()) and top[0] != query["query"].upper()
        if query["class"] == "model_code":
            squeezed = changes[top[0]]["new_name"].replace("-", "").lower()
            assert query["query"].replace("-", "").lower() in squeezed
        if query["class"] == "sku_no_separators":
            assert top == [f"{query['query'][:2]}-{query['query'][2:]}".upper()]


def test_hit_at_1_needs_a_result_of_the_highest_grade_first():
    judgements = {"a": 3, "b": 1}
    assert hit_at(["a", "b"], judgements, cutoff=1)
    assert not hit_at(["b", "a"], judgements, cutoff=1)


def test_hits_at_3_needs_a_result_of_the_highest_grade_among_the_first_three():
    judgements = {"a": 3, "b": 1}
    assert hit_at(["x", "y", "a"], judgements)
    assert not hit_at(["b", "x", "y", "a"], judgements)
