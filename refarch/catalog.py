"""A deterministic, realistic product catalog for demos, tests and benchmarks.

Product number i depends only on i, so `--rows 100` is a prefix of `--rows 1000`, and re-running
the seed inserts nothing new (rows are keyed by SKU). Every phrase belongs to one kind of product,
so a description never claims something its product cannot do. Descriptions are written so that
semantic search has something to find: AI software is described as "machine learning", "neural
networks" or "predictive" without the word "AI", while ordinary software is not.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from refarch.db import Connection, fetch_one


@dataclass(frozen=True)
class ProductKind:
    """One kind of product (a noun), what is true of it and whom it suits.

    Traits are verb phrases that follow the product's name ("... has a battery that lasts all week");
    they agree with a plural noun ("Running Shoes cushion ...") when `plural` is set. Any two traits of
    a kind must read well together.
    """

    noun: str
    price_range: tuple[int, int]
    traits: tuple[str, ...]
    uses: tuple[str, ...]
    plural: bool = False


@dataclass(frozen=True)
class CategoryTemplate:
    """How to make believable products of one category."""

    code: str
    kinds: tuple[ProductKind, ...]
    adjectives: tuple[str, ...]


def _load(path: Path) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, CategoryTemplate]]:
    """Brands, description shapes and category templates from the catalog's data file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    categories = {
        name: CategoryTemplate(
            code=spec["code"],
            kinds=tuple(
                ProductKind(
                    noun=kind["noun"],
                    price_range=(kind["price_range"][0], kind["price_range"][1]),
                    traits=tuple(kind["traits"]),
                    uses=tuple(kind["uses"]),
                    plural=kind.get("plural", False),
                )
                for kind in spec["kinds"]
            ),
            adjectives=tuple(spec["adjectives"]),
        )
        for name, spec in data["categories"].items()
    }
    return tuple(data["brands"]), tuple(data["description_shapes"]), categories


# The words live in a data file beside this module. How a description is put together (a shape):
# {both} is "<first trait> and <second trait>"; {it} and {be} agree with the noun ("it is" / "they are").
BRANDS, DESCRIPTION_SHAPES, CATEGORIES = _load(Path(__file__).with_name("catalog.json"))

CATEGORY_NAMES = tuple(CATEGORIES)


@dataclass(frozen=True)
class SeedProduct:
    """One generated catalog row."""

    sku: str
    name: str
    description: str
    category: str
    price: Decimal
    # What the text says, as data (relevance judgements are derived from these, not from search output).
    brand: str = ""
    kind: str = ""
    traits: tuple[str, ...] = ()


def make_product(i: int) -> SeedProduct:
    """The i-th catalog product (1-based); the same i always gives the same product."""
    rng = random.Random(i * 1_000_003 + 7)
    category = CATEGORY_NAMES[rng.randrange(len(CATEGORY_NAMES))]
    t = CATEGORIES[category]
    kind = rng.choice(t.kinds)
    brand = rng.choice(BRANDS)
    name = f"{brand} {rng.choice(t.adjectives)} {kind.noun}"
    first, second = rng.sample(kind.traits, 2)
    verb, rest = second.split(" ", 1)
    # "has a timer and a crumb tray", not "has a timer and has a crumb tray".
    shares_verb = verb in ("has", "have") and first.startswith(f"{verb} ") and " and " not in rest
    both = f"{first} and {rest if shares_verb else second}"
    description = rng.choice(DESCRIPTION_SHAPES).format(
        name=name,
        both=both,
        first=first,
        second=second,
        use=rng.choice(kind.uses),
        it="they" if kind.plural else "it",
        be="are" if kind.plural else "is",
    )
    low, high = kind.price_range
    # Whole prices ending in .99, as shops price things.
    price = Decimal(rng.randint(low, high)) - Decimal("0.01")
    return SeedProduct(
        sku=f"{t.code}-{i:07d}",
        name=name,
        description=description,
        category=category,
        price=price,
        brand=brand,
        kind=kind.noun,
        traits=(first, second),
    )


def seed_if_empty(conn: Connection, rows: int) -> int | None:
    """Seed only an empty catalog (demo start, deploy): existing rows and their edits are kept. None if skipped."""
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM products)")
        if fetch_one(cur)[0]:
            conn.rollback()
            return None
    return seed(conn, rows)


def seed(conn: Connection, rows: int) -> int:
    """Load products 1..rows with COPY (through a staging table); return how many were new."""
    buf = io.StringIO()
    for i in range(1, rows + 1):
        p = make_product(i)
        buf.write("\t".join((str(i), p.sku, p.name, p.description, p.category, str(p.price))) + "\n")
    buf.seek(0)
    with conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE seed_products (n integer, sku text, name text, description text, category text,"
            " price numeric) ON COMMIT DROP"
        )
        cur.copy_expert("COPY seed_products (n, sku, name, description, category, price) FROM STDIN", buf)
        # Rows go through the normal triggers: seeding is a change like any other.
        cur.execute(
            "INSERT INTO products (sku, name, description, category, price)"
            " SELECT sku, name, description, category, price FROM seed_products ORDER BY n"
            " ON CONFLICT (sku) DO NOTHING"
        )
        return cur.rowcount
