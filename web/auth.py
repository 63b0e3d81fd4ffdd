"""Sign-in for editing: one shared edit password (Secrets Manager on AWS); open when none is configured.

A sign-in is also held server-side (`refarch.editor_sessions`): the cookie carries the session's id,
and signing out deletes it, so a copy of the cookie taken before stops working too.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from refarch import editor_sessions
from refarch.observability import logger
from web.contract import Session, SignIn, request_json, respond
from web.db import get_db
from web.errors import ApiError
from web.security import csrf_token, rotate_csrf_token

bp = Blueprint("auth", __name__)

# The session cookie's key for the server-side sign-in's id.
SESSION_ID = "sid"

F = TypeVar("F", bound=Callable[..., Any])


def password_required() -> bool:
    """True when an edit password is configured."""
    return bool(current_app.config.get("EDIT_PASSWORD"))


def signed_in() -> bool:
    """True when this session signed in with the edit password configured now (not an earlier one)."""
    fingerprint = session.get("editor")
    return (
        password_required()
        and isinstance(fingerprint, str)
        and hmac.compare_digest(fingerprint.encode(), _password_fingerprint().encode())
        and _sign_in_live()
    )


def _sign_in_live() -> bool:
    """True while the cookie's server-side sign-in exists (looked up once per request)."""
    if "sign_in_live" not in g:
        session_id = session.get(SESSION_ID)
        if not isinstance(session_id, str):
            g.sign_in_live = False
        else:
            with get_db() as conn:
                g.sign_in_live = editor_sessions.is_live(conn, session_id)
    return bool(g.sign_in_live)


def can_edit() -> bool:
    """True when this session may change products (signed in, or no password configured)."""
    return not password_required() or signed_in()


def editor_required(view: F) -> F:
    """Refuse the view with 401 unless the session may edit."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not can_edit():
            raise ApiError(401, "sign in to edit products (POST /api/session with the edit password)")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _utf8(text: str) -> bytes:
    # surrogatepass: a lone surrogate in a JSON string is a wrong password, not an encoding crash.
    return text.encode("utf-8", "surrogatepass")


def _password_matches(candidate: str) -> bool:
    expected = current_app.config.get("EDIT_PASSWORD") or ""
    # Constant time, so response timing does not reveal how much of a guess was right.
    return bool(expected) and hmac.compare_digest(_utf8(candidate), _utf8(expected))


def _password_fingerprint() -> str:
    """An HMAC of the configured password under the session key: ties a sign-in to that password.

    The session cookie is signed, not encrypted, so it carries this instead of the password; a new
    password (or session key) makes every earlier sign-in worthless.
    """
    key = current_app.secret_key
    key_bytes = key if isinstance(key, bytes) else _utf8(str(key))
    password = _utf8(current_app.config.get("EDIT_PASSWORD") or "")
    return hmac.new(key_bytes, b"refarch edit password\x00" + password, hashlib.sha256).hexdigest()


def _sign_in() -> None:
    # A new session on sign-in: nothing from before (a planted token) survives.
    _end_sign_in()
    with get_db() as conn:
        session_id = editor_sessions.start(conn, lifetime=current_app.permanent_session_lifetime)
    session["editor"] = _password_fingerprint()
    session[SESSION_ID] = session_id
    session.permanent = True
    g.sign_in_live = True
    rotate_csrf_token()


def _sign_out() -> None:
    _end_sign_in()
    rotate_csrf_token()


def _end_sign_in() -> None:
    """Forget the session, and delete its server-side sign-in (any copy of the cookie is signed out too)."""
    session_id = session.get(SESSION_ID)
    if isinstance(session_id, str):
        with get_db() as conn:
            editor_sessions.end(conn, session_id)
    session.clear()
    g.sign_in_live = False


@bp.app_context_processor
def auth_state() -> dict[str, Any]:
    """Sign-in state for every template."""
    return {
        "password_required": password_required(),
        "can_edit": can_edit(),
        "signed_in": signed_in(),
    }


def _session_state() -> dict[str, Any]:
    return {
        "password_required": password_required(),
        "signed_in": signed_in(),
        "can_edit": can_edit(),
        "csrf_token": csrf_token(),
    }


@bp.get("/login")
def login_form() -> str:
    """The sign-in page."""
    return render_template("login.html", error=None)


@bp.post("/login")
def login() -> ResponseReturnValue:
    """Check the password from the form; on success go back to the page."""
    if not password_required():
        return redirect(url_for("views.index"))
    if not _password_matches(request.form.get("password", "")):
        logger.warning("sign-in refused", extra={"remote_addr": request.remote_addr})
        return render_template("login.html", error="That password is not right."), 401
    _sign_in()
    return redirect(url_for("views.index"))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out and go back to the page."""
    _sign_out()
    return redirect(url_for("views.index"))


@bp.get("/api/session")
def session_state() -> Response:
    """Whether editing needs a password, whether this session may edit, and its CSRF token."""
    return respond(Session, _session_state())


@bp.post("/api/session")
def api_login() -> Response:
    """Sign in with JSON {"password": ...}; the response carries the new CSRF token."""
    try:
        password = SignIn.model_validate(request_json()).password
    except ValidationError:
        raise ApiError(400, 'send JSON {"password": "..."}', {"password": "is required"}) from None
    if not password_required():
        return respond(Session, _session_state())
    if not _password_matches(password):
        logger.warning("sign-in refused", extra={"remote_addr": request.remote_addr})
        raise ApiError(401, "wrong password", {"password": "is not right"})
    _sign_in()
    return respond(Session, _session_state())


@bp.delete("/api/session")
def api_logout() -> Response:
    """Sign out; the response carries the new CSRF token."""
    _sign_out()
    return respond(Session, _session_state())
