"""How search reads codes and misspelled words: pure functions, table-driven."""

from __future__ import annotations

import pytest

from refarch.search.query_text import code_key, corrected_query, trigram_query


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("AB-1234-C", "ab1234c"),  # as printed
        ("AB1234C", "ab1234c"),  # without separators
        ("ab 1234-c", "ab1234c"),  # spaces and case do not matter
        ("AB-1234", "ab1234"),  # the first part of a SKU: matched as a prefix
        ("WH-1000XM5", "wh1000xm5"),  # a model code in a name
        ("XT9", "xt9"),
        ("kettle", None),  # no digit: a word, not a code
        ("running shoes", None),
        ("a1", None),  # too short to mean one product
        ('"AB-1234"', None),  # websearch syntax is for full-text search
        ("one two three four 5", None),  # more parts than a code has
    ],
)
def test_code_key(query, key):
    assert code_key(query) == key


@pytest.mark.parametrize(
    ("query", "names", "corrected"),
    [
        # A dropped letter and two swapped letters, corrected from the closest names' words.
        ("Sabel stnd mixer", ["Sable Max Stand Mixer", "Sable Pro Kettle"], "sable stand mixer"),
        # Every word is in a name: nothing to correct.
        ("sable stand mixer", ["Sable Max Stand Mixer"], None),
        # No close word: left as typed (and so nothing changed).
        ("zzzzzz", ["Sable Max Stand Mixer"], None),
        # No close name at all.
        ("sabel", [], None),
    ],
)
def test_corrected_query(query, names, corrected):
    assert corrected_query(query, names) == corrected


def test_a_trigram_query_allows_one_slip_per_word_and_ranks_by_every_trigram():
    # Given a brand with two letters swapped and a kind with a letter dropped
    query = trigram_query("Sabel mixr")
    # Then a candidate must hold, for each word, its trigrams but for any four in a row (all but one of a
    # four-letter word's)
    assert query is not None
    assert query.candidates == "(('el_') | ('_sa')) & (('xr_') | ('_mi'))"
    # And the ranking counts every trigram of every word
    assert query.ranking.split(" | ") == sorted(
        f"'{g}'" for g in ("_sa", "sab", "abe", "bel", "el_", "_mi", "mix", "ixr", "xr_")
    )


@pytest.mark.parametrize("query", ["tv", "a need in plain words that matched nothing"])
def test_no_trigram_query_for_short_words_or_long_queries(query):
    assert trigram_query(query) is None
