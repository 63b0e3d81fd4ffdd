"""The server-rendered page, health check, sync status, error shapes and the OpenAPI description."""

from __future__ import annotations

import re
import threading

import psycopg2
import pytest
import yaml
from openapi_spec_validator import validate

from tests.conftest import free_port
from tests.web.conftest import EDIT_PASSWORD, Api, build_app, make_runtime


def test_page_lists_products_with_sync_badges_and_header_totals(client, catalog):
    # Given five pending products, When the page is opened without a query
    html = client.get("/").get_data(as_text=True)
    # Then every product has a row with its pending badge, and the header counts them
    assert html.count('class="product"') == 5
    assert html.count('data-sync-status="pending"') == 5
    assert re.search(r'data-key="products">5<', html) and re.search(r'data-key="pending">5<', html)
    assert 'data-key="live_queue_depth" data-age-key="live_queue_age_seconds">not configured<' in html
    assert 'data-key="bulk_queue_depth" data-age-key="bulk_queue_age_seconds">not configured<' in html
    assert '<label for="q">Search products</label>' in html
    assert "Products 1–5 of 5, by id." in html


def test_page_search_shows_scores_in_relevance_order(client, indexed_catalog):
    html = client.get("/?q=a+tent+for+camping+in+the+rain").get_data(as_text=True)
    names = re.findall(r'<span class="name">([^<]+)</span>', html)
    scores = [float(s) for s in re.findall(r'<td class="score" data-label="Score"[^>]*>(-?[0-9.]+)</td>', html)]
    assert names[0] == "Alpine Camping Tent"
    assert len(scores) == len(names) == 5 and scores == sorted(scores, reverse=True)
    assert 'data-sync-status="indexed"' in html


def test_page_paginates_with_filters_kept(client, catalog):
    html = client.get("/?k=10&category=kitchen&page=1").get_data(as_text=True)
    assert 'rel="next"' not in html
    html = client.get("/?k=2&page=2").get_data(as_text=True)
    assert 'href="/?k=2&amp;page=1" rel="prev"' in html and 'href="/?k=2&amp;page=3" rel="next"' in html
    assert "Page 2 of 3" in html
    # And parameters named like url_for's own options (_method, _external) are no filters, and no crash
    response = client.get("/?k=2&page=2&_method=POST&_external=1")
    assert response.status_code == 200
    assert 'href="/?k=2&amp;page=3" rel="next"' in response.get_data(as_text=True)


def test_page_shows_bad_input_as_a_message_not_a_crash(client, catalog):
    response = client.get("/?q=tent&min_price=cheap")
    assert response.status_code == 400
    assert 'role="alert"' in response.get_data(as_text=True)
    assert "min_price must be a number" in response.get_data(as_text=True)


def test_page_escapes_product_text(api, client):
    api.post(
        "/api/products", json={"sku": "XSS-1", "name": "<script>alert(1)</script>", "category": "toys", "price": 1}
    )
    html = client.get("/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_row_fragment_renders_one_product_for_the_page_to_insert(client, catalog):
    html = client.get(f"/products/{catalog[0].id}/row?score_column=1").get_data(as_text=True)
    assert html.strip().startswith(f'<tbody class="product" id="product-{catalog[0].id}"')
    assert 'class="score"' in html and "Insight Forecasting Engine" in html
    assert client.get("/products/999/row").status_code == 404


def test_healthz_checks_the_database(client, closed_port_dsn, embedder):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    down = build_app(make_runtime(embedder, database_url=closed_port_dsn)).test_client()
    response = down.get("/healthz")
    assert response.status_code == 503 and response.get_json()["error"] == "database unavailable"


def test_healthz_with_the_database_unreachable_connects_once_per_check(embedder):
    # Given a database address that accepts connections and closes them at once (a server going down)
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def refuse() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            accepted.append(sock)
            sock.close()

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    down = build_app(
        make_runtime(
            embedder, database_url=f"postgresql://postgres@127.0.0.1:{port}/x?sslmode=disable&gssencmode=disable"
        )
    ).test_client()
    try:
        # When the load balancer checks twice
        responses = [down.get("/healthz") for _ in range(2)]
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() the thread waits in
        listener.close()
        thread.join(timeout=5)
    # Then each check failed (503) after one connection attempt, not two
    assert [r.status_code for r in responses] == [503, 503]
    assert len(accepted) == 2


def test_healthz_asks_on_a_kept_connection_instead_of_opening_one_per_check(client, runtime, dsn):
    # Given the app, named in the database by its application name
    def web_backends() -> list[int]:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
                (runtime.db.application_name,),
            )
            return [pid for (pid,) in cur.fetchall()]

    # When the load balancer checks it again and again
    assert client.get("/healthz").status_code == 200
    first = web_backends()
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    # Then every check was answered by the same database backend, kept open between checks
    assert len(first) == 1 and web_backends() == first
    # And when the database drops that connection (a restart, a failover), the next check still answers 200,
    # on a new connection, instead of failing once per thread that kept one
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (first[0],))
    assert client.get("/healthz").status_code == 200
    after = web_backends()
    assert len(after) == 1 and after != first


def test_database_outage_is_a_503_not_a_500(closed_port_dsn, embedder):
    down = build_app(make_runtime(embedder, database_url=closed_port_dsn)).test_client()
    for url in ("/api/products/1", "/api/search?q=tent", "/api/sync/status"):
        response = down.get(url)
        assert response.status_code == 503, url
        assert "database is unavailable" in response.get_json()["error"]


def test_sync_status_reports_totals_and_real_queue_depth(local_settings, embedder, catalog_in_local_db):
    # Given the local SQS queues exist: two live messages, one bulk message naming three products
    from refarch.lanes.messages import SyncMessage, bulk_messages

    runtime = make_runtime(embedder, database_url=local_settings.database_url, home=local_settings.home)
    runtime.queue.send([SyncMessage(product_id=i, version=1, op="insert", source="change") for i in (1, 2)])
    runtime.bulk_queue.send(bulk_messages([(i, 1, "sync") for i in (3, 4, 5)], source="bootstrap"))
    # When the status is read
    body = build_app(runtime).test_client().get("/api/sync/status").get_json()
    # Then totals come from Postgres and each lane's depth from SQS (messages, not products)
    assert body["products"] == 5 and body["pending"] == 5 and body["indexed"] == 0
    assert body["outbox_backlog"] == 5
    assert body["queue"] == "ok" and body["queue_depth"] == 3 and body["dlq_depth"] == 0
    assert (body["live_queue_depth"], body["bulk_queue_depth"]) == (2, 1)
    assert (body["live_dlq_depth"], body["bulk_dlq_depth"]) == (0, 0)
    # And an oldest-message age is either known (published every few seconds) or null, never an error
    for lane in ("live", "bulk"):
        age = body[f"{lane}_queue_age_seconds"]
        assert age is None or age >= 0
    assert body["oldest_pending_seconds"] >= 0


@pytest.fixture
def catalog_in_local_db(local_settings):
    """The small catalog in the local_settings database."""
    from refarch import products
    from tests.web.conftest import CATALOG

    conn = psycopg2.connect(local_settings.database_url)
    with conn:
        for row in CATALOG:
            products.create(conn, dict(row))
    conn.close()


def test_sync_status_survives_an_unreachable_queue(dsn, embedder, tmp_path):
    # Given a queue URL whose SQS endpoint does not answer
    port = free_port()
    runtime = make_runtime(
        embedder,
        database_url=dsn,
        home=tmp_path,
        sqs_endpoint_url=f"http://127.0.0.1:{port}",
        live_queue_url=f"http://127.0.0.1:{port}/000000000000/q.fifo",
    )
    # When the status is read, Then the database totals still come back and the queue is marked unreachable
    response = build_app(runtime).test_client().get("/api/sync/status")
    assert response.status_code == 200
    assert response.get_json()["queue"] == "unreachable" and response.get_json()["queue_depth"] is None
    assert response.get_json()["products"] == 0


def test_errors_are_json_with_the_right_status(client, api):
    not_found = client.get("/no/such/page")
    assert not_found.status_code == 404 and set(not_found.get_json()) == {"error", "fields", "request_id"}
    wrong_method = client.patch("/api/search")
    assert wrong_method.status_code in (403, 405)  # CSRF is checked before routing finds no PATCH
    wrong_method = api.client.patch("/api/search", headers={"X-CSRF-Token": api.token})
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]
    too_big = api.post("/api/products", data="x" * (3 * 1024 * 1024), content_type="application/json")
    assert too_big.status_code == 413 and "error" in too_big.get_json()


def test_openapi_is_valid_and_documents_every_api_route(app, client):
    # Given the served description
    response = client.get("/api/openapi.yaml")
    assert response.status_code == 200 and response.mimetype == "application/yaml"
    spec = yaml.safe_load(response.get_data(as_text=True))
    # Then it is valid OpenAPI, and every API route and method of the app is in it (and nothing else)
    validate(spec)
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.rule == "/healthz":
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops if method != "parameters"}
    assert routes == documented


def input_tag(html: str, element_id: str) -> str:
    """The opening tag of the input with this id."""
    match = re.search(rf'<input id="{element_id}"[^>]*>', html)
    assert match, f"no input {element_id}"
    return match.group(0)


def test_form_inputs_carry_real_attributes(client, catalog):
    # When an editor opens the page
    html = client.get("/").get_data(as_text=True)
    # Then the add and edit forms' inputs carry their limits and hints as attributes, not escaped text
    assert "&#34;" not in html
    for prefix in ("new", f"edit-{catalog[0].id}"):
        assert 'maxlength="200"' in input_tag(html, f"{prefix}-name")
        assert 'list="category-options"' in input_tag(html, f"{prefix}-category")
        assert 'inputmode="decimal"' in input_tag(html, f"{prefix}-price")
        assert 'autocomplete="off"' in input_tag(html, f"{prefix}-price")
    assert 'maxlength="64"' in input_tag(html, "new-sku")


@pytest.fixture
def failed_product(runtime, catalog):
    """The skillet, marked failed by Emu's ledger with a reason that names internals."""
    from refarch.emu import ledger

    with runtime.db.transaction() as conn:
        ledger.record_failed(conn, {catalog[1].id: "openai: 401 Incorrect API key sk-internal-detail"}, generation=1)
    return catalog[1]


def test_the_failure_reason_is_shown_only_to_people_who_may_edit(locked_app, failed_product):
    # Given a product whose indexing failed, and an edit password
    visitor, editor = locked_app.test_client(), locked_app.test_client()
    Api(editor).post("/api/session", json={"password": EDIT_PASSWORD})
    reason = "sk-internal-detail"
    urls = ["/", f"/products/{failed_product.id}/row", "/api/search?q=", f"/api/sync/statuses?ids={failed_product.id}"]
    for url in urls:
        # When a visitor reads it, Then it says failed without the reason
        seen = visitor.get(url).get_data(as_text=True)
        assert "failed" in seen and reason not in seen, url
        # When a signed-in editor reads it, Then the reason is there
        assert reason in editor.get(url).get_data(as_text=True), url


def test_in_open_mode_everyone_may_edit_and_sees_the_reason(client, failed_product):
    assert "sk-internal-detail" in client.get("/").get_data(as_text=True)


def test_status_and_header_show_a_reindex_in_progress_while_search_reads_the_active_generation(
    runtime, indexed_catalog, client
):
    # Given a re-index building generation 2, which holds 2 of the 5 rows so far
    from refarch import generations
    from refarch.emu import ledger
    from refarch.generations import EmbedderSpec, placement
    from refarch.index.vector_target import PgVectorTable

    with runtime.db.transaction() as conn:
        generations.create_building(
            conn,
            spec=EmbedderSpec("openai", "text-embedding-3-small", 64),
            model_id="openai:text-embedding-3-small:64",
            dimension=64,
            backend="pgvector",
            target_for=lambda generation_id, active: PgVectorTable(table=placement.pgvector_table(generation_id)),
        )
        ledger.record_indexed(conn, [(p.id, p.version, "h", "indexed") for p in indexed_catalog[:2]], generation=2)
    # When the status is read
    body = client.get("/api/sync/status").get_json()
    # Then it names the active generation and the build's rows, rate and ETA
    assert (body["generation"], body["generation_model"]) == (1, "local:all-MiniLM-L6-v2:384")
    assert body["building_generation"] == 2 and body["building_model"] == "openai:text-embedding-3-small:64"
    assert (body["building_rows"], body["building_indexed"], body["building_failed"]) == (5, 2, 0)
    assert body["building_rate_per_second"] > 0 and body["building_eta_seconds"] > 0
    # And the page header shows the same progress
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'data-key="generation"[^>]*>g1<', html)
    assert re.search(r'data-key="building_indexed">g2 · 2/5 · [0-9.]+/s · ETA [0-9]+ s<', html)
    # And search still answers from generation 1, whole
    assert len(client.get("/api/search?q=tent&k=5").get_json()["results"]) == 5
