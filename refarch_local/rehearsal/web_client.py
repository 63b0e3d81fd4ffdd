"""The web container's API as a browser behind CloudFront and the ALB reaches it: sign in, change a product."""

from __future__ import annotations

from typing import Any

import requests

# As CloudFront and the ALB forward a request (REFARCH_PROXY_HOPS=2): the client's address, and HTTPS.
FORWARDED = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "X-Forwarded-Proto": "https"}


def rename_product(url: str, edit_password: str, product_id: int, name: str) -> int:
    """Sign in with the edit password, rename the product (at the version read); its new version."""
    http = requests.Session()
    headers = dict(FORWARDED)
    # The session cookie is Secure (HTTPS ends at CloudFront); this hop is plain HTTP, so it is sent by hand.
    cookies: dict[str, str] = {}

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        response = http.request(method, f"{url}{path}", headers=headers, cookies=cookies, **kwargs)
        cookies.update({cookie.name: cookie.value or "" for cookie in response.cookies})
        response.raise_for_status()
        return response

    headers["X-CSRF-Token"] = call("GET", "/api/session").json()["csrf_token"]
    headers["X-CSRF-Token"] = call("POST", "/api/session", json={"password": edit_password}).json()["csrf_token"]
    product = call("GET", f"/api/products/{product_id}").json()
    changed = call("PUT", f"/api/products/{product_id}", json={"version": product["version"], "name": name})
    return int(changed.json()["version"])
