"""A Pinecone index (data plane) and its control plane, in memory."""

from __future__ import annotations

from collections import Counter
from typing import Any

from refarch_local.standins.pinecone_control_plane import INDEX_PATH, ControlPlaneError, PineconeControlPlane
from refarch_local.standins.pinecone_data_plane import (
    DATA_PLANE_PATH,
    DEFAULT_NAMESPACE,
    IndexVectors,
    PineconeDataPlane,
    StoredVector,
)
from refarch_local.standins.server import ApiError, Request, Route


class PineconeStandIn(PineconeControlPlane, PineconeDataPlane):
    """A serverless Pinecone index's data plane (dense, cosine), in memory, and a control plane.

    Speaks what the SDK v10 sends for upsert, query (metadata filters with $eq/$ne/$gt/$gte/
    $lt/$lte/$in/$nin/$exists/$and/$or), fetch, delete, update, describe_index_stats and list;
    requires the Api-Key and API version headers; rejects vectors of the wrong dimension.

    The control plane (point PINECONE_CONTROLLER_HOST or `Pinecone(host=...)` at `url`) lists,
    creates (dense serverless indexes, validated as the API does, 409 when the name is taken),
    describes (404 when missing) and deletes indexes. A new index is ready at once, or after
    `initializing_describes` describes that find it still initializing. `indexes` holds each one
    as a ready describe answers it. The data plane at `url` itself is the index the stand-in
    was started with (`dimension`); each created index has a data plane of its own, with its own
    dimension and namespaces, at the host its describe answers (`<url>/index/<name>`), and
    deleting the index deletes its vectors.

    The routes live in `PineconeControlPlane` and `PineconeDataPlane`; the filters they apply in
    `pinecone_filters`. This class holds their shared state, routes requests, and checks the key.
    """

    name = "pinecone-standin"

    def __init__(
        self,
        *,
        dimension: int,
        api_key: str = "local-pinecone-key",
        initializing_describes: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dimension = dimension
        self.api_key = api_key
        self.namespaces: dict[str, dict[str, StoredVector]] = {}
        self.indexes: dict[str, dict[str, Any]] = {}
        self._planes: dict[str, IndexVectors] = {}
        self.initializing_describes = initializing_describes
        self._initializing: Counter[str] = Counter()
        for method, path, name, route in (
            ("GET", "/indexes", "list_indexes", self._list_indexes),
            ("POST", "/indexes", "create_index", self._create_index),
            ("GET", "/indexes/{name}", "describe_index", self._describe_index),
            ("DELETE", "/indexes/{name}", "delete_index", self._delete_index),
            ("POST", "/vectors/upsert", "upsert", self._upsert),
            ("POST", "/query", "query", self._query),
            ("GET", "/vectors/fetch", "fetch", self._fetch),
            ("POST", "/vectors/delete", "delete", self._delete),
            ("POST", "/vectors/update", "update", self._update),
            ("POST", "/describe_index_stats", "describe_index_stats", self._stats),
            ("GET", "/vectors/list", "list", self._list),
        ):
            self.routes[(method, path)] = (name, route)

    def vectors(self, namespace: str = "", *, index: str | None = None) -> dict[str, StoredVector]:
        """A copy of one namespace's vectors (for assertions): of the stand-in's own index, or of a created one."""
        with self._lock:
            namespaces = self.namespaces if index is None else self._planes[index].namespaces
            return dict(namespaces.get(namespace or DEFAULT_NAMESPACE, {}))

    def route_for(self, request: Request) -> tuple[str, Route] | None:
        """Exact paths first; `/indexes/<name>` goes to the `/indexes/{name}` routes, which read the name;
        `/index/<name>/<data-plane path>` to that data-plane route, which serves that index."""
        entry = super().route_for(request)
        if entry is None and INDEX_PATH.fullmatch(request.path):
            return self.routes.get((request.method, "/indexes/{name}"))
        prefixed = DATA_PLANE_PATH.fullmatch(request.path)
        if entry is None and prefixed:
            return self.routes.get((request.method, prefixed.group(2)))
        return entry

    def authorize(self, request: Request) -> None:
        """The Api-Key header must match; the API version header must be present."""
        if request.headers.get("api-key") != self.api_key:
            raise ApiError(401, "Invalid API Key", code=16)
        if not request.headers.get("x-pinecone-api-version"):
            raise ApiError(400, "missing X-Pinecone-Api-Version header", code=3)

    def error_body(self, error: ApiError) -> dict[str, Any]:
        """Pinecone's error envelope (the control plane's, or the data plane's gRPC-style one)."""
        if isinstance(error, ControlPlaneError):
            return {"error": {"code": error.code, "message": error.message}, "status": error.status}
        code = (
            error.code
            if isinstance(error.code, int)
            else {400: 3, 401: 16, 404: 5, 413: 3, 429: 8}.get(error.status, 13)
        )
        return {"code": code, "message": error.message, "details": []}
