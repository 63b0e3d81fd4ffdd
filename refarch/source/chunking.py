"""Long text: a row's embedded text as one or more chunks, each its own vector (docs/long-text.md).

A text that fits the embedder's window stays one chunk, the whole text: a product is indexed as it
always was. A longer one (or, when the definition sets a `size`, one longer than that) is split
into chunks of `size` tokens with `overlap` tokens shared between
neighbours, counted in the embedder's own tokens (each index generation splits with its own
embedder), at the largest boundary that fits: paragraph, then line, sentence, word.

The splitting is semantic-text-splitter's (the Python binding of the Rust `text-splitter` crate):
it splits by Unicode paragraphs, sentences and words and counts with a Hugging Face tokenizer, with
OpenAI's tiktoken encodings compiled in (no download at run time, which a Lambda in a private subnet
could not do), or with any counting function; it gives each chunk's character offset (the snippet
search shows); one wheel with no Python dependencies, fast enough to split in Emu's transaction.

`strategy = "none"` keeps the old behaviour: one vector per row, the model reading what fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from semantic_text_splitter import TextSplitter

Strategy = Literal["tokens", "none"]
STRATEGIES: tuple[Strategy, ...] = ("tokens", "none")
# A chunk is at most the window, and at most this many tokens (a large window, such as OpenAI's 8,191,
# would make chunks too broad for a fact in one paragraph to rank them): a text that fits the window
# is still one chunk whatever its size.
DEFAULT_MAX_SIZE = 512
DEFAULT_OVERLAP = 32
# Characters per token when an embedder's tokenizer is not available (a conservative estimate: English
# averages about 4; a chunk cut by this estimate is never too long for the model).
ESTIMATED_CHARS_PER_TOKEN = 2.5


@dataclass(frozen=True)
class Chunking:
    """How a source's long texts are split (the definition's [chunking] table)."""

    strategy: Strategy = "tokens"
    # Tokens per chunk. None: a text that fits the embedder's window is one chunk, a longer one is split
    # into chunks of the window, at most DEFAULT_MAX_SIZE; set: every text longer than it is split.
    size: int | None = None
    overlap: int = DEFAULT_OVERLAP

    @property
    def is_default(self) -> bool:
        return self == Chunking()

    def key(self) -> str:
        """A stable form of the settings (part of the embedded text's fingerprint)."""
        return f"{self.strategy}:{self.size or 'window'}:{self.overlap}"

    def describe(self) -> str:
        """One line, for `refarch source check` and the generation's fingerprint."""
        if self.strategy == "none":
            return "none (one vector per row, cut at the model's window)"
        size = f"{self.size} tokens" if self.size else f"the window, at most {DEFAULT_MAX_SIZE} tokens"
        return f"tokens (chunks of {size}, {self.overlap} overlapping)"


def parse_chunking(spec: Any, problems: list[str]) -> Chunking:
    """The [chunking] table of a definition (absent: the default), its problems appended to `problems`."""
    if spec is None:
        return Chunking()
    if not isinstance(spec, dict):
        problems.append("chunking must be a table of settings (strategy, size, overlap)")
        return Chunking()
    unknown = set(spec) - {"strategy", "size", "overlap"}
    if unknown:
        problems.append(f"chunking: unknown setting(s) {', '.join(sorted(unknown))}")
    strategy = spec.get("strategy", "tokens")
    if strategy not in STRATEGIES:
        problems.append(f"chunking.strategy {strategy!r} must be one of {', '.join(STRATEGIES)}")
        strategy = "tokens"
    size, overlap = spec.get("size"), spec.get("overlap", DEFAULT_OVERLAP)
    for name, value, least in (("size", size, 16), ("overlap", overlap, 0)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            problems.append(f"chunking.{name} must be a whole number of tokens, at least {least}")
            return Chunking(strategy=strategy)
    if size is not None and overlap >= size // 2:
        problems.append(f"chunking.overlap ({overlap}) must be less than half of chunking.size ({size})")
    return Chunking(strategy=strategy, size=size, overlap=overlap)


@dataclass(frozen=True)
class TextChunk:
    """One chunk of a row's text: its number (0 first), its characters' place in the text, and the text."""

    number: int
    start: int
    end: int
    text: str


# How an embedder counts tokens (its `tokens` attribute): a Hugging Face tokenizer, a tiktoken model
# or encoding, or an estimate of characters per token.
@dataclass(frozen=True)
class HuggingFaceTokens:
    tokenizer: Any  # tokenizers.Tokenizer, truncation off
    special_tokens: int = 2  # [CLS] and [SEP], which the window also holds


@dataclass(frozen=True)
class TiktokenTokens:
    model: str


@dataclass(frozen=True)
class EstimatedTokens:
    chars_per_token: float = ESTIMATED_CHARS_PER_TOKEN


TokenCounting = HuggingFaceTokens | TiktokenTokens | EstimatedTokens


class Tokenized(Protocol):
    """What chunking needs of an embedder: its window and how it counts tokens."""

    max_input_tokens: int
    tokens: TokenCounting


class Chunker:
    """Splits texts for one embedder (its window and tokens) the way a source's chunking says."""

    def __init__(self, chunking: Chunking, *, window: int | None, tokens: TokenCounting | None) -> None:
        self.chunking = chunking
        self.enabled = chunking.strategy == "tokens" and window is not None and tokens is not None
        self._fits: TextSplitter | None = None
        self._splitter: TextSplitter | None = None
        self.size = 0
        if self.enabled:
            assert window is not None and tokens is not None
            room = window - (tokens.special_tokens if isinstance(tokens, HuggingFaceTokens) else 0)
            self.size = min(chunking.size or DEFAULT_MAX_SIZE, room)
            self.threshold = self.size if chunking.size else room
            self.chars_per_token = tokens.chars_per_token if isinstance(tokens, EstimatedTokens) else 4.0
            # A text up to the window is one chunk, unless the definition sets a smaller size of its own.
            self._fits = _splitter(tokens, self.threshold, 0)
            self._splitter = _splitter(tokens, self.size, min(chunking.overlap, self.size // 2 - 1))

    def split(self, text: str) -> list[TextChunk]:
        """The text's chunks: one (the whole text, untouched) when it fits the window or chunking is off."""
        whole = [TextChunk(0, 0, len(text), text)]
        if self._fits is None or self._splitter is None or len(self._fits.chunks(text)) <= 1:
            return whole
        found = self._splitter.chunk_indices(text)
        return [TextChunk(n, start, start + len(piece), piece) for n, (start, piece) in enumerate(found)] or whole

    def estimated_chunks(self, chars: int) -> int:
        """About how many chunks a text of `chars` characters makes (Emu sizes its batches by chunks)."""
        if not self.enabled or chars <= self.threshold * self.chars_per_token:
            return 1
        step = max(1.0, (self.size - self.chunking.overlap) * self.chars_per_token)
        return max(1, math.ceil(chars / step))


def chunker_for(chunking: Chunking, embedder: object) -> Chunker:
    """The chunker of an embedder; one that does not say its window or tokens is never chunked."""
    return Chunker(
        chunking, window=getattr(embedder, "max_input_tokens", None), tokens=getattr(embedder, "tokens", None)
    )


def _splitter(tokens: TokenCounting, capacity: int, overlap: int) -> TextSplitter:
    if isinstance(tokens, HuggingFaceTokens):
        return TextSplitter.from_huggingface_tokenizer(tokens.tokenizer, capacity, overlap)
    if isinstance(tokens, TiktokenTokens):
        return TextSplitter.from_tiktoken_model(tokens.model, capacity, overlap)
    per_token = tokens.chars_per_token
    return TextSplitter.from_callback(lambda text: math.ceil(len(text) / per_token), capacity, overlap)
