"""The web app works end to end logged in as its own database role, refarch_web, as it does on AWS."""

from __future__ import annotations

from tests.web.conftest import Api, build_app, make_runtime


def test_every_route_works_as_the_web_role(login_as, embedder, indexed_catalog, tmp_path):
    # Given the app connected as refarch_web (the catalog was indexed by Emu's code as the admin)
    runtime = make_runtime(embedder, database_url=login_as("web"), home=tmp_path / "home")
    api = Api(build_app(runtime).test_client())
    # Then reading works: the page, search with filters, listing, one product, status, health
    assert api.get("/").status_code == 200
    found = api.get("/api/search?q=machine+learning&category=software&max_price=500").get_json()
    assert found["results"][0]["sku"] == "SW-1"
    assert api.get("/api/products").status_code == 200
    first = indexed_catalog[0]
    assert api.get(f"/api/products/{first.id}").get_json()["sync"]["status"] == "indexed"
    assert api.get("/api/sync/status").get_json()["indexed"] == len(indexed_catalog)
    assert api.get("/healthz").status_code == 200
    # And editing works, each change captured by the trigger (which writes the outbox, not the role)
    created = api.post(
        "/api/products", json={"sku": "GA-9", "name": "Rake", "category": "garden", "price": "12.50"}
    ).get_json()
    assert created["sync"]["status"] == "pending"
    edited = api.put(f"/api/products/{first.id}", json={"version": first.version, "price": "149.00"})
    assert edited.status_code == 200 and edited.get_json()["version"] == first.version + 1
    assert api.delete(f"/api/products/{created['id']}").status_code == 204
    with runtime.db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT op FROM sync_outbox ORDER BY id DESC LIMIT 3")
        assert [op for (op,) in cur.fetchall()] == ["delete", "update", "insert"]


def test_the_web_role_searches_an_unrecorded_generation_without_recording_it(
    dsn, login_as, embedder, catalog, tmp_path
):
    # Given a fresh database whose generation 1 nobody has recorded yet (Emu has not run), its vector table
    # created by the admin (the migrate step does this on AWS), and the app as refarch_web
    from refarch import generations
    from refarch.db import Database
    from refarch.index.pgvector_index import PgVectorIndex

    PgVectorIndex(Database(dsn), embedder.dimension).ensure()
    runtime = make_runtime(embedder, database_url=login_as("web"), home=tmp_path / "home")
    api = Api(build_app(runtime).test_client())
    # When someone searches (semantic: the generation's embedder and index are needed)
    found = api.get("/api/search", query_string={"q": "machine learning", "mode": "semantic"})
    # Then search answers from the configured target (nothing is indexed yet: no results, no error)
    assert found.status_code == 200 and found.get_json()["mode"] == "semantic"
    # And the generation is still unrecorded: only Emu's role may record it (migration 0015)
    with runtime.db.transaction() as conn:
        assert not generations.active(conn).recorded
