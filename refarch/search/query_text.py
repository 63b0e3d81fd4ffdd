"""How search reads what people type: codes whatever their separators, and words with a slip of the keyboard.

Pure functions; the SQL that uses them is in `refarch.search.lexical`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from difflib import SequenceMatcher

# A code is letters and digits, maybe split by dashes, dots, slashes, underscores or spaces, in at most
# a few parts ("AB-1234-C", "ab1234c", "WH 1000XM5"), with at least one digit.
_CODE = re.compile(r"[0-9a-z]+(?:[-./_ ]+[0-9a-z]+){0,3}")
MIN_CODE_CHARS = 3
MAX_CODE_CHARS = 32
# How close (difflib ratio) a word of a product name must be to a query word to replace it: one letter
# dropped or two swapped in a word of five letters or more stays above it.
MIN_WORD_SIMILARITY = 0.75
_WORD = re.compile(r"[^\W_]+")


def code_key(query: str) -> str | None:
    """`query` as migration 0014 stores codes (lower case, separators removed), or None if it is no code."""
    text = query.strip().lower()
    if not _CODE.fullmatch(text):
        return None
    key = re.sub(r"[^0-9a-z]", "", text)
    if not MIN_CODE_CHARS <= len(key) <= MAX_CODE_CHARS or not any(c.isdigit() for c in key):
        return None
    return key


def trigram_query(text: str) -> str | None:
    """A tsquery (text) matching any trigram of `text`'s words, made as migration 0014's word_trigrams makes
    them ("_ab", "abc", "bc_"); None when `text` has no word."""
    words = re.findall(r"[0-9a-z]+", text.lower())
    grams = sorted({f"_{w}_"[i : i + 3] for w in words for i in range(len(w))})
    return " | ".join(f"'{gram}'" for gram in grams) or None


def corrected_query(query: str, names: Iterable[str]) -> str | None:
    """`query` with each word no name holds replaced by the closest word of `names`; None if nothing changed."""
    vocabulary = {word for name in names for word in _WORD.findall(name.lower())}
    if not vocabulary:
        return None
    words = _WORD.findall(query.lower())
    corrected = []
    for word in words:
        if word in vocabulary or len(word) < MIN_CODE_CHARS:
            corrected.append(word)
            continue
        best = max(sorted(vocabulary), key=lambda known: SequenceMatcher(None, word, known).ratio())
        close = SequenceMatcher(None, word, best).ratio() >= MIN_WORD_SIMILARITY
        corrected.append(best if close else word)
    return " ".join(corrected) if corrected != words else None
