"""Pinecone metadata filters, as the stand-in checks and applies them ($eq ... $exists, $and, $or)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from refarch_local.standins.server import ApiError

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def is_number(value: Any) -> bool:
    """True for a JSON number (a boolean is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or is_number(value)


def check_filter(query_filter: Any, *, require_condition: bool = False) -> None:
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
                check_filter(part, require_condition=True)
        elif key.startswith("$"):
            raise ApiError(400, f"unknown top-level filter operator {key}")
        elif isinstance(condition, dict):
            if not condition:
                raise ApiError(400, f"filter on {key!r} has no operator")
            for op, operand in condition.items():
                if op in ("$eq", "$ne") and not _is_scalar(operand):
                    raise ApiError(400, f"{op} on {key!r} takes a string, number or boolean")
                elif op in _COMPARISONS and not is_number(operand):
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


def matches_filter(query_filter: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Does a (checked) filter admit this metadata?"""
    for key, condition in query_filter.items():
        if key == "$and":
            ok = all(matches_filter(part, metadata) for part in condition)
        elif key == "$or":
            ok = any(matches_filter(part, metadata) for part in condition)
        else:
            ops = condition if isinstance(condition, dict) else {"$eq": condition}
            ok = all(_field_matches(op, operand, key in metadata, metadata.get(key)) for op, operand in ops.items())
        if not ok:
            return False
    return True


def _field_matches(op: str, operand: Any, present: bool, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    if op == "$exists":
        exists: bool = present == operand
        return exists
    if op == "$eq":
        return present and any(_same(v, operand) for v in values)
    if op == "$ne":
        return not (present and any(_same(v, operand) for v in values))
    if op == "$in":
        return present and any(_same(v, o) for v in values for o in operand)
    if op == "$nin":
        return not (present and any(_same(v, o) for v in values for o in operand))
    return present and is_number(value) and _COMPARISONS[op](value, operand)


def _same(a: Any, b: Any) -> bool:
    # JSON has one number type, but true is not 1.
    return isinstance(a, bool) == isinstance(b, bool) and a == b
