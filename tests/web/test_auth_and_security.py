"""Sign-in, CSRF refusals, session cookie flags and security headers."""

from __future__ import annotations

import pytest

from tests.web.conftest import EDIT_PASSWORD, Api, build_app, csrf_token, form_csrf_token, make_runtime

CHANGES = [
    ("post", "/api/products", {"sku": "X-1", "name": "X", "category": "c", "price": 1}),
    ("put", "/api/products/{id}", {"version": 1, "name": "Changed"}),
    ("delete", "/api/products/{id}", None),
]


@pytest.mark.parametrize(("method", "url", "body"), CHANGES)
def test_changes_without_a_csrf_token_are_refused(client, catalog, method, url, body):
    # Given a session that has a token, When a change is sent without it, or with a wrong one
    csrf_token(client)
    target = url.format(id=catalog[0].id)
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        response = getattr(client, method)(target, json=body, headers=headers)
        # Then it is refused with a message and nothing changed
        assert response.status_code == 403
        assert "CSRF" in response.get_json()["error"]
    assert client.get("/api/products").get_json()["total"] == len(catalog)
    assert client.get(f"/api/products/{catalog[0].id}").get_json()["name"] == catalog[0].name


def test_a_token_from_another_session_is_refused(app, catalog):
    # Given two browsers, When one sends the other's token
    mine, theirs = app.test_client(), app.test_client()
    response = mine.put(
        f"/api/products/{catalog[0].id}",
        json={"version": 1, "name": "Hijacked"},
        headers={"X-CSRF-Token": csrf_token(theirs)},
    )
    # Then it is refused (the token is bound to the session cookie)
    assert response.status_code == 403


def test_forms_need_the_token_too(locked_client):
    locked_client.get("/login")
    response = locked_client.post("/login", data={"password": EDIT_PASSWORD})
    assert response.status_code == 403
    assert locked_client.get("/api/session").get_json()["signed_in"] is False


def test_with_a_password_configured_changes_need_sign_in(locked_client, catalog):
    # Given a password is configured and I am not signed in
    api = Api(locked_client)
    state = locked_client.get("/api/session").get_json()
    assert state["password_required"] is True and state["can_edit"] is False
    # When I try to change something, Then it is refused with 401 and nothing changed
    for response in (
        api.post("/api/products", json={"sku": "X-1", "name": "X", "category": "c", "price": 1}),
        api.put(f"/api/products/{catalog[0].id}", json={"version": 1, "name": "Changed"}),
        api.delete(f"/api/products/{catalog[0].id}"),
    ):
        assert response.status_code == 401
        assert "sign in" in response.get_json()["error"]
    assert api.get(f"/api/products/{catalog[0].id}").get_json()["name"] == catalog[0].name
    # But searching and reading stay public
    assert api.get("/api/products").status_code == 200


def test_api_sign_in_rotates_the_token_and_allows_changes_until_sign_out(locked_client, catalog):
    api = Api(locked_client)
    old_token = api.token
    # When the wrong password is sent, Then 401 and still not signed in
    wrong = api.post("/api/session", json={"password": "guess"})
    assert wrong.status_code == 401 and "password" in wrong.get_json()["fields"]
    # When the right one is sent, Then signed in with a new CSRF token; the old one no longer works
    right = api.post("/api/session", json={"password": EDIT_PASSWORD}).get_json()
    assert right["signed_in"] is True and right["can_edit"] is True and right["csrf_token"] != old_token
    assert api.put(f"/api/products/{catalog[0].id}", json={"version": 1, "name": "A"}).status_code == 403
    api.token = right["csrf_token"]
    assert api.put(f"/api/products/{catalog[0].id}", json={"version": 1, "name": "A"}).status_code == 200
    # When signing out, Then changes are refused again
    out = api.delete("/api/session").get_json()
    api.token = out["csrf_token"]
    assert out["signed_in"] is False
    assert api.put(f"/api/products/{catalog[0].id}", json={"version": 2, "name": "B"}).status_code == 401


def test_api_sign_in_needs_a_password_field(locked_client):
    api = Api(locked_client)
    response = api.post("/api/session", json={"pass": EDIT_PASSWORD})
    assert response.status_code == 400 and "password" in response.get_json()["fields"]


def test_page_sign_in_and_sign_out(locked_client, catalog):
    # Given the page hides editing from visitors
    page = locked_client.get("/").get_data(as_text=True)
    assert "Sign in to edit" in page and 'data-action="edit"' not in page
    # When the form is sent with a wrong password, Then the form says so (401) next to the field
    token = form_csrf_token(locked_client.get("/login").get_data(as_text=True))
    wrong = locked_client.post("/login", data={"password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "That password is not right." in wrong.get_data(as_text=True)
    # When the right password is sent, Then back to the page, which now offers editing
    right = locked_client.post("/login", data={"password": EDIT_PASSWORD, "csrf_token": token})
    assert right.status_code == 302 and right.headers["Location"] == "/"
    page = locked_client.get("/").get_data(as_text=True)
    assert 'data-action="edit"' in page and "Sign out" in page
    # When signing out (a form with the new token), Then editing is hidden again
    out = locked_client.post("/logout", data={"csrf_token": form_csrf_token(page)})
    assert out.status_code == 302
    assert 'data-action="edit"' not in locked_client.get("/").get_data(as_text=True)


def test_open_mode_lets_anyone_edit_with_a_token(api, catalog):
    state = api.get("/api/session").get_json()
    assert state["password_required"] is False and state["can_edit"] is True
    assert api.put(f"/api/products/{catalog[0].id}", json={"version": 1, "name": "Open"}).status_code == 200


def test_session_cookie_is_secure_http_only_and_same_site(client):
    cookie = client.get("/api/session").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_secure_flag_can_be_relaxed_only_by_setting(dsn, embedder):
    # Given REFARCH_SESSION_COOKIE_SECURE=false (plain-http local use), Then the cookie drops only Secure
    runtime = make_runtime(embedder, database_url=dsn, session_cookie_secure=False)
    cookie = build_app(runtime).test_client().get("/api/session").headers["Set-Cookie"]
    assert "Secure" not in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize("url", ["/", "/api/search?q=tent", "/api/products/999", "/login"])
def test_security_headers_on_pages_api_and_errors(client, url):
    headers = client.get(url).headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"


def test_the_password_never_reaches_the_page_or_the_logs(locked_client, caplog):
    # When someone signs in wrongly and then correctly
    token = csrf_token(locked_client)
    locked_client.post("/api/session", json={"password": "guess-" + EDIT_PASSWORD}, headers={"X-CSRF-Token": token})
    locked_client.post("/api/session", json={"password": EDIT_PASSWORD}, headers={"X-CSRF-Token": token})
    page = locked_client.get("/").get_data(as_text=True)
    # Then the refusal was logged, but the password appears nowhere: not in messages, not in extra fields
    logged = " ".join(str(record.__dict__) for record in caplog.records)
    assert "sign-in refused" in logged
    assert EDIT_PASSWORD not in logged and EDIT_PASSWORD not in page
