"""CSRF protection, security headers and JSON encoding for every response."""

from __future__ import annotations

import hmac
import secrets
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import Flask, Response, abort, current_app, request, session
from flask.json.provider import DefaultJSONProvider

CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Everything comes from this origin; no inline script or style, so injected markup cannot run.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def csrf_token() -> str:
    """This session's CSRF token (created on first use); pages embed it, API clients read /api/session."""
    if CSRF_FORM_FIELD not in session:
        session[CSRF_FORM_FIELD] = secrets.token_urlsafe(32)
    return str(session[CSRF_FORM_FIELD])


def rotate_csrf_token() -> str:
    """A fresh token (after signing in or out, so a token seen before cannot be replayed)."""
    session.pop(CSRF_FORM_FIELD, None)
    return csrf_token()


def check_csrf() -> None:
    """Refuse a state-changing request unless it carries this session's token (header or form field)."""
    if request.method in SAFE_METHODS:
        return
    expected = session.get(CSRF_FORM_FIELD)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = request.form.get(CSRF_FORM_FIELD)
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(
            403,
            description=f"missing or invalid CSRF token: send the {CSRF_HEADER} header (or the "
            f"{CSRF_FORM_FIELD} form field) with the token from GET /api/session",
        )


def add_security_headers(response: Response) -> Response:
    """Security headers on every response; dynamic responses are never cached (they may carry tokens)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # Behind CloudFront/the load balancer TLS ends before the app, so the request itself looks like
    # http; a Secure session cookie says the site is served over HTTPS. Browsers ignore HSTS over http.
    if current_app.config.get("SESSION_COOKIE_SECURE") or request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


class JSONProvider(DefaultJSONProvider):
    """Timestamps as ISO 8601 and decimals as strings (Flask's default writes RFC 822 dates)."""

    @staticmethod
    def default(o: Any) -> Any:
        """Encode the types our rows contain."""
        if isinstance(o, (datetime, date)):
            return o.isoformat()
        if isinstance(o, Decimal):
            return str(o)
        return DefaultJSONProvider.default(o)


def init_app(app: Flask) -> None:
    """Check CSRF before every request, add headers after it, expose `csrf_token()` to templates."""
    app.before_request(check_csrf)
    app.after_request(add_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
