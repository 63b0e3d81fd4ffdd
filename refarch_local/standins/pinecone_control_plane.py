"""The Pinecone stand-in's control plane: list, create (validated as the API does), describe and delete indexes."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any
from urllib.parse import unquote

from refarch_local.standins.pinecone_data_plane import IndexVectors
from refarch_local.standins.server import ApiError, Request, StandInServer

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
INDEX_PATH = re.compile(r"/indexes/[^/]+")


class ControlPlaneError(ApiError):
    """An error from the control plane, which answers in another envelope than the data plane."""

    def __init__(self, status: int, message: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(status, message, code=code)


class PineconeControlPlane(StandInServer):
    """The indexes API: dense serverless indexes, each with a data plane of its own at `<url>/index/<name>`.

    `indexes` holds each index as a ready describe answers it; a new one is ready at once, or
    after `initializing_describes` describes that find it still initializing.
    """

    # Set by PineconeStandIn.__init__.
    indexes: dict[str, dict[str, Any]]
    initializing_describes: int
    _initializing: Counter[str]
    _planes: dict[str, IndexVectors]

    def _list_indexes(self, request: Request) -> dict[str, Any]:
        with self._lock:
            return {"indexes": list(self.indexes.values())}

    def _create_index(self, request: Request) -> dict[str, Any]:
        body = request.body if request.body is not None else {}
        if not isinstance(body, dict):
            raise ControlPlaneError(400, "request body must be a JSON object")
        unsupported = set(body) - {"name", "schema", "deployment", "deletion_protection", "tags"}
        if unsupported:
            raise ControlPlaneError(400, f"field(s) this stand-in does not support: {', '.join(sorted(unsupported))}")
        name = body.get("name")
        if not isinstance(name, str) or not _INDEX_NAME.fullmatch(name):
            raise ControlPlaneError(
                400,
                f"Invalid index name {name!r}: 1-45 lower case alphanumeric characters or '-', starting and "
                "ending with an alphanumeric character (this stand-in does not generate names)",
            )
        protection = body.get("deletion_protection", "disabled")
        if protection not in ("enabled", "disabled"):
            raise ControlPlaneError(400, f"deletion_protection must be 'enabled' or 'disabled', got {protection!r}")
        tags = body.get("tags")
        if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
            raise ControlPlaneError(400, "tags must be an object of string values")
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
                raise ControlPlaneError(409, f"Resource {name} already exists", code="ALREADY_EXISTS")
            self.indexes[name] = model
            self._planes[name] = IndexVectors(dense["dimension"], {})
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
            raise ControlPlaneError(404, f"Resource {name} not found", code="NOT_FOUND")
        return {**model, "status": {"ready": False, "state": "Initializing"}} if initializing else model

    def _delete_index(self, request: Request) -> dict[str, Any]:
        name = unquote(request.path.removeprefix("/indexes/"))
        with self._lock:
            model = self.indexes.get(name)
            if model is None:
                raise ControlPlaneError(404, f"Resource {name} not found", code="NOT_FOUND")
            if model["deletion_protection"] == "enabled":
                raise ControlPlaneError(
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
            raise ControlPlaneError(
                400,
                f"this stand-in serves dense vector indexes only: schema.fields must declare exactly "
                f"{DENSE_FIELD!r} (a dimension and a metric), got {schema!r}",
            )
        field = fields[DENSE_FIELD]
        if not isinstance(field, dict) or field.get("type") != "dense_vector":
            raise ControlPlaneError(400, f"schema.fields.{DENSE_FIELD} must have type 'dense_vector', got {field!r}")
        dimension = field.get("dimension")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= MAX_INDEX_DIMENSION:
            raise ControlPlaneError(
                400, f"dimension must be an integer between 1 and {MAX_INDEX_DIMENSION}, got {dimension!r}"
            )
        metric = field.get("metric", "cosine")
        if metric not in INDEX_METRICS:
            raise ControlPlaneError(400, f"metric must be one of {', '.join(INDEX_METRICS)}, got {metric!r}")
        return {"type": "dense_vector", "dimension": dimension, "metric": metric}

    @staticmethod
    def _managed_deployment(deployment: Any) -> dict[str, Any]:
        if deployment is None:  # the API's default deployment
            return {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
        if not isinstance(deployment, dict) or deployment.get("deployment_type") != "managed":
            raise ControlPlaneError(
                400, f"this stand-in serves serverless indexes only: deployment_type must be 'managed': {deployment!r}"
            )
        cloud, region = deployment.get("cloud"), deployment.get("region")
        if cloud not in SERVERLESS_REGIONS:
            raise ControlPlaneError(400, f"cloud must be one of {', '.join(SERVERLESS_REGIONS)}, got {cloud!r}")
        if region not in SERVERLESS_REGIONS[cloud]:
            raise ControlPlaneError(
                400,
                f"Pinecone serverless does not run in {cloud} region {region!r}; "
                f"choose one of {', '.join(SERVERLESS_REGIONS[cloud])}",
            )
        return {"deployment_type": "managed", "cloud": cloud, "region": region}
