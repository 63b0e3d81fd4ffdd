"""A deterministic, realistic product catalog for demos, tests and benchmarks.

Product number i depends only on i, so `--rows 100` is a prefix of `--rows 1000`, and re-running
the seed inserts nothing new (rows are keyed by SKU). Descriptions are written so that semantic
search has something to find: AI software is often described as "machine learning",
"neural" or "predictive" without the word "AI".
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from decimal import Decimal

from refarch.db import Connection


@dataclass(frozen=True)
class CategoryTemplate:
    """How to make believable products of one category."""

    code: str
    nouns: tuple[str, ...]
    traits: tuple[str, ...]
    uses: tuple[str, ...]
    price_range: tuple[int, int]


BRANDS = (
    "Acme",
    "Northwind",
    "Lumen",
    "Vertex",
    "Bluebird",
    "Cedar & Co",
    "Helix",
    "Orbit",
    "Kestrel",
    "Nimbus",
    "Tundra",
    "Marlow",
    "Quartz",
    "Juniper",
    "Sable",
    "Atlas",
    "Pioneer",
    "Everly",
)

ADJECTIVES = (
    "Classic",
    "Pro",
    "Compact",
    "Ultra",
    "Essential",
    "Smart",
    "Deluxe",
    "Lite",
    "Max",
    "Prime",
    "Studio",
    "Urban",
    "Nova",
    "Core",
    "Flex",
)

CATEGORIES: dict[str, CategoryTemplate] = {
    "software": CategoryTemplate(
        "SW",
        (
            "Analytics Suite",
            "Forecasting Engine",
            "Vision API",
            "Chat Assistant",
            "Recommendation Engine",
            "Document Classifier",
            "Backup Manager",
            "Password Vault",
            "Invoice App",
            "Project Planner",
            "Photo Editor",
            "Code Review Bot",
            "Speech Transcriber",
            "Fraud Detector",
            "Email Client",
        ),
        (
            "uses machine learning to spot patterns in your data",
            "is powered by neural networks trained on millions of examples",
            "offers predictive analytics that learn from your history",
            "brings deep learning models to everyday workflows",
            "runs natural language processing on every document",
            "is built on a large language model that answers questions in plain English",
            "keeps your files encrypted end to end",
            "syncs across desktop and mobile",
            "has a clean interface with keyboard shortcuts for everything",
            "integrates with the tools your team already uses",
        ),
        (
            "for small businesses",
            "for data teams",
            "for developers",
            "for finance departments",
            "for marketing teams",
            "for home users",
        ),
        (9, 499),
    ),
    "electronics": CategoryTemplate(
        "EL",
        (
            "Wireless Earbuds",
            "Bluetooth Speaker",
            "4K Monitor",
            "Mechanical Keyboard",
            "USB-C Hub",
            "Noise-Cancelling Headphones",
            "Smartwatch",
            "Portable Charger",
            "Action Camera",
            "E-Reader",
            "Wi-Fi Router",
            "Gaming Mouse",
            "Webcam",
            "Tablet",
            "Soundbar",
        ),
        (
            "delivers crisp sound with deep bass",
            "charges fully in under an hour",
            "has a battery that lasts all week",
            "connects instantly over Bluetooth 5.3",
            "features a bright, color-accurate display",
            "is light enough to carry everywhere",
            "supports fast charging over USB-C",
            "pairs with phones, tablets and laptops",
            "has on-device voice recognition that learns your accent",
            "is built from recycled aluminium",
        ),
        ("for commuters", "for gamers", "for remote work", "for travel", "for content creators", "for students"),
        (15, 1200),
    ),
    "furniture": CategoryTemplate(
        "FU",
        (
            "Standing Desk",
            "Office Chair",
            "Bookshelf",
            "Sofa",
            "Coffee Table",
            "Bed Frame",
            "Dining Table",
            "Wardrobe",
            "Nightstand",
            "Bar Stool",
            "Recliner",
            "Shoe Rack",
        ),
        (
            "is made of solid oak with a natural finish",
            "assembles in fifteen minutes without tools",
            "has an ergonomic design that supports your back",
            "is upholstered in stain-resistant fabric",
            "adjusts smoothly with a quiet electric motor",
            "fits neatly into small apartments",
            "is crafted from sustainably sourced walnut",
            "comes with a ten-year warranty",
        ),
        ("for the living room", "for home offices", "for bedrooms", "for studio apartments", "for the dining room"),
        (40, 2500),
    ),
    "kitchen": CategoryTemplate(
        "KI",
        (
            "Chef's Knife",
            "Cast Iron Skillet",
            "Espresso Machine",
            "Blender",
            "Air Fryer",
            "Stand Mixer",
            "Cutting Board",
            "Dutch Oven",
            "Kettle",
            "Food Processor",
            "Rice Cooker",
            "Toaster",
        ),
        (
            "heats evenly for perfect searing",
            "is dishwasher safe",
            "holds a razor-sharp edge",
            "brews café-quality coffee at home",
            "blends frozen fruit into smooth shakes in seconds",
            "is coated with a non-stick ceramic finish",
            "keeps water hot for hours",
            "has presets for rice, porridge and steaming",
        ),
        ("for home cooks", "for busy families", "for baking enthusiasts", "for coffee lovers", "for meal prep"),
        (12, 900),
    ),
    "outdoor": CategoryTemplate(
        "OU",
        (
            "Camping Tent",
            "Sleeping Bag",
            "Hiking Backpack",
            "Trekking Poles",
            "Camp Stove",
            "Headlamp",
            "Water Filter",
            "Hammock",
            "Cooler",
            "Folding Chair",
            "Rain Jacket",
            "Trail Map Set",
        ),
        (
            "stays dry in heavy rain",
            "packs down to the size of a water bottle",
            "keeps you warm down to minus ten degrees",
            "weighs less than a kilogram",
            "sets up in two minutes",
            "filters bacteria from stream water",
            "is built for alpine conditions",
        ),
        ("for backpacking trips", "for family camping", "for thru-hikers", "for weekend adventures", "for festivals"),
        (10, 700),
    ),
    "apparel": CategoryTemplate(
        "AP",
        (
            "Merino T-Shirt",
            "Denim Jacket",
            "Running Shoes",
            "Wool Sweater",
            "Chinos",
            "Rain Boots",
            "Down Parka",
            "Linen Shirt",
            "Yoga Leggings",
            "Baseball Cap",
            "Leather Belt",
            "Sneakers",
        ),
        (
            "is woven from soft organic cotton",
            "wicks moisture during workouts",
            "has a relaxed, modern fit",
            "is insulated with responsibly sourced down",
            "is cut from breathable linen",
            "cushions every stride",
            "resists wrinkles on long trips",
        ),
        ("for everyday wear", "for runners", "for cold winters", "for the office", "for summer travel"),
        (12, 450),
    ),
    "toys": CategoryTemplate(
        "TO",
        (
            "Building Blocks",
            "Puzzle",
            "Plush Bear",
            "Remote Control Car",
            "Board Game",
            "Train Set",
            "Coding Robot",
            "Dollhouse",
            "Science Kit",
            "Kite",
            "Marble Run",
            "Art Set",
        ),
        (
            "teaches kids to code through play",
            "sparks creativity and problem solving",
            "is made from non-toxic, child-safe materials",
            "keeps the whole family entertained",
            "builds fine motor skills",
            "comes with over 500 pieces",
        ),
        ("for ages 3 and up", "for ages 8 and up", "for family game night", "for curious young scientists"),
        (8, 250),
    ),
    "health": CategoryTemplate(
        "HE",
        (
            "Fitness Tracker",
            "Yoga Mat",
            "Massage Gun",
            "Electric Toothbrush",
            "Blood Pressure Monitor",
            "Foam Roller",
            "Vitamin D Supplement",
            "Smart Scale",
            "Resistance Bands",
            "Sleep Mask",
        ),
        (
            "tracks heart rate and sleep quality",
            "relieves sore muscles after training",
            "measures body composition and syncs to your phone",
            "uses predictive models to flag irregular readings",
            "supports healthy bones and immunity",
            "helps you fall asleep faster",
        ),
        ("for athletes", "for everyday wellness", "for recovery days", "for better sleep"),
        (6, 400),
    ),
    "books": CategoryTemplate(
        "BO",
        (
            "Field Guide",
            "Cookbook",
            "Novel",
            "Textbook",
            "Biography",
            "Travel Guide",
            "Workbook",
            "Graphic Novel",
            "Poetry Collection",
            "Handbook",
        ),
        (
            "explains neural networks and deep learning from first principles",
            "introduces statistics and machine learning with worked examples",
            "collects two hundred weeknight recipes",
            "tells a gripping story of survival at sea",
            "maps the best hidden trails of the Alps",
            "walks through personal finance step by step",
            "covers the history of computing",
        ),
        ("for beginners", "for practitioners", "for curious readers", "for students", "for travellers"),
        (5, 120),
    ),
    "garden": CategoryTemplate(
        "GA",
        (
            "Garden Hose",
            "Pruning Shears",
            "Raised Bed",
            "Compost Bin",
            "Lawn Mower",
            "Watering Can",
            "Seed Starter Kit",
            "Planter",
            "Leaf Blower",
            "Smart Sprinkler",
        ),
        (
            "waters plants on a schedule that adapts to the weather forecast",
            "is made of rust-proof steel",
            "turns kitchen scraps into rich compost",
            "cuts cleanly through thick branches",
            "runs quietly on a rechargeable battery",
        ),
        ("for vegetable gardens", "for balconies", "for large lawns", "for new gardeners"),
        (8, 800),
    ),
    "office": CategoryTemplate(
        "OF",
        (
            "Notebook",
            "Fountain Pen",
            "Desk Lamp",
            "Label Printer",
            "Paper Shredder",
            "Whiteboard",
            "Monitor Arm",
            "Desk Organizer",
            "Laminator",
            "Document Scanner",
        ),
        (
            "scans and recognises handwriting automatically",
            "keeps your desk tidy",
            "writes smoothly with archival ink",
            "has a dimmable, flicker-free light",
            "shreds sensitive documents securely",
        ),
        ("for home offices", "for students", "for small businesses", "for writers"),
        (4, 350),
    ),
    "sports": CategoryTemplate(
        "SP",
        (
            "Tennis Racket",
            "Road Bike",
            "Football",
            "Dumbbell Set",
            "Swim Goggles",
            "Climbing Harness",
            "Golf Clubs",
            "Skateboard",
            "Basketball",
            "Jump Rope",
        ),
        (
            "is balanced for control and power",
            "is approved for competition play",
            "adjusts from five to twenty-five kilograms",
            "seals comfortably without fogging",
            "is built on a lightweight carbon frame",
        ),
        ("for club players", "for home gyms", "for beginners", "for competitive athletes"),
        (10, 3000),
    ),
}

CATEGORY_NAMES = tuple(CATEGORIES)


@dataclass(frozen=True)
class SeedProduct:
    """One generated catalog row."""

    sku: str
    name: str
    description: str
    category: str
    price: Decimal


def make_product(i: int) -> SeedProduct:
    """The i-th catalog product (1-based); the same i always gives the same product."""
    rng = random.Random(i * 1_000_003 + 7)
    category = CATEGORY_NAMES[rng.randrange(len(CATEGORY_NAMES))]
    t = CATEGORIES[category]
    brand = rng.choice(BRANDS)
    noun = rng.choice(t.nouns)
    name = f"{brand} {rng.choice(ADJECTIVES)} {noun}"
    first, second = rng.sample(t.traits, 2)
    description = (
        f"The {name} {first} and {second}. "
        f"Designed {rng.choice(t.uses)}, it is a favourite of customers who want dependable quality."
    )
    low, high = t.price_range
    price = Decimal(rng.randint(low * 100, high * 100)) / 100
    return SeedProduct(sku=f"{t.code}-{i:07d}", name=name, description=description, category=category, price=price)


def seed_if_empty(conn: Connection, rows: int) -> int | None:
    """Seed only an empty catalog (demo start, deploy): existing rows and their edits are kept. None if skipped."""
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM products)")
        if cur.fetchone()[0]:
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
