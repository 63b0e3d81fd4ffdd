"""Queries on the `products` table (and its sync status view). Parameterised, always."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

import psycopg2.extras
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from refarch.db import Connection, fetch_one
from refarch.index.port import SearchFilter
from refarch.input_errors import LABEL_PATTERN, TEXT_PATTERN, field_messages

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
MAX_ID = 2**63 - 1  # bigint: a larger id or version cannot exist
# A price written as text: digits with at most 2 decimals, spaces around allowed ("19.99", " 7 ", ".5").
PRICE_TEXT_PATTERN = r"^ *([0-9]{1,10}(\.[0-9]{0,2})?|\.[0-9]{1,2}) *$"


class ProductInputError(ValueError):
    """Some fields are invalid: `fields` maps each to a message; `oversized` names those over a size limit."""

    def __init__(self, fields: dict[str, str], oversized: set[str] | None = None) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in fields.items()))
        self.fields = fields
        self.oversized = oversized or set()


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
    if isinstance(value, str) and not re.fullmatch(PRICE_TEXT_PATTERN, value):
        raise ValueError("must be written as digits with at most 2 decimals, such as 19.99")
    return price.quantize(Decimal("0.01"))


def _price(value: Any) -> Decimal:
    try:
        return parse_price(value)
    except ValueError as err:
        raise PydanticCustomError("price", str(err)) from None


def _whole_number(value: Any) -> Any:
    # JSON true and "2" are not versions; 2.0 is (JSON has one number type).
    if isinstance(value, (bool, str)):
        raise PydanticCustomError("int_type", "must be a whole number")
    return value


# Text with a visible character and without NUL; stored without surrounding spaces.
Sku = Annotated[
    str,
    Field(max_length=MAX_SKU_CHARS, pattern=LABEL_PATTERN, description="Stock-keeping unit, unique"),
    AfterValidator(str.strip),
]
Name = Annotated[
    str, Field(max_length=MAX_NAME_CHARS, pattern=LABEL_PATTERN, description="Product name"), AfterValidator(str.strip)
]
Category = Annotated[
    str,
    Field(max_length=MAX_CATEGORY_CHARS, pattern=LABEL_PATTERN, description="Category (filters match it exactly)"),
    AfterValidator(str.strip),
]
Description = Annotated[
    str,
    Field(max_length=MAX_DESCRIPTION_CHARS, pattern=TEXT_PATTERN, description="Free text; formatting is kept"),
]
Price = Annotated[
    Decimal,
    PlainValidator(_price),
    PlainSerializer(str),
    WithJsonSchema(
        {
            "description": "A number or a string with at most 2 decimals, 0 to 9999999999.99 (numeric(12, 2))",
            "oneOf": [
                {"type": "number", "minimum": 0, "maximum": float(MAX_PRICE), "multipleOf": 0.01},
                {"type": "string", "pattern": PRICE_TEXT_PATTERN, "examples": ["19.99"]},
            ],
        }
    ),
]
Version = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_whole_number)]

# How a refusal is worded where the generic wording (refarch.input_errors) would not say it best.
_MESSAGES = {
    ("*", "extra_forbidden"): f"not a product field (editable: {', '.join(EDITABLE_FIELDS)})",
    ("version", "finite_number"): "must be a whole number",
    ("version", "greater_than_equal"): "out of range",
    ("version", "less_than_equal"): "out of range",
}


def _optional_not_null(schema: dict[str, Any]) -> None:
    # An optional field may be left out, not sent as null: document it as its type alone.
    for name, field_schema in schema.get("properties", {}).items():
        branches = [branch for branch in field_schema.pop("anyOf", []) if branch != {"type": "null"}]
        if len(branches) == 1:
            field_schema.update(branches[0])
        if field_schema.get("default", "") is None:
            del field_schema["default"]
        schema["properties"][name] = field_schema


class NewProduct(BaseModel):
    """A product to add (POST /api/products)."""

    model_config = ConfigDict(extra="forbid")

    sku: Sku
    name: Name
    category: Category
    price: Price
    description: Description = ""


class ProductChange(BaseModel):
    """The version the client saw and the fields it changes (PUT /api/products/{id}); others stay."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_optional_not_null)

    version: Annotated[Version, Field(description="The version you last saw (optimistic locking)")]
    sku: Sku | None = None
    name: Name | None = None
    category: Category | None = None
    price: Price | None = None
    description: Description | None = None

    @field_validator("sku", "name", "category", "price", "description", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        # Absent means unchanged; null is no value a column can take.
        if value is None:
            kind = "a number such as 19.99" if info.field_name == "price" else "text"
            raise PydanticCustomError("not_null", f"must be {kind}")
        return value


def validate_new(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of a new product, checked and normalised; else ProductInputError."""
    return _validated(NewProduct, data).model_dump()


def validate_change(data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(the version the client saw, the fields it changes), checked and normalised; else ProductInputError."""
    change = _validated(ProductChange, data)
    return change.version, change.model_dump(exclude={"version"}, exclude_unset=True)


_Model = TypeVar("_Model", bound=BaseModel)


def _validated(model: type[_Model], data: dict[str, Any]) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        fields, oversized = field_messages(err, _MESSAGES)
        raise ProductInputError(fields, oversized) from None


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
    count_limit: int | None = None,
) -> tuple[list[Product], int]:
    """A page of products ordered by id, with the matching count.

    With `count_limit` the count stops at count_limit + 1 rows (more than the limit, without how many):
    a count over a whole large table is a scan a public caller should not be able to repeat at will.
    """
    where, params = _filters(category, min_price, max_price)
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        if count_limit is None:
            cur.execute(f"SELECT count(*) AS n FROM products {where}", params)
        else:
            cur.execute(
                f"SELECT count(*) AS n FROM (SELECT 1 FROM products {where} LIMIT %s) AS matching",
                [*params, count_limit + 1],
            )
        total = fetch_one(cur)["n"]
        cur.execute(
            f"SELECT {_COLUMNS} FROM products {where} ORDER BY id LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return _rows(cur), total


def _filters(category: str | None, min_price: Decimal | None, max_price: Decimal | None) -> tuple[str, list[object]]:
    conditions, params = SearchFilter(
        category=category or None,
        min_price=float(min_price) if min_price is not None else None,
        max_price=float(max_price) if max_price is not None else None,
    ).sql_conditions()
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), params


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
