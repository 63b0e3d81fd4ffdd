"""Writes to a table brought by its owner (the JSON API of a source other than products).

What a signed-in person may write is the definition's `edit` columns, with their types, limits and
`required`; the models are made from the definition (`input_models`), so a refusal names each field.
Rows are addressed by their id (source_keys) and written by their key; the capture triggers give
the versions and write the outbox. Optimistic locking: the key's row in source_keys is locked
before the write, and its version compared with the one the client saw.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, create_model

from refarch.db import Connection
from refarch.input_errors import LABEL_PATTERN, TEXT_PATTERN, field_messages
from refarch.products import MAX_ID, ProductInputError
from refarch.source.definition import Column, Source
from refarch.source.records import Record, get_many


class RowNotFoundError(LookupError):
    """No row has this id (it may have been deleted)."""

    def __init__(self, source: Source, row_id: int) -> None:
        super().__init__(f"{source.name} row {row_id} does not exist (it may have been deleted)")


class StaleRowError(Exception):
    """Someone else saved the row first; reload and retry."""


# Short text (a title, a name) must show a visible character; long text is free (formatting kept).
_LONG_TEXT = 1_000


def _field(column: Column) -> Any:
    if column.type == "text":
        pattern = LABEL_PATTERN if column.required or (column.max_length or _LONG_TEXT) < _LONG_TEXT else TEXT_PATTERN
        return Annotated[str, Field(max_length=column.max_length, pattern=pattern, description=column.title)]
    return {
        "number": Annotated[Decimal, Field(allow_inf_nan=False, description=column.title)],
        "integer": Annotated[int, Field(strict=True, description=column.title)],
        "boolean": Annotated[StrictBool, Field(description=column.title)],
        "timestamp": Annotated[datetime, Field(description=column.title)],
    }[column.type]


@functools.cache
def input_models(source: Source) -> tuple[type[BaseModel], type[BaseModel]]:
    """(new row, change) models of the definition's editable columns (extra fields refused)."""
    config = ConfigDict(extra="forbid")
    editable = [c for c in source.columns if c.edit]
    key_type: Any = {"uuid": uuid.UUID, "bigint": Annotated[int, Field(ge=1, le=MAX_ID)], "text": str}[source.key_type]
    new_fields: dict[str, Any] = {source.key: (key_type | None, None)}
    new_fields |= {c.name: (_field(c), ...) if c.required else (_field(c) | None, None) for c in editable}
    change_fields: dict[str, Any] = {"version": (Annotated[int, Field(ge=1, le=MAX_ID)], ...)}
    change_fields |= {c.name: (_field(c) | None, None) for c in editable}
    name = source.name.capitalize()
    new: type[BaseModel] = create_model(f"New{name}Row", __config__=config, **new_fields)
    change: type[BaseModel] = create_model(f"{name}RowChange", __config__=config, **change_fields)
    return new, change


def _validated(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        fields, oversized = field_messages(err, {("*", "extra_forbidden"): "not an editable field"})
        raise ProductInputError(fields, oversized) from None


def validate_new(source: Source, data: dict[str, Any]) -> dict[str, Any]:
    """The fields of a new row, checked (ProductInputError names each wrong field)."""
    fields = _validated(input_models(source)[0], data).model_dump(exclude_unset=True)
    if fields.get(source.key) is None:
        fields.pop(source.key, None)
        if source.key_type == "uuid":
            fields[source.key] = uuid.uuid4()  # the table may have no default for it
    return fields


def validate_change(source: Source, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(the version the client saw, the fields it changes), checked; a null for a required column is refused."""
    change = _validated(input_models(source)[1], data).model_dump(exclude_unset=True)
    version = change.pop("version")
    missing = {name: "is required" for name, value in change.items() if value is None and source.column(name).required}
    if missing:
        raise ProductInputError(missing)
    return version, change


def _sql_values(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: str(value) if isinstance(value, uuid.UUID) else value for name, value in fields.items()}


def create(conn: Connection, source: Source, fields: dict[str, Any]) -> Record:
    """Insert a row; its id and version come from the capture."""
    names = ", ".join(f'"{name}"' for name in fields)
    values = ", ".join(f"%({name})s" for name in fields)
    with conn.cursor() as cur:
        cur.execute(
            f'INSERT INTO {source.qualified_table} ({names}) VALUES ({values}) RETURNING "{source.key}"::text',
            _sql_values(fields),
        )
        (key,) = cur.fetchone() or (None,)
        cur.execute("SELECT id FROM source_records WHERE key = %s", (key,))
        (row_id,) = cur.fetchone() or (None,)
    return get_many(conn, source, [row_id])[row_id]


def _locked_key(conn: Connection, source: Source, row_id: int, expected_version: int | None) -> str:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT key, version FROM source_keys WHERE id = %s AND source = %s AND present FOR UPDATE",
            (row_id, source.qualified_table),
        )
        found = cur.fetchone()
    if found is None:
        raise RowNotFoundError(source, row_id)
    if expected_version is not None and found[1] != expected_version:
        raise StaleRowError(
            f"{source.name} row {row_id} was changed by someone else (expected version {expected_version})"
        )
    return str(found[0])


def update(
    conn: Connection, source: Source, row_id: int, fields: dict[str, Any], *, expected_version: int | None
) -> Record:
    """Change some editable columns; with `expected_version`, refuse if the row moved on."""
    key = _locked_key(conn, source, row_id, expected_version)
    if fields:
        sets = ", ".join(f'"{name}" = %({name})s' for name in fields)
        with conn.cursor() as cur:
            cur.execute(
                f'UPDATE {source.qualified_table} SET {sets} WHERE "{source.key}" = %(refarch_key)s::{source.key_type}',
                {**_sql_values(fields), "refarch_key": key},
            )
    return get_many(conn, source, [row_id])[row_id]


def delete(conn: Connection, source: Source, row_id: int, *, expected_version: int | None = None) -> None:
    """Delete a row (RowNotFoundError if absent, StaleRowError if it moved on)."""
    key = _locked_key(conn, source, row_id, expected_version)
    with conn.cursor() as cur:
        cur.execute(f'DELETE FROM {source.qualified_table} WHERE "{source.key}" = %s::{source.key_type}', (key,))
