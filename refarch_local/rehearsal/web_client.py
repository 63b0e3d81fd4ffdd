"""The web container's API as a browser behind CloudFront and the ALB reaches it: sign in, change a product."""

from __future__ import annotations

import json
import urllib.request
from http.cookies import SimpleCookie
from typing import Any

# As CloudFront and the ALB forward a request (REFARCH_PROXY_HOPS=2): the client's address, and HTTPS.
FORWARDED = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "X-Forwarded-Proto": "https"}


class WebClient:
    """JSON calls with the session cookie and CSRF token a browser keeps.

    The session cookie is Secure (HTTPS ends at CloudFront); this hop is plain HTTP, so the client
    sends it back by hand. An HTTP error raises urllib's HTTPError (status and body in its message).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.headers = dict(FORWARDED)
        self.cookies: dict[str, str] = {}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the parsed JSON answer."""
        data = None if body is None else json.dumps(body).encode()
        headers = {**self.headers, "Content-Type": "application/json"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            for header in response.headers.get_all("Set-Cookie") or []:
                self.cookies.update({name: morsel.value for name, morsel in SimpleCookie(header).items()})
            return json.loads(response.read() or b"null")


def rename_product(url: str, edit_password: str, product_id: int, name: str) -> int:
    """Sign in with the edit password, rename the product (at the version read); its new version."""
    web = WebClient(url)
    web.headers["X-CSRF-Token"] = web.call("GET", "/api/session")["csrf_token"]
    web.headers["X-CSRF-Token"] = web.call("POST", "/api/session", {"password": edit_password})["csrf_token"]
    product = web.call("GET", f"/api/products/{product_id}")
    changed = web.call("PUT", f"/api/products/{product_id}", {"version": product["version"], "name": name})
    return int(changed["version"])
