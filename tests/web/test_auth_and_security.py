"""Sign-in, CSRF refusals, session cookie flags and security headers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from refarch.settings import ConfigurationError
from tests.web.conftest import EDIT_PASSWORD, Api, build_app, csrf_token, form_csrf_token, make_runtime
from web import create_app

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


def test_sign_out_revokes_a_copied_session_cookie(locked_app, catalog):
    # Given an editor signed in, and a copy of their session cookie and CSRF token taken by someone else
    editor = Api(locked_app.test_client())
    editor.token = editor.post("/api/session", json={"password": EDIT_PASSWORD}).get_json()["csrf_token"]
    cookie = editor.client.get_cookie("refarch_session")
    assert cookie is not None
    thief = Api(locked_app.test_client())
    thief.client.set_cookie("refarch_session", cookie.value)
    thief.token = editor.token
    product = catalog[0]
    assert thief.put(f"/api/products/{product.id}", json={"version": 1, "name": "Copied"}).status_code == 200
    # When the editor signs out
    signed_out = editor.delete("/api/session").get_json()
    assert signed_out["signed_in"] is False
    editor.token = signed_out["csrf_token"]
    # Then the copy, still validly signed, no longer signs anyone in
    refused = thief.put(f"/api/products/{product.id}", json={"version": 2, "name": "Again"})
    assert refused.status_code == 401
    assert thief.get("/api/session").get_json()["signed_in"] is False
    # And signing in again makes a new session the old copy does not share
    editor.token = editor.post("/api/session", json={"password": EDIT_PASSWORD}).get_json()["csrf_token"]
    assert editor.put(f"/api/products/{product.id}", json={"version": 2, "name": "Mine"}).status_code == 200
    assert thief.put(f"/api/products/{product.id}", json={"version": 3, "name": "Again"}).status_code == 401


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


def test_a_session_from_before_a_password_change_can_no_longer_edit(locked_app, catalog):
    # Given an editor signed in with the current password
    api = Api(locked_app.test_client())
    api.token = api.post("/api/session", json={"password": EDIT_PASSWORD}).get_json()["csrf_token"]
    assert api.put(f"/api/products/{catalog[0].id}", json={"version": 1, "name": "A"}).status_code == 200
    # Then the session cookie holds no trace of the password itself
    cookie = api.client.get_cookie("refarch_session")
    assert cookie is not None
    session = locked_app.session_interface.get_signing_serializer(locked_app).loads(cookie.value)
    assert EDIT_PASSWORD not in str(session)
    # When the configured password changes (a new secret value, picked up on restart)
    locked_app.config["EDIT_PASSWORD"] = "a brand new passphrase"
    # Then that old session is signed out: it may not edit any more
    assert api.get("/api/session").get_json()["signed_in"] is False
    response = api.put(f"/api/products/{catalog[0].id}", json={"version": 2, "name": "B"})
    assert response.status_code == 401
    assert api.get(f"/api/products/{catalog[0].id}").get_json()["name"] == "A"


def test_a_password_with_a_lone_surrogate_is_refused_not_a_500(locked_client):
    api = Api(locked_client)
    response = api.post("/api/session", data='{"password": "\\ud800"}', content_type="application/json")
    assert response.status_code == 401
    assert api.get("/api/session").get_json()["signed_in"] is False


def test_hsts_is_sent_whenever_the_session_cookie_is_secure(client):
    # Given the default (cookie Secure, as on AWS), When a request arrives over plain HTTP from the proxy
    response = client.get("/api/session")
    # Then HSTS is still sent: TLS ends before the app, and browsers apply it only over HTTPS anyway
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_no_hsts_for_plain_http_local_use(dsn, embedder):
    # Given REFARCH_SESSION_COOKIE_SECURE=false (plain http on a laptop), Then no HSTS over http
    runtime = make_runtime(embedder, database_url=dsn, session_cookie_secure=False)
    client = build_app(runtime).test_client()
    assert "Strict-Transport-Security" not in client.get("/api/session").headers
    # But a request that did arrive over HTTPS still gets it
    assert "Strict-Transport-Security" in client.get("/api/session", base_url="https://localhost").headers


FORWARDED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}


def test_forwarded_headers_are_ignored_unless_the_app_runs_behind_a_proxy(dsn, embedder, caplog):
    # Given a directly reachable app (no proxy setting), plain-http cookies so HSTS shows the scheme
    runtime = make_runtime(embedder, database_url=dsn, session_cookie_secure=False)
    client = build_app(runtime, EDIT_PASSWORD=EDIT_PASSWORD).test_client()
    token = csrf_token(client)
    # When a client claims another address and HTTPS
    response = client.post("/api/session", json={"password": "guess"}, headers={**FORWARDED, "X-CSRF-Token": token})
    # Then neither is believed: the refusal logs the real peer, and the request is not treated as HTTPS
    assert response.status_code == 401
    assert "Strict-Transport-Security" not in response.headers
    refusals = [r for r in caplog.records if r.getMessage() == "sign-in refused"]
    assert [r.remote_addr for r in refusals] == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("hops", "forwarded_for"),
    [(1, "203.0.113.9"), (2, "203.0.113.9, 130.176.0.12")],  # ALB alone; CloudFront (its edge appended) + ALB
    ids=["alb", "cloudfront-and-alb"],
)
def test_behind_proxies_the_forwarded_client_and_scheme_are_used(dsn, embedder, caplog, hops, forwarded_for):
    # Given `hops` proxies in front (REFARCH_PROXY_HOPS: they are the only way in)
    runtime = make_runtime(embedder, database_url=dsn, session_cookie_secure=False, proxy_hops=hops)
    client = create_app({"TESTING": True, "REFARCH_RUNTIME": runtime, "EDIT_PASSWORD": EDIT_PASSWORD}).test_client()
    headers = {"X-Forwarded-For": f"198.51.100.66, {forwarded_for}", "X-Forwarded-Proto": "https"}
    token = client.get("/api/session", headers=headers).get_json()["csrf_token"]
    # When they forward a refused sign-in from a client over HTTPS (after an address the client made up)
    response = client.post("/api/session", json={"password": "guess"}, headers={**headers, "X-CSRF-Token": token})
    # Then the address the first proxy saw is logged, and the request counts as HTTPS (HSTS sent)
    assert response.status_code == 401
    assert "Strict-Transport-Security" in response.headers
    refusals = [r for r in caplog.records if r.getMessage() == "sign-in refused"]
    assert [r.remote_addr for r in refusals] == ["203.0.113.9"]


def new_secret(secretsmanager: Any, value: str) -> str:
    """A secret holding this string; its ARN."""
    return secretsmanager.create_secret(Name=f"test/{uuid.uuid4().hex}", SecretString=value)["ARN"]


@pytest.mark.parametrize("value", [" ", "  \n", '{"password": ""}', '{"password": "   "}'])
def test_an_empty_edit_password_secret_stops_the_app_from_starting(dsn, embedder, secretsmanager, value):
    # Given the edit password secret on AWS holds no password
    runtime = make_runtime(embedder, database_url=dsn, edit_password_secret_arn=new_secret(secretsmanager, value))
    # When the app starts, Then it refuses (editing would otherwise be open to everyone)
    with pytest.raises(ConfigurationError, match="edit password secret .* is empty"):
        create_app({"TESTING": True, "REFARCH_RUNTIME": runtime})


@pytest.mark.parametrize("value", ['{"password": null}', '{"password": 12345}', '{"pass": "x"}'])
def test_an_edit_password_secret_without_a_text_password_stops_the_app_from_starting(
    dsn, embedder, secretsmanager, value
):
    # Given JSON in the secret whose password is not text (null would otherwise become the password "None")
    runtime = make_runtime(embedder, database_url=dsn, edit_password_secret_arn=new_secret(secretsmanager, value))
    # When the app starts, Then it refuses and names the field
    with pytest.raises(ValueError, match="without a 'password' text field"):
        create_app({"TESTING": True, "REFARCH_RUNTIME": runtime})


@pytest.mark.parametrize("value", [EDIT_PASSWORD, json.dumps({"password": EDIT_PASSWORD})])
def test_an_edit_password_secret_locks_editing(dsn, embedder, secretsmanager, value):
    runtime = make_runtime(embedder, database_url=dsn, edit_password_secret_arn=new_secret(secretsmanager, value))
    client = create_app({"TESTING": True, "REFARCH_RUNTIME": runtime}).test_client()
    assert client.get("/api/session").get_json()["password_required"] is True
    api = Api(client)
    assert api.post("/api/session", json={"password": EDIT_PASSWORD}).get_json()["signed_in"] is True


def test_an_empty_session_secret_stops_the_app_from_starting(dsn, embedder, secretsmanager):
    runtime = make_runtime(embedder, database_url=dsn, session_secret_arn=new_secret(secretsmanager, '{"secret": ""}'))
    with pytest.raises(ConfigurationError, match="session secret .* is empty"):
        create_app({"TESTING": True, "REFARCH_RUNTIME": runtime})
