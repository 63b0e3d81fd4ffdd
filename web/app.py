"""The Flask app factory: configuration from Settings (and Secrets Manager), then the blueprints."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from refarch.observability import logger
from refarch.products import MAX_DESCRIPTION_CHARS
from refarch.runtime import Runtime
from refarch.secrets import from_env_or_secret
from refarch.settings import Settings
from refarch.source import load as load_source

# A JSON body holding a maximal description (up to 12 bytes per character when \u-escaped) still fits.
MAX_REQUEST_BYTES = 12 * MAX_DESCRIPTION_CHARS + 64 * 1024


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: configuration from Settings (and Secrets Manager), then `test_config` on top.

    `test_config` may hold any Flask setting plus REFARCH_RUNTIME (a prepared `Runtime`), so
    tests can point the app at their own database and share one embedding model.
    """
    test_config = test_config or {}
    app = Flask(__name__)
    runtime = test_config.get("REFARCH_RUNTIME") or Runtime(application_name="refarch-web")
    settings = runtime.settings
    app.config.from_mapping(
        REFARCH_RUNTIME=runtime,
        SECRET_KEY=_session_secret(settings),
        EDIT_PASSWORD=_edit_password(settings),
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="refarch_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        RATE_LIMIT_SEARCH=settings.rate_limit_search,
        RATE_LIMIT_WRITE=settings.rate_limit_write,
        RATE_LIMIT_READ=settings.rate_limit_read,
        RATE_LIMIT_STORAGE=settings.rate_limit_storage,
    )
    app.config.update(test_config)
    if settings.proxy_hops:
        # The client is proxy_hops entries from the right of X-Forwarded-For; the scheme is what the
        # load balancer (the last hop) saw. Run directly, nobody may claim either.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops, x_proto=1)  # type: ignore[method-assign]

    from web import api, auth, db, dead_letters, errors, rate_limits, security, views

    app.json = security.JSONProvider(app)
    db.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(dead_letters.bp)
    app.register_blueprint(views.bp)
    source = load_source(settings.source)
    if not source.is_builtin_products:
        api.register_source_routes(app, source)
    rate_limits.init_app(app)
    return app


def _edit_password(settings: Settings) -> str | None:
    """The edit password from the environment or Secrets Manager; None leaves editing open."""
    password = from_env_or_secret(
        settings.edit_password,
        settings.edit_password_secret_arn,
        settings.aws_region,
        what="edit password",
        fields=("password",),
    )
    if password is None:
        logger.warning("no edit password configured: anyone who can reach the page can edit products")
    return password


def _session_secret(settings: Settings) -> str:
    """The key that signs session cookies; a random one per process when none is configured."""
    secret = from_env_or_secret(
        settings.session_secret,
        settings.session_secret_arn,
        settings.aws_region,
        what="session secret",
        fields=("secret",),
    )
    if secret is None:
        # Fine for one process; several workers or a restart sign people out (set REFARCH_SESSION_SECRET).
        logger.info("no session secret configured: using a random key for this process")
        return secrets.token_urlsafe(32)
    return secret
