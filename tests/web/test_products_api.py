"""POST/GET/PUT/DELETE /api/products against a real Postgres: validation, versions, conflicts, sync state."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from refarch import products
from refarch.products import MAX_DESCRIPTION_CHARS
from tests.integration.pelican_support import query, wait_for
from tests.web.conftest import Api, index_now

NEW = {
    "sku": "GA-9",
    "name": "Rain Barrel",
    "category": "garden",
    "price": "59.90",
    "description": "Collects rainwater from your gutter.",
}


def test_create_returns_the_stored_product_pending_with_its_location(api):
    # When a product is added
    response = api.post("/api/products", json=NEW)
    # Then it is stored as sent (price normalised), at version 1, pending, and readable at Location
    assert response.status_code == 201
    body = response.get_json()
    assert {k: body[k] for k in NEW} == NEW
    assert body["version"] == 1 and body["sync"]["status"] == "pending"
    assert response.headers["Location"] == f"/api/products/{body['id']}"
    assert api.get(response.headers["Location"]).get_json()["name"] == "Rain Barrel"


def test_price_may_be_a_json_number_and_description_may_be_omitted(api):
    response = api.post("/api/products", json={"sku": "GA-10", "name": "Trowel", "category": "garden", "price": 7})
    assert response.status_code == 201
    assert response.get_json()["price"] == "7.00" and response.get_json()["description"] == ""


def test_duplicate_sku_is_a_409_naming_the_field(api):
    assert api.post("/api/products", json=NEW).status_code == 201
    response = api.post("/api/products", json={**NEW, "name": "Another barrel"})
    assert response.status_code == 409
    assert "sku" in response.get_json()["fields"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"price": "abc"}, "price", "must be a number"),
        ({"price": -1}, "price", "cannot be negative"),
        ({"price": "1.234"}, "price", "at most 2 decimal places"),
        ({"price": "1e20"}, "price", "cannot be more than"),
        ({"price": True}, "price", "must be a number"),
        ({"name": "   "}, "name", "cannot be empty"),
        ({"name": 42}, "name", "must be text"),
        ({"category": ""}, "category", "cannot be empty"),
        # control characters only: str.strip would leave nothing, so they are no name (not a database error)
        ({"name": "\x1c\x1f"}, "name", "cannot be empty"),
        ({"sku": "\x1d"}, "sku", "cannot be empty"),
        ({"colour": "red"}, "colour", "not a product field"),
    ],
)
def test_invalid_fields_are_a_400_with_a_message_per_field(api, change, field, message):
    # When a product is sent with one bad field
    response = api.post("/api/products", json={**NEW, **change})
    # Then it is refused with that field's message, and nothing was stored
    assert response.status_code == 400
    assert message in response.get_json()["fields"][field]
    assert api.get("/api/products").get_json()["total"] == 0


def test_missing_required_fields_are_each_named(api):
    response = api.post("/api/products", json={"description": "just words"})
    assert response.status_code == 400
    assert set(response.get_json()["fields"]) == {"sku", "name", "category", "price"}


def test_oversized_description_is_a_400_naming_the_field(api):
    response = api.post("/api/products", json={**NEW, "description": "x" * (MAX_DESCRIPTION_CHARS + 1)})
    assert response.status_code == 400
    assert "limit is 100,000" in response.get_json()["fields"]["description"]
    # A description exactly at the limit is fine
    ok = api.post("/api/products", json={**NEW, "description": "x" * MAX_DESCRIPTION_CHARS})
    assert ok.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"data": "not json", "content_type": "application/json"},
        {"data": "sku=1&name=x", "content_type": "application/x-www-form-urlencoded"},
        {"json": ["a", "list"]},
        # nested deeper than the JSON parser recurses: its RecursionError is no 500
        {"data": "[" * 5000, "content_type": "application/json"},
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(api, body):
    response = api.post("/api/products", **body)
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]


def test_unknown_product_is_a_404_for_every_method(api):
    for response in (
        api.get("/api/products/999"),
        api.put("/api/products/999", json={"version": 1, "name": "x"}),
        api.delete("/api/products/999"),
        api.get(f"/api/products/{2**70}"),
        api.put(f"/api/products/{2**70}", json={"version": 1}),
    ):
        assert response.status_code == 404, response.get_json()
        assert "does not exist" in response.get_json()["error"]
    assert api.get("/api/products/not-a-number").status_code == 404


def test_update_changes_only_the_fields_sent_and_bumps_the_version(api, catalog):
    tent = catalog[2]
    response = api.put(f"/api/products/{tent.id}", json={"version": tent.version, "price": "199.99"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["price"] == "199.99" and body["name"] == tent.name and body["version"] == tent.version + 1
    assert body["sync"]["status"] == "pending"


def test_stale_version_is_a_409_with_the_current_product(api, catalog):
    # Given someone else saved the tent first
    tent = catalog[2]
    assert api.put(f"/api/products/{tent.id}", json={"version": tent.version, "name": "Tent v2"}).status_code == 200
    # When I save with the version I saw
    response = api.put(f"/api/products/{tent.id}", json={"version": tent.version, "name": "My tent"})
    # Then I am told clearly, shown their version, and their change survives
    assert response.status_code == 409
    body = response.get_json()
    assert "changed by someone else" in body["error"] and "reload" in body["error"]
    assert body["current"]["name"] == "Tent v2" and body["current"]["version"] == tent.version + 1
    assert api.get(f"/api/products/{tent.id}").get_json()["name"] == "Tent v2"


def test_two_saves_with_the_same_version_at_once_one_wins_and_the_other_is_a_409(app, catalog, dsn):
    # Given two people who loaded the tent at the same version, and the row briefly held by another writer
    tent = catalog[2]
    people = {name: Api(app.test_client()) for name in ("Tent by A", "Tent by B")}
    holder = psycopg2.connect(dsn)
    with holder.cursor() as cur:
        cur.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (tent.id,))
    # When both save with that version at the same moment: both requests are inside their UPDATE,
    # waiting on the row, before either can commit
    with ThreadPoolExecutor(2) as pool:
        saves = {
            name: pool.submit(person.put, f"/api/products/{tent.id}", json={"version": tent.version, "name": name})
            for name, person in people.items()
        }
        try:
            wait_for(lambda: web_requests_waiting_on_a_lock(dsn) == 2, 30, "both saves to wait on the row")
        finally:
            holder.rollback()
            holder.close()
        responses = {name: save.result(timeout=60) for name, save in saves.items()}
    # Then exactly one wins and the other is told it lost, shown the winner's product
    assert sorted(r.status_code for r in responses.values()) == [200, 409]
    (winner,) = [name for name, r in responses.items() if r.status_code == 200]
    (loser,) = [name for name, r in responses.items() if r.status_code == 409]
    assert responses[winner].get_json()["version"] == tent.version + 1
    current = responses[loser].get_json()["current"]
    assert (current["name"], current["version"]) == (winner, tent.version + 1)
    # And the stored row is the winner's, one version on
    stored = people[loser].get(f"/api/products/{tent.id}").get_json()
    assert (stored["name"], stored["version"]) == (winner, tent.version + 1)


def web_requests_waiting_on_a_lock(dsn: str) -> int:
    """Connections of the web app (the test runtime's application name) waiting on a lock."""
    (count,) = query(
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'refarch-web-test' AND wait_event_type = 'Lock'",
    )[0]
    return count


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (None, "is required"),
        ("two", "whole number"),
        (0, "out of range"),
        (1.5, "whole number"),
        (True, "whole number"),
    ],
)
def test_update_needs_a_valid_version(api, catalog, version, message):
    body = {"name": "Renamed"} if version is None else {"name": "Renamed", "version": version}
    response = api.put(f"/api/products/{catalog[0].id}", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["fields"]["version"]


def test_invalid_update_leaves_the_product_unchanged(api, catalog):
    skillet = catalog[1]
    response = api.put(f"/api/products/{skillet.id}", json={"version": 1, "price": "free", "name": ""})
    assert response.status_code == 400
    assert set(response.get_json()["fields"]) == {"price", "name"}
    assert api.get(f"/api/products/{skillet.id}").get_json()["price"] == "45.00"


def test_delete_removes_the_product(api, catalog):
    skillet = catalog[1]
    assert api.delete(f"/api/products/{skillet.id}").status_code == 204
    assert api.get(f"/api/products/{skillet.id}").status_code == 404
    assert api.delete(f"/api/products/{skillet.id}").status_code == 404


def test_delete_with_a_stale_version_is_refused(api, catalog):
    tent = catalog[2]
    api.put(f"/api/products/{tent.id}", json={"version": 1, "name": "Tent v2"})
    response = api.delete(f"/api/products/{tent.id}", query_string={"version": 1})
    assert response.status_code == 409
    assert api.get(f"/api/products/{tent.id}").status_code == 200


def test_sync_statuses_follow_an_edit_from_pending_to_indexed(api, runtime, indexed_catalog):
    # Given two indexed products, When one is edited and the other deleted
    earbuds, tent = indexed_catalog[4], indexed_catalog[2]
    url = f"/api/sync/statuses?ids={earbuds.id},{tent.id}"
    api.put(f"/api/products/{earbuds.id}", json={"version": earbuds.version, "description": "Now waterproof."})
    api.delete(f"/api/products/{tent.id}")
    # Then the edited one is pending and the deleted one is missing
    before = api.get(url).get_json()
    assert [(p["id"], p["status"]) for p in before["products"]] == [(earbuds.id, "pending")]
    assert before["missing"] == [tent.id]
    # When Emu has processed the change, Then it is indexed at the new version
    index_now(runtime, [earbuds.id])
    after = api.get(url).get_json()["products"][0]
    assert after["status"] == "indexed" and after["indexed_version"] == after["version"] == earbuds.version + 1


@pytest.mark.parametrize("ids", ["", "1,x", ",".join(["1"] * 201), "0", f"{2**64}"])
def test_sync_statuses_refuse_malformed_ids(client, ids):
    response = client.get("/api/sync/statuses", query_string={"ids": ids})
    assert response.status_code == 400
    assert "ids" in response.get_json()["fields"]


UNSTORABLE_TEXT = [
    pytest.param("Rain\x00Barrel", "NUL", id="nul"),
    pytest.param("Rain \ud800 Barrel", "unpaired surrogate", id="lone-surrogate"),
]


@pytest.mark.parametrize(("text", "message"), UNSTORABLE_TEXT)
@pytest.mark.parametrize("field", ["sku", "name", "category", "description"])
def test_text_postgres_cannot_store_is_a_400_naming_the_field(api, catalog, field, text, message):
    # When a product is added, or an existing one changed, with a NUL or a lone surrogate in one text field
    created = api.post("/api/products", json={**NEW, field: text})
    changed = api.put(f"/api/products/{catalog[0].id}", json={"version": catalog[0].version, field: text})
    # Then both are refused with that field's message (not a 500 from the database driver) and nothing changed
    for response in (created, changed):
        assert response.status_code == 400, response.get_json()
        assert message in response.get_json()["fields"][field]
    assert api.get("/api/products").get_json()["total"] == len(catalog)
    assert api.get(f"/api/products/{catalog[0].id}").get_json()["version"] == catalog[0].version


@pytest.mark.parametrize("version", ["1e400", "Infinity", "-Infinity"])
def test_an_infinite_version_is_a_400(api, catalog, version):
    # When the version is a JSON number too large for a float (it parses as infinity)
    response = api.put(
        f"/api/products/{catalog[0].id}",
        data=f'{{"version": {version}, "name": "Renamed"}}',
        content_type="application/json",
    )
    # Then it is refused as a malformed version, and the product is unchanged
    assert response.status_code == 400
    assert "whole number" in response.get_json()["fields"]["version"]
    assert api.get(f"/api/products/{catalog[0].id}").get_json()["name"] == catalog[0].name


def test_a_product_deleted_between_the_row_and_its_sync_state_is_a_404_or_left_out(api, catalog, dsn, monkeypatch):
    # Given products that another request deletes (and commits) right after this one read their rows
    victims = iter([catalog[0].id, catalog[1].id])
    real_sync_statuses = products.sync_statuses

    def deleted_meanwhile(conn, ids):
        other = psycopg2.connect(dsn)
        with other, other.cursor() as cur:
            cur.execute("DELETE FROM products WHERE id = %s", (next(victims),))
        other.close()
        return real_sync_statuses(conn, ids)

    monkeypatch.setattr(products, "sync_statuses", deleted_meanwhile)
    # When one is fetched, Then the answer is a 404, not a 500 from a product without its sync state
    assert api.get(f"/api/products/{catalog[0].id}").status_code == 404
    # And a listing whose row was read just before the delete leaves it out
    listing = api.get("/api/products")
    assert listing.status_code == 200
    listed = {p["id"] for p in listing.get_json()["results"]}
    assert catalog[1].id not in listed and catalog[2].id in listed
