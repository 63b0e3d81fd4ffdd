"""Queries on the `products` table (and its sync status view). Parameterised, always."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg2.extras

from refarch.db import Connection, fetch_one

MAX_DESCRIPTION_CHARS = 100_000
EDITABLE_FIELDS = ("sku", "name", "description", "category", "price")

_COLUMNS = "id, sku, name, description, category, price, created_at, updated_at, version"


@dataclass(frozen=True)
class Product:
    """A row of `products`."""

    id: int
    sku: str
    name: str
    description: str
    category: str
    price: Decimal
    created_at: datetime
    updated_at: datetime
    version: int

    def embedding_text(self) -> str:
        """Exactly what is embedded for this product (its content hash covers this string)."""
        return embedding_text(self.name, self.category, self.description)

    def metadata(self) -> dict[str, Any]:
        """What the vector index stores next to the vector (filters + the link back)."""
        return {
            "product_id": self.id,
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "price": float(self.price),
            "version": self.version,
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "id": self.id,
            "sku": self.sku,
            "name": self.name,
            "description": self.description,
            "category": self.category,
            "price": str(self.price),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "version": self.version,
        }


def embedding_text(name: str, category: str, description: str) -> str:
    """The text embedded for a product: name, category and description."""
    return f"{name}. {category}. {description}"


class StaleVersionError(Exception):
    """Someone else saved the product first; reload and retry."""


class ProductNotFoundError(LookupError):
    """No product has this id (it may have been deleted)."""

    def __init__(self, product_id: int) -> None:
        super().__init__(f"product {product_id} does not exist (it may have been deleted)")
        self.product_id = product_id


# The column limits of 0001_products.sql, checked before the database so people get a message per field.
MAX_SKU_CHARS = 64
MAX_NAME_CHARS = 200
MAX_CATEGORY_CHARS = 64
MAX_PRICE = Decimal("9999999999.99")  # numeric(12, 2)
_TEXT_LIMITS = {
    "sku": MAX_SKU_CHARS,
    "name": MAX_NAME_CHARS,
    "category": MAX_CATEGORY_CHARS,
    "description": MAX_DESCRIPTION_CHARS,
}


class ProductInputError(ValueError):
    """Some fields are invalid: `fields` maps each to a message; `oversized` names those over a size limit."""

    def __init__(self, fields: dict[str, str], oversized: set[str] | None = None) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in fields.items()))
        self.fields = fields
        self.oversized = oversized or set()


def validate_fields(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """Checked, normalised editable fields (all required unless `partial`); else ProductInputError."""
    errors: dict[str, str] = {}
    oversized: set[str] = set()
    clean: dict[str, Any] = {}
    for name in sorted(set(data) - set(EDITABLE_FIELDS)):
        errors[name] = f"not a product field (editable: {', '.join(EDITABLE_FIELDS)})"
    for name, limit in _TEXT_LIMITS.items():
        if name not in data:
            if name == "description" and not partial:
                clean[name] = ""
            elif not partial:
                errors[name] = "is required"
            continue
        value = data[name]
        if not isinstance(value, str):
            errors[name] = "must be text"
            continue
        # Descriptions keep their formatting; identifiers and labels lose stray spaces.
        value = value if name == "description" else value.strip()
        problem = unstorable_text(value)
        if problem:
            errors[name] = problem
        elif name != "description" and not value:
            errors[name] = "cannot be empty"
        elif len(value) > limit:
            errors[name] = f"is {len(value):,} characters; the limit is {limit:,}"
            oversized.add(name)
        else:
            clean[name] = value
    if "price" in data:
        try:
            clean["price"] = parse_price(data["price"])
        except ValueError as err:
            errors["price"] = str(err)
    elif not partial:
        errors["price"] = "is required"
    if errors:
        raise ProductInputError(errors, oversized)
    return clean


def unstorable_text(value: str) -> str | None:
    """Why Postgres cannot store this text (a NUL character, or a lone surrogate that is not UTF-8), else None."""
    if "\x00" in value:
        return "cannot contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds an unpaired surrogate)"
    return None


def parse_price(value: Any) -> Decimal:
    """A price as stored (0 to MAX_PRICE, at most 2 decimals), from a number or a string; else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError("must be a number such as 19.99")
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("must be a number such as 19.99") from None
    if not price.is_finite():
        raise ValueError("must be a number such as 19.99")
    if price < 0:
        raise ValueError("cannot be negative")
    if price > MAX_PRICE:
        raise ValueError(f"cannot be more than {MAX_PRICE:,}")
    if price != price.quantize(Decimal("0.01")):
        raise ValueError("has at most 2 decimal places")
    return price.quantize(Decimal("0.01"))


def _rows(cur: Any) -> list[Product]:
    return [Product(**row) for row in cur.fetchall()]


def get_many(conn: Connection, ids: list[int]) -> dict[int, Product]:
    """The current rows for these ids (missing ids are simply absent)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM products WHERE id = ANY(%s)", (list(ids),))
        return {p.id: p for p in _rows(cur)}


def get(conn: Connection, product_id: int) -> Product | None:
    """One product, or None."""
    return get_many(conn, [product_id]).get(product_id)


def list_page(
    conn: Connection,
    *,
    limit: int,
    offset: int,
    category: str | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
) -> tuple[list[Product], int]:
    """A page of products ordered by id, with the total matching count."""
    where, params = _filters(category, min_price, max_price)
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"SELECT count(*) AS n FROM products {where}", params)
        total = fetch_one(cur)["n"]
        cur.execute(
            f"SELECT {_COLUMNS} FROM products {where} ORDER BY id LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return _rows(cur), total


def _filters(category: str | None, min_price: Decimal | None, max_price: Decimal | None) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if category:
        clauses.append("category = %s")
        params.append(category)
    if min_price is not None:
        clauses.append("price >= %s")
        params.append(min_price)
    if max_price is not None:
        clauses.append("price <= %s")
        params.append(max_price)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def categories(conn: Connection) -> list[str]:
    """Distinct categories, sorted."""
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT category FROM products ORDER BY 1")
        return [r[0] for r in cur.fetchall()]


def create(conn: Connection, fields: dict[str, Any]) -> Product:
    """Insert a product; version and timestamps come from the database."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "INSERT INTO products (sku, name, description, category, price)"
            f" VALUES (%(sku)s, %(name)s, %(description)s, %(category)s, %(price)s) RETURNING {_COLUMNS}",
            fields,
        )
        return _rows(cur)[0]


def update(conn: Connection, product_id: int, fields: dict[str, Any], *, expected_version: int | None) -> Product:
    """Update some fields; with `expected_version`, refuse if the row moved on (optimistic locking)."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    sets = ", ".join(f"{name} = %({name})s" for name in fields) or "id = id"
    params = {**fields, "id": product_id, "expected": expected_version}
    guard = " AND version = %(expected)s" if expected_version is not None else ""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f"UPDATE products SET {sets} WHERE id = %(id)s{guard} RETURNING {_COLUMNS}", params)
        rows = _rows(cur)
    if rows:
        return rows[0]
    if get(conn, product_id) is None:
        raise ProductNotFoundError(product_id)
    raise StaleVersionError(f"product {product_id} was changed by someone else (expected version {expected_version})")


def delete(conn: Connection, product_id: int, *, expected_version: int | None = None) -> None:
    """Delete a product (ProductNotFoundError if absent, StaleVersionError if it moved on)."""
    guard = " AND version = %s" if expected_version is not None else ""
    params = [product_id] + ([expected_version] if expected_version is not None else [])
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM products WHERE id = %s{guard}", params)
        if cur.rowcount:
            return
    if get(conn, product_id) is None:
        raise ProductNotFoundError(product_id)
    raise StaleVersionError(f"product {product_id} was changed by someone else (expected version {expected_version})")


def sync_statuses(conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per-product sync status (indexed / pending / failed + reason) for these ids."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SELECT product_id, version, indexed_version, status, last_error, attempts, indexed_at"
            " FROM product_sync_status WHERE product_id = ANY(%s)",
            (list(ids),),
        )
        return {row["product_id"]: dict(row) for row in cur.fetchall()}
