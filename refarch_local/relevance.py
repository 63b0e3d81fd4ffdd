"""The labelled query set of `refarch bench relevance` and its metrics (nDCG@10, hits@3).

The set is built from the seed catalog (`refarch.catalog`) and stored in the repository
(`bench/relevance_queries.json`), so a change to the catalog or to this builder shows up as a diff.
Judgements come from what each product *is* (its kind, brand, name and traits, as the catalog
generated them), never from what a search returned; a product is named by the SKU it has in the
benchmark's catalog (after `catalog_changes`, below):

- sku: the query is a SKU; that product is grade 3.
- exact name: a product's full name; products with that name 3, same brand and kind 2, same kind 1.
- brand: a brand alone (every product of the brand 3), or a brand and a kind of product (both 3,
  either one 1).
- attribute: a kind of product and one of its traits, in other words ("jump rope counter in the
  handle"); that kind with that trait 3, that kind without it 1.
- paraphrase: a need in plain words with none of the product's words; the kinds that meet it 3
  (or 2 for a near fit), other products of their category 1.
- misspelled: a brand and a kind with typos; both 3, the kind alone 1.

Classes people type with an exact product in mind (issue 25), built from other products of the same
catalog (a generator of their own, so the classes above stay as they were):

- sku_no_separators: a SKU without its dash, in upper or lower case; that product 3.
- sku_prefix: the first part of a SKU; the product is given a longer SKU in the benchmark's catalog
  (`catalog_changes`: "KI-0000123" becomes "KI-0000123-BK"); that product 3.
- model_code: a model code, typed with or without its dash; the product is given the code at the end
  of its name in the benchmark's catalog ("... Stand Mixer WH-1000XM5"); that product 3.
- rare_word: a word that only one product's description uses; that product 3.
- partial_name: a product's name without its brand or without its last word; the products whose name
  holds those words 3, others of the same kind 1.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from refarch import catalog

QUERY_SET_PATH = Path(__file__).resolve().parents[1] / "bench" / "relevance_queries.json"
CATALOG_ROWS = 2000
PER_CLASS = 20
CLASSES = (
    "paraphrase",
    "exact_name",
    "sku",
    "brand",
    "attribute",
    "misspelled",
    "sku_no_separators",
    "sku_prefix",
    "model_code",
    "rare_word",
    "partial_name",
)
# The classes where one product (or one name) is what the person means: the right one must come first.
EXACT_INTENT = ("exact_name", "sku", "sku_no_separators", "sku_prefix", "model_code", "rare_word", "partial_name")
CUTOFF = 10
HITS_AT = 3
SKU_SUFFIXES = ("BK", "WH", "C", "XL", "2", "EU")
# English stop words (Postgres' list) of five letters or more: full-text search drops them, so no
# product "uses" them.
STOP_WORDS = frozenset(
    ("about", "above", "after", "again", "against", "below", "between", "before", "being", "doing", "during")
    + ("further", "having", "itself", "myself", "other", "ourselves", "should", "their", "theirs", "themselves")
    + ("there", "these", "those", "through", "under", "until", "where", "which", "while", "yours", "yourself")
)

# A need in plain words -> {kind: grade}. None of these queries uses the kind's own words.
PARAPHRASES: dict[str, dict[str, int]] = {
    "boil water for tea quickly": {"Kettle": 3},
    "make crispy fries with hardly any oil": {"Air Fryer": 3},
    "shelter for sleeping outdoors when it rains": {"Camping Tent": 3, "Sleeping Bag": 2},
    "block out the engine noise on a long flight": {"Noise-Cancelling Headphones": 3, "Wireless Earbuds": 2},
    "software that predicts next month's sales": {"Forecasting Engine": 3, "Analytics Suite": 2},
    "keep all my logins safe in one place": {"Password Vault": 3},
    "turn recorded meetings into written notes": {"Speech Transcriber": 3},
    "catch stolen credit card payments": {"Fraud Detector": 3},
    "strong coffee like a cafe makes, at home": {"Espresso Machine": 3},
    "fluffy rice without watching the pot": {"Rice Cooker": 3},
    "light to see the trail at night, hands free": {"Headlamp": 3},
    "make stream water safe to drink": {"Water Filter": 3},
    "count my steps and watch my heart rate": {"Fitness Tracker": 3, "Smartwatch": 2},
    "destroy old bank statements securely": {"Paper Shredder": 3},
    "water the lawn on a schedule from my phone": {"Smart Sprinkler": 3},
    "ease sore muscles after a workout": {"Massage Gun": 3, "Foam Roller": 3},
    "learn how computers learn from data": {"Machine Learning Textbook": 3},
    "experiments that get kids excited about chemistry": {"Science Kit": 3},
    "keep drinks cold at the beach all day": {"Cooler": 3},
    "trim branches and shape the hedges": {"Pruning Shears": 3},
}


def _typo(word: str, rng: random.Random) -> str:
    """One slip of the keyboard in a word of five letters or more: a letter dropped or two swapped."""
    if len(word) < 5 or not word.isalpha():
        return word
    at = rng.randrange(1, len(word) - 2)
    if rng.random() < 0.5:
        return word[:at] + word[at + 1 :]
    return word[:at] + word[at + 1] + word[at] + word[at + 2 :]


def _misspell(text: str, rng: random.Random) -> str:
    words = text.split()
    changed = [_typo(w, rng) for w in words]
    if changed == words:  # every word too short: misspell the longest one anyway
        longest = max(range(len(words)), key=lambda n: len(words[n]))
        w = words[longest]
        changed[longest] = w[:-2] + w[-1] + w[-2] if len(w) > 2 else w
    return " ".join(changed)


def _model_code(rng: random.Random) -> str:
    """A made-up model code, shaped like real ones: "XT9", "QX-40", "WH-1000XM5"."""
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(2))
    shape = rng.randrange(3)
    if shape == 0:
        return f"{letters}{rng.randint(2, 9)}"
    if shape == 1:
        return f"{letters}-{rng.randint(10, 99)}"
    return f"{letters}-{rng.randint(1, 9)}000{rng.choice(string.ascii_uppercase)}M{rng.randint(2, 9)}"


def _typed_code(code: str, n: int) -> str:
    """A code as someone might type it: as printed, or in lower case without its dash."""
    return code if n % 2 == 0 or "-" not in code else code.replace("-", "").lower()


def _rare_words(items: Sequence[catalog.SeedProduct]) -> list[tuple[str, catalog.SeedProduct]]:
    """(word, product) for words of five letters or more that one description uses and no other text shares
    the first five letters of (so no other product holds the word under English stemming either)."""
    tokens = [set(re.findall(r"[a-z]+", f"{p.name} {p.category} {p.description}".lower())) for p in items]
    stems = Counter(word[:5] for words in tokens for word in words)
    rare: list[tuple[str, catalog.SeedProduct]] = []
    for p in items:
        described = set(re.findall(r"[a-z]+", p.description.lower()))
        rare += [(w, p) for w in sorted(described) if len(w) >= 5 and stems[w[:5]] == 1 and w not in STOP_WORDS]
    return rare


def _exact_intent_classes(
    items: list[catalog.SeedProduct], taken: set[str], rng: random.Random, add: Any
) -> list[dict[str, str]]:
    """Add the issue-25 classes (module docstring) and return the catalog changes they need."""
    free = [p for p in items if p.sku not in taken]
    picks = rng.sample(free, PER_CLASS * 4)
    changes: list[dict[str, str]] = []
    for n, target in enumerate(picks[0:PER_CLASS]):
        typed = target.sku.replace("-", "")
        add("sku_no_separators", typed if n % 2 == 0 else typed.lower(), {target.sku: 3})
    for n, target in enumerate(picks[PER_CLASS : 2 * PER_CLASS]):
        longer = f"{target.sku}-{SKU_SUFFIXES[n % len(SKU_SUFFIXES)]}"
        changes.append({"sku": target.sku, "new_sku": longer, "new_name": target.name})
        add("sku_prefix", target.sku if n % 2 == 0 else target.sku.lower(), {longer: 3})
    used_codes: set[str] = set()
    renamed = {}
    for n, target in enumerate(picks[2 * PER_CLASS : 3 * PER_CLASS]):
        code = _model_code(rng)
        while code in used_codes:
            code = _model_code(rng)
        used_codes.add(code)
        renamed[target.sku] = f"{target.name} {code}"
        changes.append({"sku": target.sku, "new_sku": target.sku, "new_name": renamed[target.sku]})
        add("model_code", _typed_code(code, n), {target.sku: 3})
    items = [replace(p, name=renamed.get(p.sku, p.name)) for p in items]
    rare = _rare_words(items)
    for word, target in rng.sample(rare, min(PER_CLASS, len(rare))):
        add("rare_word", word, {target.sku: 3})
    for n, target in enumerate(picks[3 * PER_CLASS : 4 * PER_CLASS]):
        words = target.name.split()
        partial = " ".join(words[1:] if n % 2 == 0 else words[:-1])
        add(
            "partial_name",
            partial,
            {
                p.sku: 3 if f" {partial.lower()} " in f" {p.name.lower()} " else 1 if p.kind == target.kind else 0
                for p in items
            },
        )
    return changes


def build_query_set(rows: int = CATALOG_ROWS, seed: int = 15) -> dict[str, Any]:
    """The labelled queries for the first `rows` catalog products (deterministic for a seed)."""
    items = [catalog.make_product(i) for i in range(1, rows + 1)]
    rng = random.Random(seed)
    picks = rng.sample(items, PER_CLASS * 5)
    queries: list[dict[str, Any]] = []

    def add(cls: str, text: str, grades: dict[str, int]) -> None:
        judged = {sku: grade for sku, grade in sorted(grades.items()) if grade > 0}
        queries.append(
            {
                "id": f"{cls}-{sum(q['class'] == cls for q in queries) + 1}",
                "class": cls,
                "query": text,
                "judgements": judged,
            }
        )

    def grade(rules: Sequence[tuple[int, Any]]) -> dict[str, int]:
        return {p.sku: max((g for g, rule in rules if rule(p)), default=0) for p in items}

    for target in picks[0:PER_CLASS]:
        add("sku", target.sku, {target.sku: 3})
    for target in picks[PER_CLASS : 2 * PER_CLASS]:
        add(
            "exact_name",
            target.name,
            grade(
                [
                    (3, lambda p, t=target: p.name == t.name),
                    (2, lambda p, t=target: p.brand == t.brand and p.kind == t.kind),
                    (1, lambda p, t=target: p.kind == t.kind),
                ]
            ),
        )
    for n, target in enumerate(picks[2 * PER_CLASS : 3 * PER_CLASS]):
        if n % 2 == 0:
            add("brand", target.brand, grade([(3, lambda p, t=target: p.brand == t.brand)]))
        else:
            add(
                "brand",
                f"{target.brand} {target.kind.lower()}",
                grade(
                    [
                        (3, lambda p, t=target: p.brand == t.brand and p.kind == t.kind),
                        (1, lambda p, t=target: p.brand == t.brand or p.kind == t.kind),
                    ]
                ),
            )
    for target in picks[3 * PER_CLASS : 4 * PER_CLASS]:
        trait = target.traits[0]
        # "has a counter in the handle" -> "jump rope counter in the handle": the feature, not the sentence.
        feature = trait.split(" ", 1)[1] if " " in trait else trait
        for article in ("a ", "an ", "the "):
            feature = feature.removeprefix(article)
        add(
            "attribute",
            f"{target.kind.lower()} {feature}",
            grade(
                [
                    (3, lambda p, t=target, tr=trait: p.kind == t.kind and tr in p.traits),
                    (1, lambda p, t=target: p.kind == t.kind),
                ]
            ),
        )
    kinds_by_category = {p.kind: p.category for p in items}
    for text, kinds in PARAPHRASES.items():
        categories = {kinds_by_category[k] for k in kinds if k in kinds_by_category}
        add("paraphrase", text, {p.sku: kinds.get(p.kind, 1 if p.category in categories else 0) for p in items})
    for target in picks[4 * PER_CLASS : 5 * PER_CLASS]:
        add(
            "misspelled",
            _misspell(f"{target.brand} {target.kind.lower()}", rng),
            grade(
                [
                    (3, lambda p, t=target: p.brand == t.brand and p.kind == t.kind),
                    (1, lambda p, t=target: p.kind == t.kind),
                ]
            ),
        )
    taken = {p.sku for p in picks}
    changes = _exact_intent_classes(items, taken, random.Random(seed + 1), add)
    # Judgements name each product by the SKU it has in the benchmark's catalog, after the changes: a
    # product given a longer SKU is still of its brand and kind for every class.
    new_skus = {c["sku"]: c["new_sku"] for c in changes}
    for query in queries:
        query["judgements"] = dict(sorted((new_skus.get(s, s), g) for s, g in query["judgements"].items()))
    return {
        "catalog_rows": rows,
        "built_by": "refarch_local.relevance.build_query_set (python -m refarch_local.relevance rebuilds it)",
        "catalog_changes": changes,
        "queries": queries,
    }


def load_query_set(path: Path = QUERY_SET_PATH) -> dict[str, Any]:
    """The stored query set."""
    query_set: dict[str, Any] = json.loads(path.read_text())
    return query_set


def ndcg(ranked_skus: Sequence[str], judgements: dict[str, int], cutoff: int = CUTOFF) -> float:
    """Normalised discounted cumulative gain at `cutoff` with graded gains 2^grade - 1."""

    def dcg(grades: Sequence[int]) -> float:
        total: float = sum((2**g - 1) / math.log2(position + 2) for position, g in enumerate(grades[:cutoff]))
        return total

    ideal = dcg(sorted(judgements.values(), reverse=True))
    return dcg([judgements.get(sku, 0) for sku in ranked_skus]) / ideal if ideal else 0.0


def hit_at(ranked_skus: Sequence[str], judgements: dict[str, int], cutoff: int = HITS_AT) -> bool:
    """Whether a result of the query's highest grade is among the first `cutoff`."""
    best = max(judgements.values(), default=0)
    return best > 0 and any(judgements.get(sku, 0) == best for sku in ranked_skus[:cutoff])


def main() -> None:
    """Rebuild the stored query set (after a change to the catalog or to the builder)."""
    QUERY_SET_PATH.parent.mkdir(parents=True, exist_ok=True)
    QUERY_SET_PATH.write_text(json.dumps(build_query_set(), indent=1) + "\n")
    print(f"wrote {QUERY_SET_PATH}")


if __name__ == "__main__":
    main()
