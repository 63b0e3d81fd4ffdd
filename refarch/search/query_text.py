"""How search reads what people type: codes whatever their separators, and words with a slip of the keyboard.

Pure functions; the SQL that uses them is in `refarch.search.lexical`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
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
# Words this long or longer may be misspelled (and are looked up by their trigrams); one slip of the
# keyboard changes at most this many consecutive trigrams of a word.
MIN_TYPO_WORD = 4
TYPO_WINDOW = 4
# Corrections are tried on queries of up to this many words (of two letters or more: "&" and "d" in
# "Cedar & Co vitamin d" are not): names, and brand + kind, as people type
# them. A longer query that matches nothing is a need in plain words, which the semantic side answers
# (and asking the trigram index for it cost 20-25 ms at 100,000 products).
MAX_TYPO_WORDS = 4


def code_key(query: str) -> str | None:
    """`query` as migration 0014 stores codes (lower case, separators removed), or None if it is no code."""
    text = query.strip().lower()
    if not _CODE.fullmatch(text):
        return None
    key = re.sub(r"[^0-9a-z]", "", text)
    if not MIN_CODE_CHARS <= len(key) <= MAX_CODE_CHARS or not any(c.isdigit() for c in key):
        return None
    return key


def _trigrams(word: str) -> list[str]:
    return [f"_{word}_"[i : i + 3] for i in range(len(word))]


def _quoted(grams: Iterable[str]) -> list[str]:
    return [f"'{gram}'" for gram in grams]


@dataclass(frozen=True)
class TrigramQuery:
    """tsqueries (text) on migration 0014's word trigrams: which names may be meant, and how to rank them."""

    candidates: str
    ranking: str


def trigram_query(text: str) -> TrigramQuery | None:
    """The names a misspelled `text` may mean, as trigrams made the way migration 0014's word_trigrams makes
    them ("_ab", "abc", "bc_"); None when `text` has no word long enough to misspell.

    A candidate name holds, for every query word of MIN_TYPO_WORD letters or more, a word with the same
    trigrams but for TYPO_WINDOW consecutive ones (what one dropped, added or swapped letter changes; in a
    four-letter word, all but one): an index lookup, not a comparison with every name. The ranking counts
    the trigrams a name shares.
    """
    words = re.findall(r"[0-9a-z]+", text.lower())
    if sum(len(word) > 1 for word in words) > MAX_TYPO_WORDS:
        return None
    groups = []
    for word in words:
        grams = _trigrams(word)
        if len(word) < MIN_TYPO_WORD:
            continue
        window = min(TYPO_WINDOW, len(grams) - 1)  # a trigram of the word stays
        keeps = [grams[:start] + grams[start + window :] for start in range(len(grams) - window + 1)]
        groups.append("(" + " | ".join("(" + " & ".join(_quoted(sorted(set(keep)))) + ")" for keep in keeps) + ")")
    if not groups:
        return None
    every = sorted({gram for word in words for gram in _trigrams(word)})
    return TrigramQuery(candidates=" & ".join(groups), ranking=" | ".join(_quoted(every)))


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
