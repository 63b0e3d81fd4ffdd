"""A Pinecone index (data plane) and its control plane, in memory."""

from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from refarch_local.standins.server import ApiError, Request, Route, StandInServer

DEFAULT_NAMESPACE = "__default__"
# An index created with a dimension and a metric (no schema of named fields) declares exactly this
# one field; the vectors API (upsert/query) serves only such indexes.
DENSE_FIELD = "_values"
INDEX_METRICS = ("cosine", "euclidean", "dotproduct")
MAX_INDEX_DIMENSION = 20_000
# Where Pinecone serverless runs, per cloud (the regions the SDK v10 knows).
SERVERLESS_REGIONS = {
    "aws": ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"),
    "gcp": ("us-central1", "europe-west4"),
    "azure": ("eastus2", "germanywestcentral"),
}
_INDEX_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,43}[a-z0-9])?")
_INDEX_PATH = re.compile(r"/indexes/[^/]+")
# The data plane of an index created through the control plane: its host is `<url>/index/<name>`.
_DATA_PLANE_PATH = re.compile(r"/index/([^/]+)(/.*)")


class _ControlPlaneError(ApiError):
    """An error from the control plane, which answers in another envelope than the data plane."""

    def __init__(self, status: int, message: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(status, message, code=code)


@dataclass
class _StoredVector:
    values: list[float]
    metadata: dict[str, Any] | None


@dataclass
class _DataPlane:
    """One index's vectors: its namespaces, checked against its dimension."""

    dimension: int
    namespaces: dict[str, dict[str, _StoredVector]]


class PineconeStandIn(StandInServer):
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
    """

    name = "pinecone-standin"
    MAX_UPSERT = 1000
    MAX_FETCH = 1000
    MAX_DELETE = 1000
    MAX_TOP_K = 10_000
    MAX_TOP_K_WITH_DATA = 1000
    LIST_LIMIT_MAX = 100
    MAX_METADATA_BYTES = 40 * 1024
    MAX_UPSERT_BYTES = 2 * 1024 * 1024

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
        self.namespaces: dict[str, dict[str, _StoredVector]] = {}
        self.indexes: dict[str, dict[str, Any]] = {}
        self._planes: dict[str, _DataPlane] = {}
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

    def vectors(self, namespace: str = "", *, index: str | None = None) -> dict[str, _StoredVector]:
        """A copy of one namespace's vectors (for assertions): of the stand-in's own index, or of a created one."""
        with self._lock:
            namespaces = self.namespaces if index is None else self._planes[index].namespaces
            return dict(namespaces.get(namespace or DEFAULT_NAMESPACE, {}))

    def route_for(self, request: Request) -> tuple[str, Route] | None:
        """Exact paths first; `/indexes/<name>` goes to the `/indexes/{name}` routes, which read the name;
        `/index/<name>/<data-plane path>` to that data-plane route, which serves that index."""
        entry = super().route_for(request)
        if entry is None and _INDEX_PATH.fullmatch(request.path):
            return self.routes.get((request.method, "/indexes/{name}"))
        prefixed = _DATA_PLANE_PATH.fullmatch(request.path)
        if entry is None and prefixed:
            return self.routes.get((request.method, prefixed.group(2)))
        return entry

    def _plane(self, request: Request) -> _DataPlane:
        """The index a data-plane request is for: the stand-in's own, or a created one (404 once deleted)."""
        prefixed = _DATA_PLANE_PATH.fullmatch(request.path)
        if prefixed is None:
            return _DataPlane(self.dimension, self.namespaces)
        name = unquote(prefixed.group(1))
        with self._lock:
            plane = self._planes.get(name)
        if plane is None:
            raise ApiError(404, f"index {name} not found")
        return plane

    def authorize(self, request: Request) -> None:
        """The Api-Key header must match; the API version header must be present."""
        if request.headers.get("api-key") != self.api_key:
            raise ApiError(401, "Invalid API Key", code=16)
        if not request.headers.get("x-pinecone-api-version"):
            raise ApiError(400, "missing X-Pinecone-Api-Version header", code=3)

    def error_body(self, error: ApiError) -> dict[str, Any]:
        """Pinecone's error envelope (the control plane's, or the data plane's gRPC-style one)."""
        if isinstance(error, _ControlPlaneError):
            return {"error": {"code": error.code, "message": error.message}, "status": error.status}
        code = (
            error.code
            if isinstance(error.code, int)
            else {400: 3, 401: 16, 404: 5, 413: 3, 429: 8}.get(error.status, 13)
        )
        return {"code": code, "message": error.message, "details": []}

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
        return {key: float(v) if _is_number(v) else v for key, v in metadata.items()}

    # -- control plane ---------------------------------------------------------------------

    def _list_indexes(self, request: Request) -> dict[str, Any]:
        with self._lock:
            return {"indexes": list(self.indexes.values())}

    def _create_index(self, request: Request) -> dict[str, Any]:
        body = request.body if request.body is not None else {}
        if not isinstance(body, dict):
            raise _ControlPlaneError(400, "request body must be a JSON object")
        unsupported = set(body) - {"name", "schema", "deployment", "deletion_protection", "tags"}
        if unsupported:
            raise _ControlPlaneError(400, f"field(s) this stand-in does not support: {', '.join(sorted(unsupported))}")
        name = body.get("name")
        if not isinstance(name, str) or not _INDEX_NAME.fullmatch(name):
            raise _ControlPlaneError(
                400,
                f"Invalid index name {name!r}: 1-45 lower case alphanumeric characters or '-', starting and "
                "ending with an alphanumeric character (this stand-in does not generate names)",
            )
        protection = body.get("deletion_protection", "disabled")
        if protection not in ("enabled", "disabled"):
            raise _ControlPlaneError(400, f"deletion_protection must be 'enabled' or 'disabled', got {protection!r}")
        tags = body.get("tags")
        if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
            raise _ControlPlaneError(400, "tags must be an object of string values")
        dense = self._dense_field(body.get("schema"))
        model = {
            "name": name,
            "host": f"{self.url}/index/{name}",
            "status": {"ready": True, "state": "Ready"},
            "schema": {"fields": {DENSE_FIELD: dense}},
            "deployment": self._managed_deployment(body.get("deployment")),
            "deletion_protection": protection,
            "tags": tags,
        }
        with self._lock:
            if name in self.indexes:
                raise _ControlPlaneError(409, f"Resource {name} already exists", code="ALREADY_EXISTS")
            self.indexes[name] = model
            self._planes[name] = _DataPlane(dense["dimension"], {})
            self._initializing[name] = self.initializing_describes
        # Like the API, the create answer shows the index still initializing; a describe finds it ready.
        return {**model, "status": {"ready": False, "state": "Initializing"}}

    def _describe_index(self, request: Request) -> dict[str, Any]:
        name = unquote(request.path.removeprefix("/indexes/"))
        with self._lock:
            model = self.indexes.get(name)
            initializing = self._initializing[name] > 0
            if initializing:
                self._initializing[name] -= 1
        if model is None:
            raise _ControlPlaneError(404, f"Resource {name} not found", code="NOT_FOUND")
        return {**model, "status": {"ready": False, "state": "Initializing"}} if initializing else model

    def _delete_index(self, request: Request) -> dict[str, Any]:
        name = unquote(request.path.removeprefix("/indexes/"))
        with self._lock:
            model = self.indexes.get(name)
            if model is None:
                raise _ControlPlaneError(404, f"Resource {name} not found", code="NOT_FOUND")
            if model["deletion_protection"] == "enabled":
                raise _ControlPlaneError(
                    403, f"Deletion protection is enabled for index {name}: disable it first", code="FORBIDDEN"
                )
            del self.indexes[name]
            del self._planes[name]
            self._initializing.pop(name, None)
        return {}

    @staticmethod
    def _dense_field(schema: Any) -> dict[str, Any]:
        fields = schema.get("fields") if isinstance(schema, dict) else None
        if not isinstance(fields, dict) or set(fields) != {DENSE_FIELD}:
            raise _ControlPlaneError(
                400,
                f"this stand-in serves dense vector indexes only: schema.fields must declare exactly "
                f"{DENSE_FIELD!r} (a dimension and a metric), got {schema!r}",
            )
        field = fields[DENSE_FIELD]
        if not isinstance(field, dict) or field.get("type") != "dense_vector":
            raise _ControlPlaneError(400, f"schema.fields.{DENSE_FIELD} must have type 'dense_vector', got {field!r}")
        dimension = field.get("dimension")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= MAX_INDEX_DIMENSION:
            raise _ControlPlaneError(
                400, f"dimension must be an integer between 1 and {MAX_INDEX_DIMENSION}, got {dimension!r}"
            )
        metric = field.get("metric", "cosine")
        if metric not in INDEX_METRICS:
            raise _ControlPlaneError(400, f"metric must be one of {', '.join(INDEX_METRICS)}, got {metric!r}")
        return {"type": "dense_vector", "dimension": dimension, "metric": metric}

    @staticmethod
    def _managed_deployment(deployment: Any) -> dict[str, Any]:
        if deployment is None:  # the API's default deployment
            return {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
        if not isinstance(deployment, dict) or deployment.get("deployment_type") != "managed":
            raise _ControlPlaneError(
                400, f"this stand-in serves serverless indexes only: deployment_type must be 'managed': {deployment!r}"
            )
        cloud, region = deployment.get("cloud"), deployment.get("region")
        if cloud not in SERVERLESS_REGIONS:
            raise _ControlPlaneError(400, f"cloud must be one of {', '.join(SERVERLESS_REGIONS)}, got {cloud!r}")
        if region not in SERVERLESS_REGIONS[cloud]:
            raise _ControlPlaneError(
                400,
                f"Pinecone serverless does not run in {cloud} region {region!r}; "
                f"choose one of {', '.join(SERVERLESS_REGIONS[cloud])}",
            )
        return {"deployment_type": "managed", "cloud": cloud, "region": region}

    # -- data plane ------------------------------------------------------------------------

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
        parsed: dict[str, _StoredVector] = {}
        for i, vector in enumerate(vectors):
            where = f"vectors[{i}]"
            if not isinstance(vector, dict) or set(vector) - {"id", "values", "metadata", "sparseValues"}:
                raise ApiError(400, f"{where}: expected an object with id, values and optional metadata")
            if "sparseValues" in vector:
                raise ApiError(400, f"{where}: this index is dense; sparse values are not supported")
            metadata = self._metadata(vector["metadata"], where) if vector.get("metadata") is not None else None
            parsed[self._id(vector.get("id"), where)] = _StoredVector(
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
        _check_filter(query_filter)
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
                if _matches(query_filter, v.metadata or {})
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
                _check_filter(body["filter"], require_condition=True)
                for vid in [vid for vid, v in stored.items() if _matches(body["filter"], v.metadata or {})]:
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
        _check_filter(body["filter"], require_condition=True)
        with self._lock:
            hits = [
                v for v in plane.namespaces.get(namespace, {}).values() if _matches(body["filter"], v.metadata or {})
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


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _check_filter(query_filter: Any, *, require_condition: bool = False) -> None:
    """Raise ApiError(400) for a filter Pinecone would reject."""
    if not isinstance(query_filter, dict):
        raise ApiError(400, f"filter must be an object, got {query_filter!r}")
    if require_condition and not query_filter:
        raise ApiError(400, "filter must contain at least one condition")
    for key, condition in query_filter.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise ApiError(400, f"{key} takes a non-empty list of filters")
            for part in condition:
                _check_filter(part, require_condition=True)
        elif key.startswith("$"):
            raise ApiError(400, f"unknown top-level filter operator {key}")
        elif isinstance(condition, dict):
            if not condition:
                raise ApiError(400, f"filter on {key!r} has no operator")
            for op, operand in condition.items():
                if op in ("$eq", "$ne") and not _is_scalar(operand):
                    raise ApiError(400, f"{op} on {key!r} takes a string, number or boolean")
                elif op in _COMPARISONS and not _is_number(operand):
                    raise ApiError(400, f"{op} on {key!r} takes a number, got {operand!r}")
                elif op in ("$in", "$nin") and not (
                    isinstance(operand, list) and operand and all(_is_scalar(v) for v in operand)
                ):
                    raise ApiError(400, f"{op} on {key!r} takes a non-empty list of values")
                elif op == "$exists" and not isinstance(operand, bool):
                    raise ApiError(400, f"$exists on {key!r} takes true or false")
                elif op not in ("$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISONS):
                    raise ApiError(400, f"unknown filter operator {op} on {key!r}")
        elif not _is_scalar(condition):
            raise ApiError(400, f"filter on {key!r} must be a value or an operator object")


def _matches(query_filter: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Does a (checked) filter admit this metadata?"""
    for key, condition in query_filter.items():
        if key == "$and":
            ok = all(_matches(part, metadata) for part in condition)
        elif key == "$or":
            ok = any(_matches(part, metadata) for part in condition)
        else:
            ops = condition if isinstance(condition, dict) else {"$eq": condition}
            ok = all(_field_matches(op, operand, key in metadata, metadata.get(key)) for op, operand in ops.items())
        if not ok:
            return False
    return True


def _field_matches(op: str, operand: Any, present: bool, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    if op == "$exists":
        return present == operand
    if op == "$eq":
        return present and any(_same(v, operand) for v in values)
    if op == "$ne":
        return not (present and any(_same(v, operand) for v in values))
    if op == "$in":
        return present and any(_same(v, o) for v in values for o in operand)
    if op == "$nin":
        return not (present and any(_same(v, o) for v in values for o in operand))
    return present and _is_number(value) and _COMPARISONS[op](value, operand)


def _same(a: Any, b: Any) -> bool:
    # JSON has one number type, but true is not 1.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
