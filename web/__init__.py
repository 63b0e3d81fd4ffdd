"""The web page and JSON API: a Flask app factory (the CLI runs it locally, gunicorn runs `web:create_app()`).

The factory lives in `web.app`, imported on first use of `web.create_app`: gunicorn's master process imports
this package for its worker class (`web.health_lane`) and serves no request, so it stays small (~25 MB instead
of ~80 MB with the runtime's imports), and each worker imports the app as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from web.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """`web.create_app`, imported when first asked for."""
    if name == "create_app":
        from web.app import create_app

        return create_app
    raise AttributeError(f"module 'web' has no attribute {name!r}")
