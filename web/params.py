"""Reading query-string and JSON values into the types the search service and the products module take."""

from __future__ import annotations

import math
from typing import Any

from werkzeug.datastructures import MultiDict

from refarch.search import SearchInputError
from web.errors import ApiError

DEFAULT_K = 20
MAX_DB_ID = 2**63 - 1  # bigint: a larger id cannot exist, so it is "not found", not a database error
MAX_STATUS_IDS = 200


def search_args(args: MultiDict[str, str]) -> dict[str, Any]:
    """Keyword arguments for SearchService.search from ?q=&k=&page=&category=&min_price=&max_price=&mode=.

    Malformed numbers raise SearchInputError; ranges are checked by the search service itself.
    """
    return {
        "query": args.get("q", ""),
        "k": _whole_number(args, "k", DEFAULT_K),
        "page": _whole_number(args, "page", 1),
        "category": args.get("category", "").strip() or None,
        "min_price": _price(args, "min_price"),
        "max_price": _price(args, "max_price"),
        "mode": args.get("mode", ""),
    }


def _whole_number(args: MultiDict[str, str], name: str, default: int) -> int:
    raw = args.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SearchInputError(f"{name} must be a whole number, not {raw[:20]!r}") from None


def _price(args: MultiDict[str, str], name: str) -> float | None:
    raw = args.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SearchInputError(f"{name} must be a number such as 19.99, not {raw[:20]!r}") from None
    if not math.isfinite(value):
        raise SearchInputError(f"{name} must be a finite number")
    return value


def product_id_list(raw: str) -> list[int]:
    """Ids from "1,2,3" (at most MAX_STATUS_IDS); ApiError 400 when malformed."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise ApiError(400, "ids is required: a comma-separated list of product ids", {"ids": "is required"})
    if len(parts) > MAX_STATUS_IDS:
        raise ApiError(400, f"at most {MAX_STATUS_IDS} ids per request", {"ids": "too many"})
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise ApiError(400, "ids must be whole numbers separated by commas", {"ids": "not a list of ids"}) from None
    if any(not 1 <= i <= MAX_DB_ID for i in ids):
        raise ApiError(400, "ids must be positive product ids", {"ids": "out of range"})
    return ids


def version_value(value: Any, *, required: bool) -> int | None:
    """The product version a client saw (an integer >= 1); ApiError 400 when missing or malformed."""
    if value is None or value == "":
        if required:
            raise ApiError(
                400,
                "send the version you last saw, so a concurrent edit is not overwritten",
                {"version": "is required"},
            )
        return None
    if isinstance(value, bool):
        raise ApiError(400, "version must be a whole number", {"version": "must be a whole number"})
    try:
        version = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON 1e400 parses as infinity
        raise ApiError(400, "version must be a whole number", {"version": "must be a whole number"}) from None
    if isinstance(value, float) and value != version:
        raise ApiError(400, "version must be a whole number", {"version": "must be a whole number"})
    if not 1 <= version <= MAX_DB_ID:
        raise ApiError(400, "version must be 1 or more", {"version": "out of range"})
    return version
