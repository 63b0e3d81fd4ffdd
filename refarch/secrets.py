"""Secrets Manager reads, done once at cold start. Values are never logged."""

from __future__ import annotations

import json
from functools import lru_cache
from urllib.parse import quote

import boto3


@lru_cache(maxsize=16)
def secret_string(arn: str, region: str) -> str:
    """The SecretString of a secret."""
    client = boto3.client("secretsmanager", region_name=region)
    return client.get_secret_value(SecretId=arn)["SecretString"]


def api_key_from_secret(arn: str, region: str) -> str:
    """An API key stored either as a plain string or as JSON {"apiKey": ...}."""
    value = secret_string(arn, region)
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        return value.strip()
    if isinstance(data, dict):
        for key in ("apiKey", "api_key", "key", "value"):
            if key in data:
                return str(data[key])
    raise ValueError(f"secret {arn} holds JSON without an apiKey field")


def credentials_from_secret(arn: str, region: str) -> tuple[str, str]:
    """(username, password) from an RDS-style credentials secret."""
    data = json.loads(secret_string(arn, region))
    return str(data["username"]), str(data["password"])


def database_url_from_secret(arn: str, region: str) -> str:
    """A libpq URL (TLS required) from an RDS-generated credentials secret."""
    data = json.loads(secret_string(arn, region))
    user = quote(data["username"], safe="")
    password = quote(data["password"], safe="")
    dbname = data.get("dbname", "postgres")
    return f"postgresql://{user}:{password}@{data['host']}:{data.get('port', 5432)}/{dbname}?sslmode=require"


def text_from_secret(arn: str, region: str, *, json_field: str) -> str:
    """A value stored either as a plain string or as JSON {json_field: ...} (passwords, signing keys)."""
    value = secret_string(arn, region)
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):  # a plain string, even one that happens to parse as a JSON number
        return value.strip()
    if not isinstance(data.get(json_field), str):
        raise ValueError(f"secret {arn} holds JSON without a {json_field!r} text field")
    return str(data[json_field])
