"""Secrets Manager reads, done once at cold start. Values are never logged."""

from __future__ import annotations

import json
from functools import lru_cache
from urllib.parse import quote

import boto3
from pydantic import SecretStr

from refarch.settings import ConfigurationError


@lru_cache(maxsize=16)
def secret_string(arn: str, region: str) -> str:
    """The SecretString of a secret."""
    client = boto3.client("secretsmanager", region_name=region)
    return client.get_secret_value(SecretId=arn)["SecretString"]


# How an API key may be stored as JSON (the first field found wins); a plain string works too.
API_KEY_FIELDS = ("apiKey", "api_key", "key", "value")


def secret_text(arn: str, region: str, *, fields: tuple[str, ...]) -> str:
    """A value stored either as a plain string or as JSON with one of `fields` (API keys, passwords, signing keys)."""
    value = secret_string(arn, region)
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):  # a plain string, even one that happens to parse as a JSON number
        return value.strip()
    for name in fields:
        if isinstance(data.get(name), str):
            return str(data[name])
    names = " or ".join(repr(name) for name in fields)
    raise ValueError(f"secret {arn} holds JSON without a {names} text field")


def from_env_or_secret(
    value: SecretStr | None, arn: str | None, region: str, *, what: str, fields: tuple[str, ...]
) -> str | None:
    """The value set in the environment, else the one stored in Secrets Manager; None when neither is set.

    A secret that exists but holds a blank value is a ConfigurationError: running without it (an
    empty edit password would leave editing open) must be a decision, not an accident.
    """
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if not arn:
        return None
    text = secret_text(arn, region, fields=fields)
    if not text.strip():
        raise ConfigurationError(
            f"the {what} secret {arn} is empty: store a value in it (a plain string or JSON "
            f'{{"{fields[0]}": "..."}}) and restart'
        )
    return text


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
