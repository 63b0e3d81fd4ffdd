"""The Pinecone stand-in's data plane: upsert, query, fetch, delete, update, stats and list, per index."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from refarch_local.standins.pinecone_filters import check_filter, is_number, matches_filter
from refarch_local.standins.server import ApiError, Request, StandInServer

DEFAULT_NAMESPACE = "__default__"
# The data plane of an index created through the control plane: its host is `<url>/index/<name>`.
DATA_PLANE_PATH = re.compile(r"/index/([^/]+)(/.*)")


@dataclass
class StoredVector:
    """One stored vector and its metadata."""

    values: list[float]
    metadata: dict[str, Any] | None


@dataclass
class IndexVectors:
    """One index's vectors: its namespaces, checked against its dimension."""

    dimension: int
    namespaces: dict[str, dict[str, StoredVector]]


class PineconeDataPlane(StandInServer):
    """The vectors API of a dense, cosine serverless index, with Pinecone's limits and request checks.

    The stand-in's own index is `dimension` and `namespaces`; a created index's vectors are in
    `_planes` (the control plane adds and removes them), served under `<url>/index/<name>`.
    """

    MAX_UPSERT = 1000
    MAX_FETCH = 1000
    MAX_DELETE = 1000
    MAX_TOP_K = 10_000
    MAX_TOP_K_WITH_DATA = 1000
    LIST_LIMIT_MAX = 100
    MAX_METADATA_BYTES = 40 * 1024
    MAX_UPSERT_BYTES = 2 * 1024 * 1024

    # Set by PineconeStandIn.__init__.
    dimension: int
    namespaces: dict[str, dict[str, StoredVector]]
    _planes: dict[str, IndexVectors]

    def _plane(self, request: Request) -> IndexVectors:
        """The index a data-plane request is for: the stand-in's own, or a created one (404 once deleted)."""
        prefixed = DATA_PLANE_PATH.fullmatch(request.path)
        if prefixed is None:
            return IndexVectors(self.dimension, self.namespaces)
        name = unquote(prefixed.group(1))
        with self._lock:
            plane = self._planes.get(name)
        if plane is None:
            raise ApiError(404, f"index {name} not found")
        return plane

    # -- validation helpers -----------------------------------------------------------------

    def _object(self, request: Request, allowed: set[str]) -> dict[str, Any]:
        body = request.body if request.body is not None else {}
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        unknown = set(body) - allowed
        if unknown:
            raise ApiError(400, f"unknown field(s) in request: {', '.join(sorted(unknown))}")
        return body

    @staticmethod
    def _namespace(value: Any) -> str:
        if value is None:
            return DEFAULT_NAMESPACE
        if not isinstance(value, str):
            raise ApiError(400, "namespace must be a string")
        return value or DEFAULT_NAMESPACE

    @staticmethod
    def _id(value: Any, where: str) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= 512 or not value.isascii() or "\x00" in value:
            raise ApiError(400, f"{where}: vector id must be an ASCII string of 1-512 characters, got {value!r}")
        return value

    def _values(self, values: Any, where: str, dimension: int) -> list[float]:
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            raise ApiError(400, f"{where}: values must be a list of finite numbers")
        if len(values) != dimension:
            raise ApiError(
                400,
                f"{where}: Vector dimension {len(values)} does not match the dimension of the index {dimension}",
            )
        if not any(values):
            raise ApiError(400, f"{where}: Dense vectors must contain at least one non-zero value")
        return [float(v) for v in values]

    def _metadata(self, metadata: Any, where: str) -> dict[str, Any]:
        if not isinstance(metadata, dict):
            raise ApiError(400, f"{where}: metadata must be an object")
        for key, value in metadata.items():
            ok = (
                isinstance(value, str | bool)
                or (isinstance(value, int | float) and math.isfinite(value))
                or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            )
            if not ok:
                raise ApiError(
                    400,
                    f"{where}: metadata field {key!r} has an unsupported value {value!r}: use a "
                    "string, number, boolean or list of strings",
                )
        if len(json.dumps(metadata).encode()) > self.MAX_METADATA_BYTES:
            raise ApiError(400, f"{where}: metadata exceeds {self.MAX_METADATA_BYTES} bytes")
        # Pinecone stores every number as a float64: a stored 3 comes back as 3.0.
        return {key: float(v) if is_number(v) else v for key, v in metadata.items()}

    # -- routes -----------------------------------------------------------------------------

    def _upsert(self, request: Request) -> dict[str, Any]:
        plane = self._plane(request)
        body = self._object(request, {"vectors", "namespace"})
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise ApiError(400, "vectors must be a non-empty list")
        if len(vectors) > self.MAX_UPSERT:
            raise ApiError(400, f"{len(vectors)} vectors in one upsert; the maximum is {self.MAX_UPSERT}")
        size = len(json.dumps(body).encode())
        if size > self.MAX_UPSERT_BYTES:
            raise ApiError(400, f"upsert request of {size} bytes exceeds the {self.MAX_UPSERT_BYTES}-byte limit")
        parsed: dict[str, StoredVector] = {}
        for i, vector in enumerate(vectors):
            where = f"vectors[{i}]"
            if not isinstance(vector, dict) or set(vector) - {"id", "values", "metadata", "sparseValues"}:
                raise ApiError(400, f"{where}: expected an object with id, values and optional metadata")
            if "sparseValues" in vector:
                raise ApiError(400, f"{where}: this index is dense; sparse values are not supported")
            metadata = self._metadata(vector["metadata"], where) if vector.get("metadata") is not None else None
            parsed[self._id(vector.get("id"), where)] = StoredVector(
                self._values(vector.get("values"), where, plane.dimension), metadata
            )
        namespace = self._namespace(body.get("namespace"))
        with self._lock:
            plane.namespaces.setdefault(namespace, {}).update(parsed)
        return {"upsertedCount": len(vectors)}

    def _query(self, request: Request) -> dict[str, Any]:
        plane = self._plane(request)
        body = self._object(
            request,
            {
                "topK",
                "vector",
                "id",
                "namespace",
                "filter",
                "includeValues",
                "includeMetadata",
                "sparseVector",
                "scanFactor",
                "maxCandidates",
            },
        )
        top_k = body.get("topK")
        include_values = bool(body.get("includeValues", False))
        include_metadata = bool(body.get("includeMetadata", False))
        limit = self.MAX_TOP_K_WITH_DATA if (include_values or include_metadata) else self.MAX_TOP_K
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= limit:
            raise ApiError(400, f"topK must be an integer between 1 and {limit}, got {top_k!r}")
        if ("vector" in body) == ("id" in body):
            raise ApiError(400, "give exactly one of vector or id")
        if "sparseVector" in body:
            raise ApiError(400, "this index is dense; sparse queries are not supported")
        namespace = self._namespace(body.get("namespace"))
        query_filter = body.get("filter") or {}
        check_filter(query_filter)
        with self._lock:
            stored = dict(plane.namespaces.get(namespace, {}))
        if "id" in body:
            anchor = stored.get(self._id(body["id"], "id"))
            if anchor is None:
                return {"matches": [], "namespace": namespace, "usage": {"readUnits": 1}}
            query = anchor.values
        else:
            query = self._values(body["vector"], "vector", plane.dimension)
        scored = sorted(
            (
                (_cosine(query, v.values), vid, v)
                for vid, v in stored.items()
                if matches_filter(query_filter, v.metadata or {})
            ),
            key=lambda item: (-item[0], item[1]),
        )[:top_k]
        matches = []
        for score, vid, vector in scored:
            match: dict[str, Any] = {
                "id": vid,
                "score": score,
                "values": vector.values if include_values else [],
            }
            if include_metadata and vector.metadata is not None:
                match["metadata"] = vector.metadata
            matches.append(match)
        return {"matches": matches, "namespace": namespace, "usage": {"readUnits": 1}}

    def _fetch(self, request: Request) -> dict[str, Any]:
        plane = self._plane(request)
        ids = request.query.get("ids", [])
        if not ids:
            raise ApiError(400, "ids: at least one id is required")
        if len(ids) > self.MAX_FETCH:
            raise ApiError(400, f"{len(ids)} ids in one fetch; the maximum is {self.MAX_FETCH}")
        namespace = self._namespace(request.query.get("namespace", [""])[0])
        for vid in ids:
            self._id(vid, "ids")
        with self._lock:
            stored = plane.namespaces.get(namespace, {})
            found = {vid: stored[vid] for vid in ids if vid in stored}
        vectors: dict[str, dict[str, Any]] = {}
        for vid, vector in found.items():
            vectors[vid] = {"id": vid, "values": vector.values}
            if vector.metadata is not None:
                vectors[vid]["metadata"] = vector.metadata
        return {"vectors": vectors, "namespace": namespace, "usage": {"readUnits": 1}}

    def _delete(self, request: Request) -> dict[str, Any]:
        plane = self._plane(request)
        body = self._object(request, {"ids", "deleteAll", "filter", "namespace"})
        selectors = [key for key in ("ids", "deleteAll", "filter") if body.get(key) not in (None, False)]
        if len(selectors) != 1:
            raise ApiError(400, f"give exactly one of ids, deleteAll or filter (got {selectors or 'none'})")
        namespace = self._namespace(body.get("namespace"))
        with self._lock:
            stored = plane.namespaces.setdefault(namespace, {})
            if "ids" in selectors:
                ids = body["ids"]
                if not isinstance(ids, list) or not ids or len(ids) > self.MAX_DELETE:
                    raise ApiError(400, f"ids must be a list of 1-{self.MAX_DELETE} vector ids")
                for vid in ids:
                    stored.pop(self._id(vid, "ids"), None)
            elif "deleteAll" in selectors:
                stored.clear()
            else:
                check_filter(body["filter"], require_condition=True)
                for vid in [vid for vid, v in stored.items() if matches_filter(body["filter"], v.metadata or {})]:
                    del stored[vid]
            if not stored:
                del plane.namespaces[namespace]
        return {}

    def _update(self, request: Request) -> dict[str, Any]:
        plane = self._plane(request)
        body = self._object(request, {"id", "values", "sparseValues", "setMetadata", "namespace", "filter", "dryRun"})
        if ("id" in body) == ("filter" in body):
            raise ApiError(400, "give exactly one of id or filter")
        if "sparseValues" in body:
            raise ApiError(400, "this index is dense; sparse values are not supported")
        namespace = self._namespace(body.get("namespace"))
        set_metadata = self._metadata(body["setMetadata"], "setMetadata") if "setMetadata" in body else None
        if "id" in body:
            vid = self._id(body["id"], "id")
            values = self._values(body["values"], "values", plane.dimension) if "values" in body else None
            if values is None and set_metadata is None:
                raise ApiError(400, "nothing to update: give values and/or setMetadata")
            with self._lock:
                vector = plane.namespaces.get(namespace, {}).get(vid)
                # As Pinecone: an id that is not stored is no error, and nothing is created.
                if vector is not None:
                    if values is not None:
                        vector.values = values
                    if set_metadata is not None:
                        vector.metadata = {**(vector.metadata or {}), **set_metadata}
            return {}
        if "values" in body or set_metadata is None:
            raise ApiError(400, "an update by filter changes metadata only: give setMetadata and no values")
        check_filter(body["filter"], require_condition=True)
        with self._lock:
            hits = [
                v
                for v in plane.namespaces.get(namespace, {}).values()
                if matches_filter(body["filter"], v.metadata or {})
            ]
            if not body.get("dryRun"):
                for vector in hits:
                    vector.metadata = {**(vector.metadata or {}), **set_metadata}
        return {"matchedRecords": len(hits)}

    def _stats(self, request: Request) -> dict[str, Any]:
        plane = self._plane(request)
        body = self._object(request, {"filter"})
        if body.get("filter"):
            raise ApiError(400, "describe_index_stats does not support a filter on serverless indexes")
        with self._lock:
            counts = {ns: len(vectors) for ns, vectors in plane.namespaces.items() if vectors}
        return {
            "namespaces": {ns: {"vectorCount": n} for ns, n in counts.items()},
            "dimension": plane.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(counts.values()),
            "metric": "cosine",
            "vectorType": "dense",
        }

    def _list(self, request: Request) -> dict[str, Any]:
        plane = self._plane(request)
        query = {key: values[0] for key, values in request.query.items()}
        unknown = set(query) - {"namespace", "prefix", "limit", "paginationToken"}
        if unknown:
            raise ApiError(400, f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        try:
            limit = int(query.get("limit", self.LIST_LIMIT_MAX))
        except ValueError:
            raise ApiError(400, f"limit must be an integer, got {query['limit']!r}") from None
        if not 1 <= limit <= self.LIST_LIMIT_MAX:
            raise ApiError(400, f"limit must be between 1 and {self.LIST_LIMIT_MAX}, got {limit}")
        after = ""
        if "paginationToken" in query:
            try:
                after = base64.urlsafe_b64decode(query["paginationToken"].encode()).decode()
            except ValueError:
                raise ApiError(400, "invalid paginationToken") from None
        namespace = self._namespace(query.get("namespace"))
        prefix = query.get("prefix", "")
        with self._lock:
            ids = sorted(vid for vid in plane.namespaces.get(namespace, {}) if vid.startswith(prefix) and vid > after)
        page = ids[:limit]
        answer: dict[str, Any] = {
            "vectors": [{"id": vid} for vid in page],
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if len(ids) > limit:
            answer["pagination"] = {"next": base64.urlsafe_b64encode(page[-1].encode()).decode()}
        return answer


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
