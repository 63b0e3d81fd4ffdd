"""Pydantic's validation errors as the short messages people read, one per field.

The request models (`refarch.products`, `refarch.search.service`, `web.contract`) declare each limit once;
pydantic checks it and the OpenAPI document states it. This module only words the refusal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# Postgres text cannot hold NUL characters; JSON Schema states it as a pattern. Written as "no NUL
# characters, or nothing" (the same strings as `^[^\x00]*$`) because schemathesis folds a field's
# maxLength into a pattern of that plain form: a 100,000-fold repetition (a description's limit),
# which cost it ~1 s to compile for each request shape it derived (the API contract test: 55 s -> 13 s).
TEXT_PATTERN = r"^(?:[^\x00]*|)$"
# Text without NUL that holds at least one visible character: not whitespace, and not a control
# character, which Python's str.strip (applied after) removes as whitespace too (names, SKUs,
# categories). Stated explicitly, so JSON Schema tools and pydantic agree on it.
LABEL_PATTERN = r"^[^\x00]*[^\s\x00-\x1f\x7f][^\x00]*$"

_WHOLE_NUMBER_ERRORS = {"int_parsing", "int_type", "int_from_float", "int_parsing_size"}
_NUMBER_ERRORS = {"float_parsing", "float_type", "decimal_parsing", "decimal_type"}


def unstorable_text(value: str) -> str | None:
    """Why Postgres cannot store this text (a NUL character, or a lone surrogate that is not UTF-8), else None."""
    if "\x00" in value:
        return "cannot contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds an unpaired surrogate)"
    return None


def field_messages(
    err: ValidationError, overrides: Mapping[tuple[str, str], str] | None = None
) -> tuple[dict[str, str], set[str]]:
    """({field: message}, fields over a length limit) for a failed validation.

    `overrides` words one (field, pydantic error type) differently, e.g. ("k", "less_than_equal");
    the field "*" stands for any field. The first error of a field wins.
    """
    messages: dict[str, str] = {}
    oversized: set[str] = set()
    for error in err.errors():
        name = str(error["loc"][0]) if error["loc"] else "body"
        if name in messages:
            continue
        words = overrides or {}
        messages[name] = words.get((name, error["type"])) or words.get(("*", error["type"])) or message_for(error)
        if error["type"] == "string_too_long":
            oversized.add(name)
    return messages, oversized


def message_for(error: ErrorDetails) -> str:
    """One error in plain words (without the field's name)."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    echo = f", not {value[:20]!r}" if isinstance(value, str) and value.strip() else ""
    if kind == "missing":
        return "is required"
    if kind == "string_type":
        return "must be text"
    if kind == "string_unicode":
        return "is not valid Unicode text (it holds an unpaired surrogate)"
    if kind == "string_too_short":
        return "cannot be empty"
    if kind == "string_pattern_mismatch":
        return (unstorable_text(value) if isinstance(value, str) else None) or "cannot be empty"
    if kind == "string_too_long":
        length = len(value) if isinstance(value, str) else 0
        return f"is {length:,} characters; the limit is {ctx.get('max_length', 0):,}"
    if kind in _WHOLE_NUMBER_ERRORS:
        return f"must be a whole number{echo}"
    if kind in _NUMBER_ERRORS:
        return f"must be a number such as 19.99{echo}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be {_number(ctx.get('ge', ctx.get('gt')))} or more"
    if kind in ("less_than_equal", "less_than"):
        return f"must be {_number(ctx.get('le', ctx.get('lt')))} or less"
    if kind in ("too_long", "too_short"):
        return f"must hold {ctx.get('min_length', 1)} to {ctx.get('max_length', 1)} items"
    if kind == "literal_error":
        choices = str(ctx.get("expected", "")).replace(" or ", ", ").replace("'", "")
        return f"must be one of {choices}{echo}"
    # Custom checks (value_error, or PydanticCustomError) carry their own words.
    return str(error["msg"]).removeprefix("Value error, ")


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)
