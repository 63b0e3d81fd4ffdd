"""Search: hybrid (semantic + lexical, fused by rank), semantic only, or lexical only; rows from Postgres.

- semantic: the query's vector (cached per model, `refarch.search.query_embeddings`) against the vector index
  of the active index generation, embedded by that generation's model (`refarch.generations.targets`, re-read
  every few seconds: a `refarch reindex --switch` needs no restart).
- lexical: Postgres full-text search on the row's own text (`refarch.search.lexical`), after the products
  whose SKU or model code starts with the query read as a code; when nothing matches, the query with its
  misspelled words corrected from the closest product names (`SearchPage.did_you_mean`).
- hybrid (default): both lists, fused with weighted Reciprocal Rank Fusion (`refarch.search.fusion`); code
  matches, then a short (confident) lexical list, come first.
When the embedding service or the vector index (Pinecone) is down, or too slow for the search budget
(`refarch.search.budget`: both calls together get ~2.5 s), a hybrid or semantic search answers in lexical
mode and says so (`SearchPage.fallback_reason`) instead of failing: the text it ranks is in Postgres,
which is still there. So does a search that finds every semantic slot of its process taken (slow providers
hold them): a thread is always left for /healthz and for searches answered from Postgres alone. And so does
a search whose process cannot build the active generation's embedder or index (a ConfigurationError: a move
off OpenAI deployed without keep_openai_access, docs/deploy.md): the error is logged once, and the lexical
answer says the server is not configured for it, until it can build it (a switch, or a deploy with the flag).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from refarch import products
from refarch.db import Connection, Database
from refarch.embeddings import Embedder
from refarch.index.port import Match, SearchFilter, VectorIndex, best_per_row
from refarch.input_errors import TEXT_PATTERN, field_messages
from refarch.observability import logger
from refarch.search import lexical
from refarch.search.budget import BudgetSpentError, Deadline, SemanticSlots
from refarch.search.fallbacks import (
    BUSY_MESSAGE,
    EMBEDDING_OUTAGE_MESSAGE,
    EMBEDDING_SLOW_MESSAGE,
    NOT_CONFIGURED_MESSAGE,
    VECTOR_INDEX_OUTAGE_MESSAGE,
    VECTOR_INDEX_SLOW_MESSAGE,
    is_vector_index_outage,
    is_vector_index_retryable,
    is_vector_index_timeout,
)
from refarch.search.fusion import FUSION, FusedHit, FusionSettings, reciprocal_rank_fusion
from refarch.search.lexical import LexicalLists
from refarch.search.query_embeddings import DEFAULT_MAX_BYTES, EmbeddingUnavailableError, QueryEmbeddings
from refarch.search.rerank import Reranker, rerank_or_keep
from refarch.serving import SEARCH_BUDGET, SEMANTIC_SEARCH_SLOTS, SearchBudget
from refarch.settings import ConfigurationError, Settings
from refarch.source import Source, records
from refarch.source import load as load_source
from refarch.source import rows as source_rows
from refarch.source.definition import ColumnType
from refarch.source.records import Record

MAX_QUERY_CHARS = 512
MAX_K = 100
DEFAULT_K = 20
# Searches rank to this depth: a page past it is empty (listing has no such cap).
MAX_DEPTH = 1000
# Pages go no deeper than this: a deep OFFSET makes Postgres walk and throw away every row before it,
# so an anonymous caller may not ask for page 10 million. A fixed maximum (not page x k) so that the
# OpenAPI document can state it; at the default k of 20 it still reaches 10,000 products.
MAX_PAGE = 500
# The deepest result any page reaches; listings count their total only this far (plus one row, to
# know there is more), instead of counting a whole large table on every anonymous request.
MAX_RESULT_WINDOW = MAX_PAGE * MAX_K
# After the active generation's embedder or index could not be built (ConfigurationError), how long searches
# answer lexically before trying again: a switch to a generation the settings can build is followed this soon.
NOT_CONFIGURED_RECHECK_SECONDS = 5.0
# Hybrid fuses each list to at least this depth, so pages within the first 40 results come from one
# fused ranking and concatenate exactly; deeper pages fuse deeper lists. 40 is pgvector's default
# hnsw.ef_search: fusing asks the vector index no more than a semantic search does (a depth of 100
# made hybrid several times slower than semantic at 100,000 products: docs/benchmarks.md).
FUSION_DEPTH = 40
# The most chunks one vector query returns while looking for enough distinct rows (long texts): Pinecone
# returns at most 1,000 matches with their metadata.
MAX_CHUNK_DEPTH = 1000

SearchMode = Literal["hybrid", "semantic", "lexical"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
DEFAULT_MODE: SearchMode = "hybrid"


class SearchInputError(ValueError):
    """The request cannot be answered as asked; the message says why (an HTTP 400)."""


@dataclass(frozen=True)
class SearchHit:
    """A row of the source with its score (None when listing), the lists it came from with its rank in each,
    and sync. `product` is the row (a `refarch.source.records.Record`: columns by name, as for products)."""

    product: Record
    score: float | None
    sync: dict[str, Any]
    ranks: dict[str, int] = field(default_factory=dict)
    source: Source = field(default_factory=lambda: load_source(Settings().source), repr=False, compare=False)
    # For a long text (several chunks), the chunk that ranked it: the part of the text the query found.
    snippet: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for products, exactly the product as the API has always shown it; `snippet`
        only when the row matched by a chunk of its long text)."""
        sync = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in self.sync.items()}
        found = {**self.product.as_dict(self.source), "score": self.score, "ranks": dict(self.ranks), "sync": sync}
        return found | ({"snippet": self.snippet} if self.snippet is not None else {})


@dataclass(frozen=True)
class SearchPage:
    """One page of results, with the mode that ranked them (and why it differs from the one asked for)."""

    query: str
    hits: list[SearchHit]
    page: int
    k: int
    total: int | None
    has_more: bool
    mode: SearchMode = DEFAULT_MODE
    total_capped: bool = False
    requested_mode: SearchMode = DEFAULT_MODE
    fallback_reason: str | None = None
    did_you_mean: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "query": self.query,
            "mode": self.mode,
            "requested_mode": self.requested_mode,
            "fallback_reason": self.fallback_reason,
            "did_you_mean": self.did_you_mean,
            "page": self.page,
            "k": self.k,
            "total": self.total,
            "total_capped": self.total_capped,
            "has_more": self.has_more,
            "results": [h.as_dict() for h in self.hits],
        }


def _blank_as_none(value: str) -> str | None:
    return value.strip() or None


_Listing = TypeVar("_Listing", bound="ListingRequest")


class ListingRequest(BaseModel):
    """Which page of products, filtered how: what a listing (and every search) asks for."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True)

    k: Annotated[int, Field(ge=1, le=MAX_K, description="Results per page")] = DEFAULT_K
    page: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_PAGE,
            description=f"Page number (at most {MAX_PAGE}). Searches rank to a depth of {MAX_DEPTH} results: "
            "a page past it is empty",
        ),
    ] = 1
    category: Annotated[
        str | None,
        Field(pattern=TEXT_PATTERN, description="Only this category (exact match)"),
        AfterValidator(lambda value: _blank_as_none(value) if value is not None else None),
    ] = None
    min_price: Annotated[float, Field(ge=0, allow_inf_nan=False, description="Lowest price")] | None = None
    max_price: (
        Annotated[
            float, Field(ge=0, allow_inf_nan=False, description="Highest price (below min_price: nothing matches)")
        ]
        | None
    ) = None

    # How a refusal is worded where the generic wording would not say it best.
    MESSAGES: ClassVar[dict[tuple[str, str], str]] = {
        ("k", "greater_than_equal"): f"must be between 1 and {MAX_K}",
        ("k", "less_than_equal"): f"must be between 1 and {MAX_K}",
        ("page", "less_than_equal"): f"must be {MAX_PAGE:,} or less (pages go no deeper: narrow with filters)",
        ("min_price", "greater_than_equal"): "cannot be negative",
        ("max_price", "greater_than_equal"): "cannot be negative",
    }

    @classmethod
    def checked(cls: type[_Listing], values: Mapping[str, Any]) -> _Listing:
        """The request from field names or query-string names (q=); SearchInputError naming what is wrong."""
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            messages, _ = field_messages(err, cls.MESSAGES)
            name, message = next(iter(messages.items()))
            raise SearchInputError(f"{'query' if name == 'q' else name} {message}") from None


class SearchRequest(ListingRequest):
    """What a search asks for, with every limit it must respect (the API's query string, the page, the CLI)."""

    query: Annotated[
        str,
        Field(
            alias="q",
            max_length=MAX_QUERY_CHARS,
            pattern=TEXT_PATTERN,
            description="What to look for, in plain language (empty: list products by id)",
        ),
        AfterValidator(str.strip),
    ] = ""
    mode: Annotated[
        SearchMode,
        Field(
            description="hybrid: the semantic and the lexical ranking fused by weighted Reciprocal Rank Fusion, "
            "SKU and model-code matches and a short lexical list first; semantic: the vector index alone; lexical: "
            'Postgres full-text search alone (websearch syntax: "quoted phrase", -exclude, or), after SKU and '
            "model-code matches, misspellings corrected when nothing matches. Filters and paging work the same "
            "in every mode."
        ),
    ] = DEFAULT_MODE


class ServedIndex(Protocol):
    """An embedder and the vector index its vectors are searched in (an index generation's IndexTarget)."""

    @property
    def embedder(self) -> Embedder: ...

    @property
    def index(self) -> VectorIndex: ...


class ActiveIndex(Protocol):
    """Where search finds the index to read (refarch.generations.targets.GenerationTargets: the active generation)."""

    def active(self) -> ServedIndex: ...


@dataclass(frozen=True)
class FixedIndex:
    """One embedder and index, always (benchmarks over a catalog indexed outside any generation)."""

    embedder: Embedder
    index: VectorIndex

    def active(self) -> FixedIndex:
        """Itself."""
        return self


class SearchService:
    """The one search implementation (web page, JSON API, `refarch search`, benchmarks)."""

    def __init__(
        self,
        db: Database,
        targets: ActiveIndex,
        *,
        fusion: FusionSettings = FUSION,
        budget: SearchBudget = SEARCH_BUDGET,
        semantic_slots: int = SEMANTIC_SEARCH_SLOTS,
        cache_bytes: int = DEFAULT_MAX_BYTES,
        reranker: Reranker | None = None,
        rerank_candidates: int = 50,
        source: Source | None = None,
    ) -> None:
        self.db = db
        # The table searched (REFARCH_SOURCE): its rows, its keyword document, its filter columns.
        self.source = source or load_source(Settings().source)
        # Hybrid's first `rerank_candidates` reordered by a rerank model, if configured (refarch.search.rerank).
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        # How hybrid fuses its lists (the benchmark compares settings; everything else uses FUSION).
        self.fusion = fusion
        # The active index generation, looked up per request (cached briefly): a switch needs no restart.
        self.targets = targets
        # Query vectors, cached per (model id, text): a switch to another model never reuses the old model's.
        self.embeddings = QueryEmbeddings(max_bytes=cache_bytes)
        # How long one search may wait on its providers, and how many searches may wait at once.
        self.budget = budget
        self._semantic_slots = SemanticSlots(semantic_slots)
        # The active generation could not be built (ConfigurationError): until when searches skip trying
        # again, and which errors were logged already (once each per process).
        self._not_configured_until = 0.0
        self._not_configured_logged: set[str] = set()
        self._not_configured_lock = threading.Lock()

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        page: int = 1,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        mode: str | None = None,
    ) -> SearchPage:
        """Ranked products for `query` (empty query: products by id), with filters and pagination."""
        values = {"query": query, "k": k, "page": page, "category": category, "min_price": min_price}
        values |= {"max_price": max_price, "mode": mode or DEFAULT_MODE}
        return self.answer(SearchRequest.checked(values))

    def column_filters(self, args: Mapping[str, str]) -> tuple[tuple[str, Any], ...]:
        """The source's filter columns named in `args` (a query string), each value read as its column's type.

        Products' category and price range have request fields of their own (SearchRequest); any other
        filter column of the definition is an equality, e.g. `author=Ada Ortiz` or `published=true`.
        """
        found: list[tuple[str, Any]] = []
        for column in self.source.columns:
            raw = args.get(column.name)
            if not column.filter or raw is None or raw.strip() == "":
                continue
            if self.source.is_builtin_products and column.name in ("category", "price"):
                continue
            found.append((column.name, _filter_value(column.name, column.type, raw.strip())))
        return tuple(found)

    def answer(self, request: SearchRequest, *, filters: tuple[tuple[str, Any], ...] = ()) -> SearchPage:
        """The page of results a checked request asks for (`filters`: column_filters of the query string)."""
        query, k, page, requested = request.query, request.k, request.page, request.mode
        offset = (page - 1) * k
        search_filter = SearchFilter(
            category=request.category, min_price=request.min_price, max_price=request.max_price, fields=filters
        )
        if not query:
            listing = self._list(k=k, page=page, offset=offset, search_filter=search_filter)
            return replace(listing, mode=requested, requested_mode=requested)
        end = min(offset + k, MAX_DEPTH)
        if offset >= end:
            # Past the ranked depth: an empty page, like a listing past its last product.
            return SearchPage(
                query=query,
                hits=[],
                page=page,
                k=k,
                total=None,
                has_more=False,
                mode=requested,
                requested_mode=requested,
            )
        depth = end + 1
        lists: LexicalLists | None = None
        ranked: list[FusedHit] | None = None
        used: SearchMode = requested
        fallback: str | None = None
        if requested != "lexical":
            # Without a slot, waiting on a slow provider would hold this thread too: answer from Postgres now.
            with self._semantic_slots.slot() as got:
                if got:
                    lists, ranked, fallback = self._ranked_with_vectors(query, requested, search_filter, depth=depth)
                else:
                    logger.warning("every semantic search slot is taken: searching lexically")
                    fallback = BUSY_MESSAGE
            if fallback is not None:
                used = "lexical"
            elif used == "hybrid" and self.reranker is not None and offset < self.rerank_candidates:
                # Its own short timeout (REFARCH_RERANK_TIMEOUT_SECONDS); slow or failed, the fused order stays.
                assert ranked is not None
                ranked = rerank_or_keep(self.reranker, query, ranked, self._texts, candidates=self.rerank_candidates)
        if ranked is None:  # lexical asked for, or a provider is down, slow or busy
            lists = lists or self._lexical_lists(query, search_filter, depth=depth)
            ranked = self._lexical(lists, depth=depth)
        window = ranked[offset:end]
        with self.db.transaction() as conn:
            rows = records.get_many(conn, self.source, [h.id for h in window])
            statuses = products.sync_statuses(conn, list(rows))
            snippets = _snippets(conn, window)
        # A vector whose row was just deleted is skipped; its deletion is already on the way. So is a
        # row deleted between the two reads (each statement sees what was committed by then).
        hits = [
            SearchHit(rows[h.id], h.score, statuses[h.id], h.ranks, self.source, snippets.get(h.id))
            for h in window
            if h.id in statuses
        ]
        return SearchPage(
            query=query,
            hits=hits,
            page=page,
            k=k,
            total=None,
            has_more=len(ranked) > end and end < MAX_DEPTH,
            mode=used,
            requested_mode=requested,
            fallback_reason=fallback,
            did_you_mean=lists.corrected if lists else None,
        )

    def _ranked_with_vectors(
        self, query: str, mode: SearchMode, search_filter: SearchFilter, *, depth: int
    ) -> tuple[LexicalLists | None, list[FusedHit] | None, str | None]:
        """The semantic or hybrid ranking within the budget: (lexical lists, ranking, None), or
        (lexical lists if read, None, why not) when a provider failed or was too slow."""
        deadline = Deadline(self.budget)
        if time.monotonic() < self._not_configured_until:
            return None, None, NOT_CONFIGURED_MESSAGE
        try:
            # One generation per request: the query is embedded by the model whose vectors it is compared with.
            # A process's first search opens the index clients (Pinecone's check of the index can be slow too).
            target = self.targets.active()
        except ConfigurationError as err:
            return None, None, self._not_configured_fallback(err)
        except Exception as err:
            return None, None, self._vector_index_fallback(err)
        try:
            vector = self.embeddings.vector(query, target.embedder, deadline=deadline)
        except EmbeddingUnavailableError as err:
            logger.warning("embedding service unavailable or slow: searching lexically", extra={"error": str(err)})
            too_slow = EMBEDDING_SLOW_MESSAGE.format(budget=self.budget.total_seconds)
            return None, None, too_slow if err.slow else EMBEDDING_OUTAGE_MESSAGE
        lists = None if mode == "semantic" else self._lexical_lists(query, search_filter, depth=depth)
        try:
            if lists is None:
                return None, self._semantic(target.index, vector, search_filter, deadline, depth=depth), None
            return lists, self._hybrid(target.index, lists, vector, search_filter, deadline, depth=depth), None
        except Exception as err:
            return lists, None, self._vector_index_fallback(err)

    def _not_configured_fallback(self, err: ConfigurationError) -> str:
        """Why search answers lexically when this process cannot build the active generation's embedder or
        index (its provider's key not configured, say): logged once per error, tried again after a few seconds.

        Search stays up on Postgres; Emu, which must write every live generation, fails loudly instead.
        """
        message = str(err)
        with self._not_configured_lock:
            self._not_configured_until = time.monotonic() + NOT_CONFIGURED_RECHECK_SECONDS
            first = message not in self._not_configured_logged
            self._not_configured_logged.add(message)
        if first:
            logger.error(
                "the active index generation's embedder or index cannot be built with these settings: "
                "searching lexically",
                extra={
                    "error": message,
                    "advice": "moving off a provider, keep its access until gc drops its generation "
                    "(keep_openai_access, keep_bedrock_models, keep_pinecone_access: docs/deploy.md)",
                },
            )
        return NOT_CONFIGURED_MESSAGE

    def _vector_index_fallback(self, err: Exception) -> str:
        """Why search answers lexically after the vector index failed or was too slow (any other error is raised)."""
        slow = isinstance(err, BudgetSpentError) or is_vector_index_timeout(err)
        if not (slow or is_vector_index_outage(err)):
            raise err
        logger.warning("vector index unavailable or slow: searching lexically", extra={"error": str(err)})
        return (
            VECTOR_INDEX_SLOW_MESSAGE.format(budget=self.budget.total_seconds) if slow else VECTOR_INDEX_OUTAGE_MESSAGE
        )

    def _vector_query(
        self, index: VectorIndex, vector: list[float], search_filter: SearchFilter, deadline: Deadline, *, top_k: int
    ) -> list[Match]:
        """The index's top-k rows, each by its best chunk, retried within the deadline.

        The index ranks chunks: when a few long texts' chunks fill the top-k, it is asked again for more
        (4 times as many, up to MAX_CHUNK_DEPTH) until top_k rows are found or the index has no more. A
        row of one vector (every product that fits the window) never needs a second query.
        """
        asked = top_k
        while True:
            matches = deadline.call(
                functools.partial(index.query, vector, top_k=asked, filter=search_filter),
                retryable=is_vector_index_retryable,
                what="vector query",
            )
            rows = best_per_row(matches)
            if len(rows) >= top_k or len(matches) < asked or asked >= MAX_CHUNK_DEPTH:
                return rows[:top_k]
            asked = min(asked * 4, MAX_CHUNK_DEPTH)

    def _texts(self, ids: list[int]) -> dict[int, str]:
        """The embedded text of these products (what a rerank model reads), by id."""
        with self.db.transaction() as conn:
            return {pid: row.embedding_text() for pid, row in source_rows.get_many(conn, ids).items()}

    def _lexical_lists(self, query: str, search_filter: SearchFilter, *, depth: int) -> LexicalLists:
        """What Postgres ranks for `query`, each list to at least FUSION_DEPTH."""
        with self.db.transaction() as conn:
            return lexical.lists(
                conn, query, limit=max(depth, FUSION_DEPTH), search_filter=search_filter, source=self.source
            )

    def _lexical(self, lists: LexicalLists, *, depth: int) -> list[FusedHit]:
        """Code matches, then the full-text ranking, to `depth` results (fewer when fewer match)."""
        hits = [FusedHit(pid, 1.0, {"code": n}) for n, pid in enumerate(lists.codes, start=1)]
        seen = set(lists.codes)
        hits += [
            FusedHit(pid, rank, {"lexical": n})
            for n, (pid, rank) in enumerate(lists.ranked, start=1)
            if pid not in seen
        ]
        return hits[:depth]

    def _semantic(
        self, index: VectorIndex, vector: list[float], search_filter: SearchFilter, deadline: Deadline, *, depth: int
    ) -> list[FusedHit]:
        """Vector-index ranking to `depth` results."""
        matches = self._vector_query(index, vector, search_filter, deadline, top_k=depth)
        return [FusedHit(m.id, m.score, {"semantic": n}, _passage(m)) for n, m in enumerate(matches, start=1)]

    def _hybrid(
        self,
        index: VectorIndex,
        lists: LexicalLists,
        vector: list[float],
        search_filter: SearchFilter,
        deadline: Deadline,
        *,
        depth: int,
    ) -> list[FusedHit]:
        """Both rankings, each to at least FUSION_DEPTH, fused by weighted RRF; code matches and a confident
        lexical list first."""
        fused_depth = min(MAX_DEPTH + 1, max(FUSION_DEPTH, depth))
        matches = self._vector_query(index, vector, search_filter, deadline, top_k=fused_depth)
        lexical_ids = [pid for pid, _ in lists.ranked]
        fused = reciprocal_rank_fusion(
            {"semantic": [m.id for m in matches], "lexical": lexical_ids, "code": lists.codes},
            exact_sku=lists.exact_sku,
            first=[*lists.codes, *self.fusion.leading(lexical_ids)],
            settings=self.fusion,
        )
        passages = {m.id: passage for m in matches if (passage := _passage(m)) is not None}
        return [replace(hit, passage=passages.get(hit.id)) for hit in fused]

    def _list(self, *, k: int, page: int, offset: int, search_filter: SearchFilter) -> SearchPage:
        with self.db.transaction() as conn:
            rows, counted = records.list_page(
                conn, self.source, limit=k, offset=offset, search_filter=search_filter, count_limit=MAX_RESULT_WINDOW
            )
            statuses = products.sync_statuses(conn, [p.id for p in rows])
        # A row deleted between the two reads is left out (its sync state is gone with it).
        hits = [SearchHit(p, None, statuses[p.id], source=self.source) for p in rows if p.id in statuses]
        total, capped = min(counted, MAX_RESULT_WINDOW), counted > MAX_RESULT_WINDOW
        return SearchPage(
            query="", hits=hits, page=page, k=k, total=total, has_more=offset + k < counted, total_capped=capped
        )


def _passage(match: Match) -> tuple[int, int] | None:
    """Where in its row's text the matched chunk lies, for a row of several chunks (else None)."""
    meta = match.metadata
    if int(meta.get("chunks", 1)) > 1 and "chunk_start" in meta and "chunk_end" in meta:
        return int(meta["chunk_start"]), int(meta["chunk_end"])
    return None


def _snippets(conn: Connection, hits: list[FusedHit]) -> dict[int, str]:
    """The matched chunk's text of each hit that has one, cut from its row's current text."""
    spans = {hit.id: hit.passage for hit in hits if hit.passage is not None}
    if not spans:
        return {}
    texts = source_rows.get_many(conn, list(spans))
    return {
        pid: texts[pid].embedding_text()[start:end].strip()
        for pid, (start, end) in spans.items()
        if pid in texts and texts[pid].embedding_text()[start:end].strip()
    }


def _filter_value(name: str, kind: ColumnType, raw: str) -> Any:
    """A filter's value from the query string, as its column's type; SearchInputError when it is not one."""
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise SearchInputError(f"{name} must be true or false")
        return raw.lower() == "true"
    if kind in ("integer", "number"):
        try:
            return int(raw) if kind == "integer" else float(raw)
        except ValueError:
            raise SearchInputError(f"{name} must be a number") from None
    if len(raw) > 512 or not re.fullmatch(TEXT_PATTERN, raw):
        raise SearchInputError(f"{name} must be text of at most 512 characters")
    return raw
