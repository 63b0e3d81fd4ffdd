"""A deterministic, realistic product catalog for demos, tests and benchmarks.

Product number i depends only on i, so `--rows 100` is a prefix of `--rows 1000`, and re-running
the seed inserts nothing new (rows are keyed by SKU). Every phrase belongs to one kind of product,
so a description never claims something its product cannot do. Descriptions are written so that
semantic search has something to find: AI software is described as "machine learning", "neural
networks" or "predictive" without the word "AI", while ordinary software is not.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from decimal import Decimal

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

# Product-line names between brand and noun ("Tundra Prime Toaster").
ADJECTIVES = (
    "Classic",
    "Pro",
    "Compact",
    "Ultra",
    "Essential",
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
SOFTWARE_EDITIONS = ("Cloud", "Pro", "Team", "Studio", "Core", "Prime", "Lite", "Enterprise", "Flex", "Nova")
APPAREL_LINES = ("Classic", "Everyday", "Urban", "Heritage", "Studio", "Essential", "Core", "Signature", "Original")
TOY_LINES = ("Classic", "Mini", "Deluxe", "Junior", "Rainbow", "Super", "Wonder", "Explorer", "Little")
BOOK_SERIES = ("Complete", "Essential", "Illustrated", "Pocket", "Classic", "Modern", "Everyday", "Little", "New")

# How a description is put together: {both} is "<first trait> and <second trait>"; {it} and {be} agree
# with the noun ("it is" / "they are").
DESCRIPTION_SHAPES = (
    "The {name} {both}. Designed {use}, {it} {be} a favourite of customers who want dependable quality.",
    "Designed {use}, the {name} {both}.",
    "The {name} {first}, and {it} {second}. A dependable choice {use}.",
    "Meet the {name}: {it} {both}. Made {use}.",
)

CATEGORIES: dict[str, CategoryTemplate] = {
    "software": CategoryTemplate(
        "SW",
        (
            # Machine-learning products: every trait says how they learn, none says "AI".
            ProductKind(
                "Analytics Suite",
                (19, 399),
                (
                    "uses machine learning to spot trends and anomalies in your data",
                    "builds predictive dashboards that update as new data arrives",
                    "answers questions about your metrics using natural language processing",
                    "explains every machine learning forecast with the factors that drove it",
                ),
                ("for data teams", "for marketing teams", "for small businesses"),
            ),
            ProductKind(
                "Forecasting Engine",
                (49, 499),
                (
                    "uses machine learning to predict demand from your sales history",
                    "runs deep learning models that learn seasonal patterns",
                    "offers predictive analytics that improve with every week of data",
                    "is powered by neural networks that flag unusual spikes before they hit your stock",
                ),
                ("for retailers", "for supply chain planners", "for finance departments"),
            ),
            ProductKind(
                "Vision API",
                (29, 399),
                (
                    "uses deep learning to recognise objects in photos and video",
                    "is powered by neural networks trained on millions of images",
                    "reads text from scanned receipts with machine learning",
                    "spots defects on production lines with computer vision models",
                ),
                ("for developers", "for manufacturers", "for mobile apps"),
            ),
            ProductKind(
                "Chat Assistant",
                (9, 199),
                (
                    "is built on a large language model that answers questions in plain English",
                    "uses natural language processing to understand what customers mean",
                    "learns from your help articles with a fine-tuned language model",
                    "hands tricky conversations to a human along with a machine-written summary",
                ),
                ("for support teams", "for online shops", "for small businesses"),
            ),
            ProductKind(
                "Recommendation Engine",
                (49, 499),
                (
                    "uses machine learning to suggest what each shopper is likely to buy",
                    "learns from clicks and purchases with neural networks",
                    "predicts what to show next with deep learning",
                    "tests new predictive ranking models safely on a slice of traffic",
                ),
                ("for online shops", "for streaming services", "for marketing teams"),
            ),
            ProductKind(
                "Document Classifier",
                (29, 299),
                (
                    "sorts contracts, invoices and letters with natural language processing",
                    "uses machine learning to route each document to the right team",
                    "is powered by a neural network fine-tuned on business paperwork",
                    "extracts names, dates and amounts with deep learning",
                ),
                ("for legal teams", "for finance departments", "for insurance companies"),
            ),
            ProductKind(
                "Code Review Bot",
                (9, 149),
                (
                    "reviews pull requests with a large language model",
                    "uses machine learning to flag risky changes before they merge",
                    "suggests fixes learned by neural networks from millions of open-source commits",
                    "runs its deep learning checks inside your existing CI pipeline",
                ),
                ("for developers", "for engineering teams", "for open-source maintainers"),
            ),
            ProductKind(
                "Speech Transcriber",
                (9, 199),
                (
                    "turns recordings into text with deep learning speech recognition",
                    "uses neural networks that cope with accents and background noise",
                    "summarises meetings with natural language processing",
                    "tells speakers apart with machine learning",
                ),
                ("for journalists", "for podcasters", "for remote teams"),
            ),
            ProductKind(
                "Fraud Detector",
                (99, 499),
                (
                    "uses machine learning to score every transaction in milliseconds",
                    "spots fraud rings with graph neural networks",
                    "offers predictive risk scores that adapt to new scams",
                    "explains each deep learning alert so analysts can act quickly",
                ),
                ("for banks", "for online shops", "for payment teams"),
            ),
            # Ordinary software: useful, and nothing about learning.
            ProductKind(
                "Backup Manager",
                (5, 99),
                (
                    "backs up your files every hour and keeps thirty days of versions",
                    "encrypts every backup before it leaves your computer",
                    "restores a whole laptop in a few clicks",
                    "sends an alert when a backup is missed",
                ),
                ("for home users", "for small businesses", "for IT teams"),
            ),
            ProductKind(
                "Password Vault",
                (3, 59),
                (
                    "keeps your passwords encrypted end to end",
                    "fills in logins on desktop and mobile",
                    "warns you about reused and leaked passwords",
                    "shares logins safely with family members",
                ),
                ("for home users", "for families", "for small businesses"),
            ),
            ProductKind(
                "Invoice App",
                (5, 79),
                (
                    "creates and sends invoices in under a minute",
                    "reminds clients politely when payments are late",
                    "accepts card and bank payments",
                    "exports clean reports for your accountant",
                ),
                ("for freelancers", "for small businesses", "for consultants"),
            ),
            ProductKind(
                "Project Planner",
                (5, 99),
                (
                    "lays out tasks on boards, lists and timelines",
                    "shows who is working on what at a glance",
                    "integrates with the chat and calendar tools your team already uses",
                    "has keyboard shortcuts for everything",
                ),
                ("for project managers", "for marketing teams", "for remote teams"),
            ),
            ProductKind(
                "Photo Editor",
                (9, 149),
                (
                    "edits RAW files without touching the originals",
                    "has one-click presets for portraits and landscapes",
                    "resizes hundreds of photos at once",
                    "works with layers, masks and curves",
                ),
                ("for photographers", "for content creators", "for home users"),
            ),
            ProductKind(
                "Email Client",
                (9, 79),
                (
                    "brings all your inboxes into one clean view",
                    "snoozes messages until you are ready for them",
                    "searches years of mail in an instant",
                    "syncs across desktop and mobile",
                ),
                ("for busy professionals", "for home users", "for small businesses"),
            ),
        ),
        SOFTWARE_EDITIONS,
    ),
    "electronics": CategoryTemplate(
        "EL",
        (
            ProductKind(
                "Wireless Earbuds",
                (29, 299),
                (
                    "deliver crisp sound with deep bass",
                    "last eight hours on a charge",
                    "pair instantly over Bluetooth 5.3",
                    "are sweat-resistant for workouts",
                    "come with a pocket-sized charging case",
                ),
                ("for commuters", "for runners", "for travel"),
                plural=True,
            ),
            ProductKind(
                "Bluetooth Speaker",
                (25, 399),
                (
                    "fills a room with rich, balanced sound",
                    "is waterproof and floats in the pool",
                    "plays for twenty hours on a charge",
                    "pairs with a second speaker for stereo",
                ),
                ("for parties", "for the beach", "for travel"),
            ),
            ProductKind(
                "4K Monitor",
                (199, 1200),
                (
                    "features a bright, color-accurate 27-inch display",
                    "charges your laptop over a single USB-C cable",
                    "refreshes at 144 Hz for smooth motion",
                    "tilts, swivels and rotates to portrait",
                ),
                ("for remote work", "for content creators", "for gamers"),
            ),
            ProductKind(
                "Mechanical Keyboard",
                (49, 249),
                (
                    "has hot-swappable tactile switches",
                    "connects over Bluetooth or USB-C",
                    "lights every key with adjustable backlighting",
                    "is built on a solid aluminium frame",
                ),
                ("for programmers", "for gamers", "for writers"),
            ),
            ProductKind(
                "USB-C Hub",
                (19, 129),
                (
                    "adds HDMI, Ethernet and three USB ports to your laptop",
                    "passes through 100 W charging",
                    "reads SD and microSD cards at full speed",
                    "is small enough to fit in a pocket",
                ),
                ("for remote work", "for travel", "for students"),
            ),
            ProductKind(
                "Noise-Cancelling Headphones",
                (79, 549),
                (
                    "block out engine roar and office chatter",
                    "last thirty hours on a charge",
                    "fold flat into a slim travel case",
                    "have soft memory-foam ear cushions",
                ),
                ("for travel", "for commuters", "for open-plan offices"),
                plural=True,
            ),
            ProductKind(
                "Smartwatch",
                (99, 799),
                (
                    "tracks heart rate, steps and sleep",
                    "shows messages and calls on your wrist",
                    "has a battery that lasts all week",
                    "is water-resistant to fifty metres",
                ),
                ("for runners", "for busy professionals", "for everyday fitness"),
            ),
            ProductKind(
                "Portable Charger",
                (15, 99),
                (
                    "charges a phone three times over",
                    "supports fast charging over USB-C",
                    "is light enough to carry everywhere",
                    "charges two devices at once",
                ),
                ("for travel", "for commuters", "for festivals"),
            ),
            ProductKind(
                "Action Camera",
                (99, 549),
                (
                    "records stabilised 4K video",
                    "is waterproof to ten metres without a case",
                    "mounts on helmets, handlebars and surfboards",
                    "sends footage straight to your phone",
                ),
                ("for surfers", "for cyclists", "for content creators"),
            ),
            ProductKind(
                "E-Reader",
                (79, 349),
                (
                    "has a glare-free screen that reads like paper",
                    "holds thousands of books",
                    "has a battery that lasts for weeks",
                    "is waterproof for reading in the bath",
                ),
                ("for book lovers", "for travel", "for students"),
            ),
            ProductKind(
                "Wi-Fi Router",
                (49, 499),
                (
                    "covers a whole house with fast Wi-Fi 6",
                    "sets up from a phone app in minutes",
                    "lets parents pause the internet at bedtime",
                    "has four gigabit Ethernet ports",
                ),
                ("for large homes", "for remote work", "for gamers"),
            ),
            ProductKind(
                "Gaming Mouse",
                (19, 149),
                (
                    "has a precise 26,000 DPI sensor",
                    "weighs just 60 grams",
                    "has programmable side buttons",
                    "connects wirelessly with no noticeable lag",
                ),
                ("for gamers", "for esports players", "for designers"),
            ),
            ProductKind(
                "Webcam",
                (29, 249),
                (
                    "streams sharp 1080p video",
                    "adjusts to dim rooms automatically",
                    "has dual microphones that cut background noise",
                    "clips onto any laptop or monitor",
                ),
                ("for remote work", "for video calls", "for streamers"),
            ),
            ProductKind(
                "Tablet",
                (129, 1100),
                (
                    "has a bright 11-inch display",
                    "runs all day on a single charge",
                    "works with a stylus for notes and sketches",
                    "is light enough to carry everywhere",
                ),
                ("for students", "for artists", "for travel"),
            ),
            ProductKind(
                "Soundbar",
                (79, 899),
                (
                    "makes dialogue clear at any volume",
                    "delivers room-filling surround sound",
                    "connects to your TV with one HDMI cable",
                    "comes with a wireless subwoofer",
                ),
                ("for movie nights", "for living rooms", "for small apartments"),
            ),
        ),
        ADJECTIVES,
    ),
    "furniture": CategoryTemplate(
        "FU",
        (
            ProductKind(
                "Standing Desk",
                (199, 1200),
                (
                    "rises and lowers smoothly on a quiet electric motor",
                    "remembers four height presets",
                    "has a solid oak top with a natural finish",
                    "stays steady even at full height",
                ),
                ("for home offices", "for remote work", "for long workdays"),
            ),
            ProductKind(
                "Office Chair",
                (99, 1200),
                (
                    "has an ergonomic design that supports your lower back",
                    "adjusts in height, tilt and armrest width",
                    "is upholstered in breathable mesh",
                    "rolls quietly on soft casters",
                ),
                ("for home offices", "for long workdays", "for gamers"),
            ),
            ProductKind(
                "Bookshelf",
                (49, 599),
                (
                    "holds up to two hundred books",
                    "is made of solid oak with a natural finish",
                    "assembles in fifteen minutes without tools",
                    "has adjustable shelves",
                ),
                ("for the living room", "for home offices", "for kids' rooms"),
            ),
            ProductKind(
                "Sofa",
                (399, 2500),
                (
                    "is upholstered in stain-resistant fabric",
                    "has deep seats and feather-filled cushions",
                    "seats three adults comfortably",
                    "has removable, washable covers",
                ),
                ("for the living room", "for family movie nights", "for studio apartments"),
            ),
            ProductKind(
                "Coffee Table",
                (59, 699),
                (
                    "is crafted from sustainably sourced walnut",
                    "has a hidden storage shelf",
                    "has rounded corners that are safe for toddlers",
                    "lifts up to become a work surface",
                ),
                ("for the living room", "for small apartments"),
            ),
            ProductKind(
                "Bed Frame",
                (149, 1800),
                (
                    "is made of solid pine with a natural finish",
                    "has under-bed storage drawers",
                    "assembles in twenty minutes without tools",
                    "never creaks, thanks to steel-reinforced slats",
                ),
                ("for bedrooms", "for guest rooms", "for studio apartments"),
            ),
            ProductKind(
                "Dining Table",
                (199, 2200),
                (
                    "seats six people comfortably",
                    "extends to seat ten when guests arrive",
                    "is crafted from sustainably sourced walnut",
                    "has a scratch-resistant finish",
                ),
                ("for the dining room", "for family dinners", "for open-plan kitchens"),
            ),
            ProductKind(
                "Wardrobe",
                (199, 1500),
                (
                    "has a full-length mirror on one door",
                    "has soft-closing doors and drawers",
                    "fits neatly into small bedrooms",
                    "has adjustable shelves and two hanging rails",
                ),
                ("for bedrooms", "for studio apartments", "for guest rooms"),
            ),
            ProductKind(
                "Nightstand",
                (39, 399),
                (
                    "has a drawer that closes silently",
                    "has a built-in USB charging port",
                    "fits beside the narrowest bed",
                    "is made of solid oak with a natural finish",
                ),
                ("for bedrooms", "for guest rooms"),
            ),
            ProductKind(
                "Bar Stool",
                (39, 299),
                (
                    "swivels a full 360 degrees",
                    "adjusts in height with a gas lift",
                    "has a padded seat and a sturdy footrest",
                    "is made of powder-coated steel",
                ),
                ("for kitchen islands", "for home bars", "for breakfast counters"),
            ),
            ProductKind(
                "Recliner",
                (299, 1800),
                (
                    "reclines smoothly at the touch of a button",
                    "is upholstered in soft, durable leather",
                    "has a built-in footrest",
                    "sits close to the wall, thanks to a wall-hugging mechanism",
                ),
                ("for the living room", "for relaxing after work", "for movie nights"),
            ),
            ProductKind(
                "Shoe Rack",
                (19, 199),
                (
                    "holds twelve pairs of shoes",
                    "fits neatly into narrow hallways",
                    "is made of water-resistant bamboo",
                    "assembles in ten minutes without tools",
                ),
                ("for entryways", "for small apartments", "for busy families"),
            ),
        ),
        ADJECTIVES,
    ),
    "kitchen": CategoryTemplate(
        "KI",
        (
            ProductKind(
                "Chef's Knife",
                (29, 349),
                (
                    "holds a razor-sharp edge",
                    "is forged from high-carbon German steel",
                    "has a balanced, comfortable handle",
                    "glides through tomatoes and onions",
                ),
                ("for home cooks", "for professional chefs", "for meal prep"),
            ),
            ProductKind(
                "Cast Iron Skillet",
                (19, 149),
                (
                    "heats evenly for perfect searing",
                    "comes pre-seasoned and ready to cook",
                    "goes from stovetop to oven",
                    "will last for generations",
                ),
                ("for home cooks", "for campfire cooking", "for steak lovers"),
            ),
            ProductKind(
                "Espresso Machine",
                (149, 900),
                (
                    "brews café-quality espresso at home",
                    "steams silky milk for lattes and cappuccinos",
                    "has a built-in conical burr grinder",
                    "heats up in under a minute",
                ),
                ("for coffee lovers", "for busy mornings", "for home baristas"),
            ),
            ProductKind(
                "Blender",
                (39, 499),
                (
                    "blends frozen fruit into smooth shakes in seconds",
                    "crushes ice effortlessly",
                    "has a dishwasher-safe jar",
                    "makes hot soup from raw vegetables",
                ),
                ("for smoothie lovers", "for busy families", "for meal prep"),
            ),
            ProductKind(
                "Air Fryer",
                (49, 299),
                (
                    "crisps fries with a spoonful of oil",
                    "roasts a whole chicken in under an hour",
                    "has a dishwasher-safe basket",
                    "has presets for fries, fish and vegetables",
                ),
                ("for busy families", "for healthy cooking", "for small kitchens"),
            ),
            ProductKind(
                "Stand Mixer",
                (149, 699),
                (
                    "kneads bread dough without straining",
                    "has ten speeds and a splash guard",
                    "comes with a whisk, paddle and dough hook",
                    "has a five-litre stainless steel bowl",
                ),
                ("for baking enthusiasts", "for holiday baking", "for home cooks"),
            ),
            ProductKind(
                "Cutting Board",
                (12, 99),
                (
                    "is cut from end-grain walnut",
                    "has a groove that catches juices",
                    "is gentle on knife edges",
                    "has non-slip feet",
                ),
                ("for home cooks", "for meal prep"),
            ),
            ProductKind(
                "Dutch Oven",
                (49, 399),
                (
                    "is coated in chip-resistant enamel",
                    "keeps stews simmering for hours",
                    "bakes crusty bread at home",
                    "goes from stovetop to oven",
                ),
                ("for home cooks", "for slow cooking", "for bread bakers"),
            ),
            ProductKind(
                "Kettle",
                (19, 199),
                (
                    "boils a litre of water in three minutes",
                    "keeps water hot for hours",
                    "has temperature presets for green tea and pour-over coffee",
                    "switches off automatically when empty",
                ),
                ("for tea lovers", "for coffee lovers", "for busy mornings"),
            ),
            ProductKind(
                "Food Processor",
                (49, 399),
                (
                    "chops, slices and grates in seconds",
                    "kneads pizza dough",
                    "has a wide feed tube for whole vegetables",
                    "has dishwasher-safe blades and bowl",
                ),
                ("for meal prep", "for busy families", "for home cooks"),
            ),
            ProductKind(
                "Rice Cooker",
                (29, 349),
                (
                    "has presets for rice, porridge and steaming",
                    "keeps rice warm for hours",
                    "cooks perfect sushi rice every time",
                    "has a non-stick ceramic inner bowl",
                ),
                ("for busy families", "for meal prep", "for small kitchens"),
            ),
            ProductKind(
                "Toaster",
                (19, 199),
                (
                    "toasts evenly from edge to edge",
                    "has extra-wide slots for bagels",
                    "has a defrost setting for frozen bread",
                    "has a crumb tray that slides out",
                ),
                ("for busy mornings", "for busy families", "for small kitchens"),
            ),
        ),
        ADJECTIVES,
    ),
    "outdoor": CategoryTemplate(
        "OU",
        (
            ProductKind(
                "Camping Tent",
                (79, 700),
                (
                    "stays dry in heavy rain",
                    "sets up in two minutes",
                    "sleeps four with room for gear",
                    "has mesh panels that keep insects out",
                ),
                ("for family camping", "for festivals", "for backpacking trips"),
            ),
            ProductKind(
                "Sleeping Bag",
                (39, 499),
                (
                    "keeps you warm down to minus ten degrees",
                    "packs down to the size of a water bottle",
                    "has a water-resistant shell",
                    "zips together with a second bag",
                ),
                ("for backpacking trips", "for winter camping", "for thru-hikers"),
            ),
            ProductKind(
                "Hiking Backpack",
                (49, 349),
                (
                    "carries 45 litres on a ventilated back panel",
                    "has a built-in rain cover",
                    "has hip-belt pockets for snacks and a phone",
                    "weighs less than a kilogram",
                ),
                ("for day hikes", "for thru-hikers", "for weekend adventures"),
            ),
            ProductKind(
                "Trekking Poles",
                (25, 199),
                (
                    "fold down to fit in a daypack",
                    "are made of carbon fibre",
                    "have cork grips that stay dry",
                    "take strain off your knees on descents",
                ),
                ("for thru-hikers", "for mountain trails", "for day hikes"),
                plural=True,
            ),
            ProductKind(
                "Camp Stove",
                (25, 249),
                (
                    "boils a litre of water in four minutes",
                    "folds down to the size of a fist",
                    "lights with a push-button igniter",
                    "stays lit in strong wind",
                ),
                ("for backpacking trips", "for family camping", "for weekend adventures"),
            ),
            ProductKind(
                "Headlamp",
                (12, 99),
                (
                    "throws a 400-lumen beam",
                    "recharges over USB-C",
                    "has a red light that keeps your night vision",
                    "keeps working in heavy rain",
                ),
                ("for night hikes", "for trail runners", "for camping trips"),
            ),
            ProductKind(
                "Water Filter",
                (19, 149),
                (
                    "filters bacteria from stream water",
                    "screws onto standard bottles",
                    "cleans a litre of water in a minute",
                    "weighs less than a chocolate bar",
                ),
                ("for backpacking trips", "for thru-hikers", "for emergency kits"),
            ),
            ProductKind(
                "Hammock",
                (19, 199),
                (
                    "holds up to 180 kilograms",
                    "hangs between two trees in minutes",
                    "comes with a built-in bug net",
                    "packs into its own pouch",
                ),
                ("for camping trips", "for lazy afternoons in the garden", "for festivals"),
            ),
            ProductKind(
                "Cooler",
                (29, 499),
                (
                    "keeps ice frozen for five days",
                    "has a drain plug for easy cleaning",
                    "rolls on rugged wheels",
                    "doubles as a seat",
                ),
                ("for family camping", "for beach days", "for fishing trips"),
            ),
            ProductKind(
                "Folding Chair",
                (15, 149),
                (
                    "folds flat in seconds",
                    "has a cup holder in the armrest",
                    "holds up to 130 kilograms",
                    "weighs just over a kilogram",
                ),
                ("for festivals", "for family camping", "for beach days"),
            ),
            ProductKind(
                "Rain Jacket",
                (59, 399),
                (
                    "stays dry in heavy rain",
                    "has taped seams and a waterproof zip",
                    "packs into its own pocket",
                    "breathes on steep climbs",
                ),
                ("for hikers", "for rainy commutes", "for weekend adventures"),
            ),
            ProductKind(
                "Trail Map Set",
                (10, 49),
                (
                    "covers three hundred kilometres of marked trails",
                    "is printed on waterproof, tear-resistant paper",
                    "marks huts, water sources and viewpoints",
                    "folds to fit a jacket pocket",
                ),
                ("for hikers", "for trip planning", "for thru-hikers"),
            ),
        ),
        ADJECTIVES,
    ),
    "apparel": CategoryTemplate(
        "AP",
        (
            ProductKind(
                "Merino T-Shirt",
                (35, 120),
                (
                    "is knitted from soft merino wool",
                    "stays fresh for days without washing",
                    "wicks moisture during workouts",
                    "keeps you cool in summer and warm in winter",
                ),
                ("for everyday wear", "for travel", "for hikers"),
            ),
            ProductKind(
                "Denim Jacket",
                (49, 249),
                (
                    "is cut from sturdy organic denim",
                    "softens with every wash",
                    "has a relaxed, modern fit",
                    "has two chest pockets with snap buttons",
                ),
                ("for everyday wear", "for cool spring evenings", "for weekends"),
            ),
            ProductKind(
                "Running Shoes",
                (59, 249),
                (
                    "cushion every stride",
                    "have a breathable mesh upper",
                    "grip well on wet roads",
                    "weigh just 220 grams each",
                ),
                ("for runners", "for marathon training", "for daily jogs"),
                plural=True,
            ),
            ProductKind(
                "Wool Sweater",
                (49, 249),
                (
                    "is knitted from soft lambswool",
                    "keeps you warm on cold days",
                    "has a classic crew neck",
                    "resists pilling wash after wash",
                ),
                ("for cold winters", "for the office", "for cosy weekends"),
            ),
            ProductKind(
                "Chinos",
                (39, 149),
                (
                    "have a slim, modern fit",
                    "are woven from stretch cotton",
                    "resist wrinkles on long trips",
                    "go from the office to dinner",
                ),
                ("for the office", "for everyday wear", "for summer travel"),
                plural=True,
            ),
            ProductKind(
                "Rain Boots",
                (29, 179),
                (
                    "keep your feet dry in deep puddles",
                    "are made of waterproof natural rubber",
                    "have a warm fleece lining",
                    "have soles that grip on wet ground",
                ),
                ("for rainy days", "for garden work", "for muddy walks"),
                plural=True,
            ),
            ProductKind(
                "Down Parka",
                (149, 450),
                (
                    "is insulated with responsibly sourced down",
                    "keeps you warm down to minus twenty degrees",
                    "has a water-repellent shell and a fur-free hood",
                    "has fleece-lined hand pockets",
                ),
                ("for cold winters", "for snowy commutes", "for winter travel"),
            ),
            ProductKind(
                "Linen Shirt",
                (39, 149),
                (
                    "is cut from breathable linen",
                    "stays cool on hot days",
                    "has a relaxed, modern fit",
                    "gets softer with every wash",
                ),
                ("for summer travel", "for warm evenings", "for the office"),
            ),
            ProductKind(
                "Yoga Leggings",
                (29, 129),
                (
                    "stretch in every direction",
                    "wick moisture during workouts",
                    "have a high, supportive waistband",
                    "have a hidden pocket for keys",
                ),
                ("for yoga classes", "for the gym", "for everyday wear"),
                plural=True,
            ),
            ProductKind(
                "Baseball Cap",
                (12, 49),
                (
                    "is made of washed organic cotton",
                    "has an adjustable strap",
                    "shades your eyes on sunny days",
                    "has a sweat-wicking band",
                ),
                ("for sunny days", "for everyday wear", "for runners"),
            ),
            ProductKind(
                "Leather Belt",
                (19, 129),
                (
                    "is cut from full-grain leather",
                    "has a solid brass buckle",
                    "ages beautifully with wear",
                    "comes in sizes from 75 to 120 centimetres",
                ),
                ("for the office", "for everyday wear", "for jeans and chinos"),
            ),
            ProductKind(
                "Sneakers",
                (49, 199),
                (
                    "go with everything",
                    "have a cushioned insole",
                    "are made of soft leather",
                    "have a recycled rubber sole",
                ),
                ("for everyday wear", "for city walks", "for weekends"),
                plural=True,
            ),
        ),
        APPAREL_LINES,
    ),
    "toys": CategoryTemplate(
        "TO",
        (
            ProductKind(
                "Building Blocks",
                (15, 199),
                (
                    "come in over 500 colourful pieces",
                    "fit together with all major brick brands",
                    "spark creativity and problem solving",
                    "build fine motor skills",
                ),
                ("for ages 4 and up", "for creative kids", "for rainy afternoons"),
                plural=True,
            ),
            ProductKind(
                "Puzzle",
                (8, 49),
                (
                    "has a thousand pieces that fit snugly",
                    "shows a colourful map of the world",
                    "comes with a poster of the finished picture",
                    "is made from thick, recycled card",
                ),
                ("for family game night", "for puzzle lovers", "for ages 8 and up"),
            ),
            ProductKind(
                "Plush Bear",
                (10, 59),
                (
                    "is soft enough to cuddle all night",
                    "is made from non-toxic, child-safe materials",
                    "is machine washable",
                    "has embroidered eyes that are safe for babies",
                ),
                ("for newborns", "for toddlers", "for bedtime"),
            ),
            ProductKind(
                "Remote Control Car",
                (25, 199),
                (
                    "reaches thirty kilometres an hour",
                    "drives over grass, gravel and sand",
                    "has a rechargeable battery pack",
                    "survives crashes, thanks to a flexible bumper",
                ),
                ("for ages 8 and up", "for backyard races", "for young racers"),
            ),
            ProductKind(
                "Board Game",
                (15, 79),
                (
                    "keeps the whole family entertained",
                    "plays in under an hour",
                    "teaches strategy and planning",
                    "works for two to six players",
                ),
                ("for family game night", "for ages 8 and up", "for evenings with friends"),
            ),
            ProductKind(
                "Train Set",
                (29, 249),
                (
                    "comes with forty pieces of wooden track",
                    "has a battery-powered engine that pulls three carriages",
                    "works with most wooden railway sets",
                    "is made from non-toxic, child-safe materials",
                ),
                ("for ages 3 and up", "for toddlers", "for young engineers"),
            ),
            ProductKind(
                # Not "Coding Robot": to a small embedding model a robot is close to "AI" itself.
                "Coding Kit",
                (49, 249),
                (
                    "teaches kids to code through play",
                    "builds a little buggy that follows programs made of drag-and-drop blocks",
                    "has puzzle cards with mazes to solve and shapes to draw",
                    "grows with kids from picture blocks to Python",
                ),
                ("for ages 8 and up", "for curious young programmers", "for classrooms"),
            ),
            ProductKind(
                "Dollhouse",
                (49, 249),
                (
                    "has three floors and twenty pieces of furniture",
                    "has working lights in every room",
                    "is made of sustainably sourced wood",
                    "opens up for easy play from every side",
                ),
                ("for ages 3 and up", "for imaginative play"),
            ),
            ProductKind(
                "Science Kit",
                (19, 99),
                (
                    "includes thirty hands-on experiments",
                    "grows sparkling crystals in a week",
                    "comes with safety goggles and a clear guide",
                    "explains the science behind every result",
                ),
                ("for curious young scientists", "for ages 8 and up", "for homeschooling"),
            ),
            ProductKind(
                "Kite",
                (12, 79),
                (
                    "flies in light breezes",
                    "assembles in a minute without tools",
                    "is made of ripstop nylon",
                    "comes with fifty metres of line",
                ),
                ("for beach days", "for windy afternoons in the park", "for ages 6 and up"),
            ),
            ProductKind(
                "Marble Run",
                (19, 129),
                (
                    "has over a hundred pieces that build tall towers",
                    "teaches cause and effect",
                    "comes with fifty glass marbles",
                    "can be rebuilt a different way every day",
                ),
                ("for ages 4 and up", "for young engineers", "for rainy afternoons"),
            ),
            ProductKind(
                "Art Set",
                (12, 89),
                (
                    "has crayons, pencils, paints and markers",
                    "uses washable, non-toxic colours",
                    "packs into a sturdy carry case",
                    "sparks creativity",
                ),
                ("for young artists", "for ages 5 and up", "for rainy afternoons"),
            ),
        ),
        TOY_LINES,
    ),
    "health": CategoryTemplate(
        "HE",
        (
            ProductKind(
                "Fitness Tracker",
                (29, 249),
                (
                    "tracks heart rate and sleep quality",
                    "counts steps, stairs and active minutes",
                    "runs for ten days on a charge",
                    "is waterproof for swimming",
                ),
                ("for everyday wellness", "for better sleep", "for athletes"),
            ),
            ProductKind(
                "Yoga Mat",
                (19, 149),
                (
                    "grips firmly even in hot yoga",
                    "cushions knees and wrists",
                    "is made of natural rubber",
                    "rolls up light for the commute",
                ),
                ("for yoga classes", "for home workouts", "for pilates"),
            ),
            ProductKind(
                "Massage Gun",
                (49, 399),
                (
                    "relieves sore muscles after training",
                    "has five speeds and six attachments",
                    "runs quietly for three hours on a charge",
                    "eases a stiff neck after long days at a desk",
                ),
                ("for athletes", "for recovery days", "for runners"),
            ),
            ProductKind(
                "Electric Toothbrush",
                (19, 249),
                (
                    "removes more plaque than a manual brush",
                    "has a two-minute timer",
                    "warns you when you brush too hard",
                    "lasts three weeks on a charge",
                ),
                ("for everyday dental care", "for travel", "for sensitive teeth"),
            ),
            ProductKind(
                "Blood Pressure Monitor",
                (25, 149),
                (
                    "measures blood pressure at the touch of a button",
                    "flags irregular heartbeats",
                    "stores readings for two users",
                    "syncs readings to your phone",
                ),
                ("for home health checks", "for everyday wellness", "for older adults"),
            ),
            ProductKind(
                "Foam Roller",
                (12, 79),
                (
                    "relieves sore muscles after training",
                    "has a textured surface for deep-tissue massage",
                    "keeps its shape after years of use",
                    "is light enough to take to the gym",
                ),
                ("for recovery days", "for runners", "for athletes"),
            ),
            ProductKind(
                "Vitamin D Supplement",
                (6, 39),
                (
                    "supports healthy bones and immunity",
                    "comes as easy-to-swallow soft gels",
                    "contains a three-month supply",
                    "is tested by an independent laboratory",
                ),
                ("for dark winter months", "for everyday wellness", "for adults over fifty"),
            ),
            ProductKind(
                "Smart Scale",
                (25, 149),
                (
                    "measures weight, body fat and muscle mass",
                    "syncs to your phone over Wi-Fi",
                    "recognises up to eight family members",
                    "has a toughened glass top",
                ),
                ("for everyday wellness", "for weight loss goals", "for athletes"),
            ),
            ProductKind(
                "Resistance Bands",
                (9, 59),
                (
                    "come in five strengths",
                    "pack flat for travel",
                    "are made of durable natural latex",
                    "replace a whole rack of weights",
                ),
                ("for home workouts", "for physiotherapy", "for travel"),
                plural=True,
            ),
            ProductKind(
                "Sleep Mask",
                (6, 49),
                (
                    "blocks out all light",
                    "is made of soft mulberry silk",
                    "has contoured cups that keep pressure off your eyes",
                    "helps you fall asleep faster",
                ),
                ("for better sleep", "for long flights", "for shift workers"),
            ),
        ),
        ADJECTIVES,
    ),
    "books": CategoryTemplate(
        "BO",
        (
            ProductKind(
                "Field Guide",
                (12, 39),
                (
                    "has colour photographs of every species",
                    "includes range maps and seasonal calendars",
                    "is arranged by habitat for quick identification",
                    "fits in a jacket pocket",
                ),
                ("for birdwatchers", "for nature walks", "for curious readers"),
            ),
            ProductKind(
                "Cookbook",
                (15, 49),
                (
                    "collects two hundred weeknight recipes",
                    "has a photograph of every dish",
                    "includes a chapter on baking bread",
                    "marks the recipes that take under thirty minutes",
                ),
                ("for home cooks", "for beginners", "for busy families"),
            ),
            ProductKind(
                "Novel",
                (8, 29),
                (
                    "keeps you turning pages late into the night",
                    "won a national book prize",
                    "has been translated into thirty languages",
                    "is being adapted for television",
                ),
                ("for curious readers", "for book clubs", "for long journeys"),
            ),
            # The books a search for neural networks or machine learning should find.
            ProductKind(
                "Machine Learning Textbook",
                (39, 120),
                (
                    "introduces statistics and machine learning with worked examples",
                    "explains neural networks and deep learning from first principles",
                    "ends every chapter with exercises and solutions",
                    "comes with Python code for every algorithm",
                ),
                ("for students", "for practitioners", "for self-taught programmers"),
            ),
            ProductKind(
                "Biography",
                (12, 39),
                (
                    "draws on hundreds of letters and interviews",
                    "is full of photographs never published before",
                    "reads like a novel",
                    "was a bestseller for a whole year",
                ),
                ("for curious readers", "for history lovers", "for book clubs"),
            ),
            ProductKind(
                "Travel Guide",
                (12, 35),
                (
                    "has fold-out city maps",
                    "lists the best places to eat, sleep and explore",
                    "includes day-by-day itineraries",
                    "is updated every year",
                ),
                ("for travellers", "for first-time visitors", "for weekend city breaks"),
            ),
            ProductKind(
                "Workbook",
                (5, 25),
                (
                    "builds maths skills with short daily exercises",
                    "has answers at the back",
                    "follows the school curriculum step by step",
                    "comes with stickers that reward progress",
                ),
                ("for primary school pupils", "for homeschooling", "for holiday practice"),
            ),
            ProductKind(
                "Graphic Novel",
                (12, 35),
                (
                    "is drawn in vivid full colour",
                    "collects the first six issues of the series",
                    "tells an epic fantasy adventure",
                    "won an award for best artwork",
                ),
                ("for comic fans", "for teenage readers", "for curious readers"),
            ),
            ProductKind(
                "Poetry Collection",
                (9, 29),
                (
                    "gathers a hundred poems about the sea and home",
                    "is printed on heavy cream paper",
                    "includes an introduction by the poet",
                    "won a national poetry prize",
                ),
                ("for poetry lovers", "for quiet evenings", "for gifting"),
            ),
            ProductKind(
                "Personal Finance Handbook",
                (12, 35),
                (
                    "walks through budgeting, saving and investing step by step",
                    "explains pensions and taxes in plain language",
                    "includes worksheets and checklists",
                    "is updated for this year's tax rules",
                ),
                ("for beginners", "for young professionals", "for new families"),
            ),
        ),
        BOOK_SERIES,
    ),
    "garden": CategoryTemplate(
        "GA",
        (
            ProductKind(
                "Garden Hose",
                (19, 99),
                (
                    "stretches to thirty metres and shrinks back when empty",
                    "never kinks or tangles",
                    "comes with a seven-pattern spray nozzle",
                    "is made of UV-resistant rubber",
                ),
                ("for vegetable gardens", "for large lawns", "for washing the car"),
            ),
            ProductKind(
                "Pruning Shears",
                (15, 79),
                (
                    "cut cleanly through thick branches",
                    "have hardened steel blades that stay sharp",
                    "have a safety lock and comfortable grips",
                    "are made of rust-proof steel",
                ),
                ("for fruit trees", "for rose gardens", "for new gardeners"),
                plural=True,
            ),
            ProductKind(
                "Raised Bed",
                (39, 299),
                (
                    "is made of untreated cedar",
                    "assembles in ten minutes without tools",
                    "saves your back at waist height",
                    "has a liner that keeps soil in and weeds out",
                ),
                ("for vegetable gardens", "for balconies", "for new gardeners"),
            ),
            ProductKind(
                "Compost Bin",
                (29, 199),
                (
                    "turns kitchen scraps into rich compost",
                    "holds 300 litres",
                    "keeps rodents out with a locking lid",
                    "is made from recycled plastic",
                ),
                ("for vegetable gardens", "for busy kitchens", "for new gardeners"),
            ),
            ProductKind(
                "Lawn Mower",
                (149, 800),
                (
                    "runs quietly on a rechargeable battery",
                    "mows up to 500 square metres on one charge",
                    "mulches clippings back into the lawn",
                    "folds flat for storage",
                ),
                ("for large lawns", "for small gardens", "for busy weekends"),
            ),
            ProductKind(
                "Watering Can",
                (8, 49),
                (
                    "holds ten litres",
                    "has a long spout that reaches the back of borders",
                    "has a rose head for watering seedlings gently",
                    "is made of galvanised steel",
                ),
                ("for balconies", "for greenhouses", "for new gardeners"),
            ),
            ProductKind(
                "Seed Starter Kit",
                (12, 79),
                (
                    "has forty cells for seedlings",
                    "comes with a clear humidity dome",
                    "includes a heat mat for faster germination",
                    "includes organic herb and tomato seeds",
                ),
                ("for vegetable gardens", "for new gardeners", "for sunny windowsills"),
            ),
            ProductKind(
                "Planter",
                (15, 199),
                (
                    "has a self-watering reservoir",
                    "is made of frost-proof terracotta",
                    "has drainage holes and a saucer",
                    "is light enough to move around the patio",
                ),
                ("for balconies", "for patios", "for indoor plants"),
            ),
            ProductKind(
                "Leaf Blower",
                (49, 299),
                (
                    "runs quietly on a rechargeable battery",
                    "clears a patio in minutes",
                    "switches to vacuum mode and shreds leaves",
                    "weighs under three kilograms",
                ),
                ("for large lawns", "for autumn clean-ups", "for driveways"),
            ),
            ProductKind(
                "Smart Sprinkler",
                (49, 299),
                (
                    "waters plants on a schedule that adapts to the weather forecast",
                    "is controlled from a phone app",
                    "skips watering when rain is on the way",
                    "covers up to 150 square metres",
                ),
                ("for large lawns", "for vegetable gardens", "for busy gardeners"),
            ),
        ),
        ADJECTIVES,
    ),
    "office": CategoryTemplate(
        "OF",
        (
            ProductKind(
                "Notebook",
                (4, 39),
                (
                    "has 200 pages of thick, ink-proof paper",
                    "lies flat when open",
                    "has a dotted grid",
                    "has a ribbon bookmark and an elastic closure",
                ),
                ("for students", "for journaling", "for writers"),
            ),
            ProductKind(
                "Fountain Pen",
                (19, 349),
                (
                    "writes smoothly with archival ink",
                    "has a steel nib that suits everyday writing",
                    "fills from cartridges or a converter",
                    "is balanced for long writing sessions",
                ),
                ("for writers", "for journaling", "for signing contracts in style"),
            ),
            ProductKind(
                "Desk Lamp",
                (19, 199),
                (
                    "has a dimmable, flicker-free light",
                    "adjusts from warm to cool white",
                    "charges your phone wirelessly in its base",
                    "has an arm that reaches across a wide desk",
                ),
                ("for home offices", "for students", "for late-night reading"),
            ),
            ProductKind(
                "Label Printer",
                (29, 199),
                (
                    "prints labels straight from your phone",
                    "needs no ink",
                    "prints barcodes and address labels",
                    "cuts each label automatically",
                ),
                ("for small businesses", "for home offices", "for organised pantries"),
            ),
            ProductKind(
                "Paper Shredder",
                (39, 349),
                (
                    "shreds sensitive documents securely",
                    "cuts paper into tiny confetti-sized pieces",
                    "also shreds credit cards and staples",
                    "runs quietly for twenty minutes at a time",
                ),
                ("for home offices", "for small businesses"),
            ),
            ProductKind(
                "Whiteboard",
                (19, 249),
                (
                    "wipes clean without ghosting",
                    "holds magnets as well as ink",
                    "comes with markers and an eraser",
                    "mounts on the wall in minutes",
                ),
                ("for home offices", "for classrooms", "for team planning"),
            ),
            ProductKind(
                "Monitor Arm",
                (29, 199),
                (
                    "holds screens up to 32 inches",
                    "clamps to the edge of your desk",
                    "moves smoothly to any height and angle",
                    "frees up space on your desk",
                ),
                ("for home offices", "for standing desks", "for multi-screen setups"),
            ),
            ProductKind(
                "Desk Organizer",
                (9, 69),
                (
                    "keeps your desk tidy",
                    "has compartments for pens, notes and cables",
                    "is made of bamboo",
                    "has a slot for your phone",
                ),
                ("for home offices", "for students", "for small desks"),
            ),
            ProductKind(
                "Laminator",
                (19, 149),
                (
                    "warms up in a minute",
                    "laminates pages up to A3",
                    "has a release lever that clears any jam",
                    "seals photos and menus in clear film",
                ),
                ("for teachers", "for small businesses", "for home offices"),
            ),
            ProductKind(
                "Document Scanner",
                (79, 349),
                (
                    "scans both sides of a page at once",
                    "turns printed text into searchable PDFs",
                    "feeds up to fifty pages at a time",
                    "saves scans straight to the cloud",
                ),
                ("for home offices", "for small businesses", "for going paperless"),
            ),
        ),
        ADJECTIVES,
    ),
    "sports": CategoryTemplate(
        "SP",
        (
            ProductKind(
                "Tennis Racket",
                (29, 299),
                (
                    "is balanced for control and power",
                    "is built on a lightweight graphite frame",
                    "has a large sweet spot",
                    "comes pre-strung",
                ),
                ("for club players", "for beginners", "for competitive players"),
            ),
            ProductKind(
                "Road Bike",
                (499, 3000),
                (
                    "is built on a lightweight carbon frame",
                    "shifts smoothly through 22 gears",
                    "stops confidently with hydraulic disc brakes",
                    "weighs under eight kilograms",
                ),
                ("for long rides", "for competitive cyclists", "for fast commutes"),
            ),
            ProductKind(
                "Football",
                (12, 59),
                (
                    "is approved for competition play",
                    "keeps its shape match after match",
                    "has a textured surface for better control",
                    "is stitched by hand",
                ),
                ("for club players", "for training sessions", "for kickabouts in the park"),
            ),
            ProductKind(
                "Dumbbell Set",
                (39, 499),
                (
                    "adjusts from five to twenty-five kilograms",
                    "changes weight with a turn of the dial",
                    "has knurled, non-slip handles",
                    "fits in a corner of the room",
                ),
                ("for home gyms", "for strength training", "for beginners"),
            ),
            ProductKind(
                "Swim Goggles",
                (9, 49),
                (
                    "seal comfortably without fogging",
                    "have UV-protected lenses",
                    "have a quick-adjust strap",
                    "give a wide, clear view",
                ),
                ("for lap swimmers", "for triathletes", "for open-water swimming"),
                plural=True,
            ),
            ProductKind(
                "Climbing Harness",
                (39, 149),
                (
                    "is certified for climbing and abseiling",
                    "has four gear loops",
                    "has padded leg loops for long belays",
                    "weighs under 400 grams",
                ),
                ("for indoor climbing", "for sport climbers", "for beginners"),
            ),
            ProductKind(
                "Golf Clubs",
                (199, 2000),
                (
                    "come as a full set with a stand bag",
                    "have forgiving, oversized club heads",
                    "have light, fast graphite shafts",
                    "are fitted to your height",
                ),
                ("for beginners", "for club golfers", "for weekend rounds"),
                plural=True,
            ),
            ProductKind(
                "Skateboard",
                (39, 199),
                (
                    "has a seven-ply maple deck",
                    "rolls smoothly on high-rebound wheels",
                    "has grippy griptape",
                    "comes fully assembled",
                ),
                ("for beginners", "for skate parks", "for city cruising"),
            ),
            ProductKind(
                "Basketball",
                (15, 79),
                (
                    "is approved for competition play",
                    "has a grippy composite leather cover",
                    "bounces true on indoor and outdoor courts",
                    "holds air for months",
                ),
                ("for club players", "for the driveway hoop", "for training sessions"),
            ),
            ProductKind(
                "Jump Rope",
                (6, 39),
                (
                    "spins smoothly on ball bearings",
                    "adjusts to any height",
                    "has a counter in the handle",
                    "is light enough to take anywhere",
                ),
                ("for home gyms", "for boxers", "for cardio workouts"),
            ),
        ),
        ADJECTIVES,
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
