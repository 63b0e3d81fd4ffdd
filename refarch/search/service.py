"""Search: hybrid (semantic + lexical, fused by rank), semantic only, or lexical only; rows from Postgres.

- semantic: the query's vector (cached per model, `refarch.search.query_embeddings`) against the vector index
  of the active index generation, embedded by that generation's model (`refarch.generations.targets`, re-read
  every few seconds: a `refarch reindex --switch` needs no restart).
- lexical: Postgres full-text search on the row's own text (`refarch.search.lexical`), after the products
  whose SKU or model code starts with the query read as a code; when nothing matches, the query with its
  misspelled words corrected from the closest product names (`SearchPage.did_you_mean`).
- hybrid (default): both lists, fused with weighted Reciprocal Rank Fusion (`refarch.search.fusion`); code
  matches, then a short (confident) lexical list, come first.
When the embedding service or the vector index (Pinecone) is down, a hybrid or semantic search
answers in lexical mode and says so (`SearchPage.fallback_reason`) instead of failing: the text
it ranks is in Postgres, which is still there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from refarch import products
from refarch.db import Database
from refarch.embeddings import Embedder
from refarch.index.port import SearchFilter, VectorIndex
from refarch.input_errors import TEXT_PATTERN, field_messages
from refarch.observability import logger
from refarch.search import lexical
from refarch.search.fusion import FUSION, FusedHit, FusionSettings, reciprocal_rank_fusion
from refarch.search.lexical import LexicalLists
from refarch.search.query_embeddings import EmbeddingUnavailableError, QueryEmbeddings
from refarch.search.rerank import Reranker, rerank_or_keep

MAX_QUERY_CHARS = 512
MAX_K = 100
DEFAULT_K = 20
# Searches rank to this depth: a page past it is empty (listing has no such cap).
MAX_DEPTH = 1000
# Listing has no depth cap, but its OFFSET must stay a bigint: 10 million pages of MAX_K rows is far inside.
MAX_PAGE = 10_000_000
# Hybrid fuses each list to at least this depth, so pages within the first 40 results come from one
# fused ranking and concatenate exactly; deeper pages fuse deeper lists. 40 is pgvector's default
# hnsw.ef_search: fusing asks the vector index no more than a semantic search does (a depth of 100
# made hybrid several times slower than semantic at 100,000 products: docs/benchmarks.md).
FUSION_DEPTH = 40

SearchMode = Literal["hybrid", "semantic", "lexical"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
DEFAULT_MODE: SearchMode = "hybrid"

EMBEDDING_OUTAGE_MESSAGE = (
    "the embedding service is unavailable, so these results come from keyword (lexical) search only"
)
VECTOR_INDEX_OUTAGE_MESSAGE = (
    "the vector index is unavailable, so these results come from keyword (lexical) search only"
)


def is_vector_index_outage(err: Exception) -> bool:
    """Whether `err` is the vector index service failing (Pinecone, after its SDK's retries), not our bug.

    pgvector lives in the database: when it fails, lexical search cannot answer either.
    """
    try:
        import pinecone
    except ImportError:  # without the SDK there is no Pinecone index to fail
        return False
    return isinstance(err, pinecone.PineconeError)


class SearchInputError(ValueError):
    """The request cannot be answered as asked; the message says why (an HTTP 400)."""


@dataclass(frozen=True)
class SearchHit:
    """A product with its score (None when listing), the lists it came from with its rank in each, and sync."""

    product: products.Product
    score: float | None
    sync: dict[str, Any]
    ranks: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        sync = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in self.sync.items()}
        return {**self.product.as_dict(), "score": self.score, "ranks": dict(self.ranks), "sync": sync}


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
            description=f"Page number. Searches rank to a depth of {MAX_DEPTH} results: a page past it is empty",
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
        reranker: Reranker | None = None,
        rerank_candidates: int = 50,
    ) -> None:
        self.db = db
        # Hybrid's first `rerank_candidates` reordered by a rerank model, if configured (refarch.search.rerank).
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        # How hybrid fuses its lists (the benchmark compares settings; everything else uses FUSION).
        self.fusion = fusion
        # The active index generation, looked up per request (cached briefly): a switch needs no restart.
        self.targets = targets
        # Query vectors, cached per (model id, text): a switch to another model never reuses the old model's.
        self.embeddings = QueryEmbeddings()

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

    def answer(self, request: SearchRequest) -> SearchPage:
        """The page of results a checked request asks for."""
        query, k, page, requested = request.query, request.k, request.page, request.mode
        offset = (page - 1) * k
        if not query:
            listing = self._list(
                k=k,
                page=page,
                offset=offset,
                category=request.category,
                min_price=request.min_price,
                max_price=request.max_price,
            )
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
        search_filter = SearchFilter(
            category=request.category, min_price=request.min_price, max_price=request.max_price
        )
        used: SearchMode = requested
        fallback: str | None = None
        vector: list[float] | None = None
        index: VectorIndex | None = None
        if requested != "lexical":
            # One generation per request: the query is embedded by the model whose vectors it is compared with.
            target = self.targets.active()
            index = target.index
            try:
                vector = self.embeddings.vector(query, target.embedder)
            except EmbeddingUnavailableError as err:
                logger.warning("embedding service unavailable: searching lexically", extra={"error": str(err)})
                used, fallback = "lexical", EMBEDDING_OUTAGE_MESSAGE
        depth = end + 1
        lists: LexicalLists | None = None
        ranked: list[FusedHit] | None = None
        if vector is not None and index is not None:
            try:
                if used == "semantic":
                    ranked = self._semantic(index, vector, search_filter, depth=depth)
                else:
                    lists = self._lexical_lists(query, search_filter, depth=depth)
                    ranked = self._hybrid(index, lists, vector, search_filter, depth=depth)
                    if self.reranker is not None and offset < self.rerank_candidates:  # a page past them: no call
                        ranked = rerank_or_keep(
                            self.reranker, query, ranked, self._texts, candidates=self.rerank_candidates
                        )
            except Exception as err:
                if not is_vector_index_outage(err):
                    raise
                logger.warning("vector index unavailable: searching lexically", extra={"error": str(err)})
                used, fallback = "lexical", VECTOR_INDEX_OUTAGE_MESSAGE
        if ranked is None:  # lexical asked for, or a provider is down
            lists = lists or self._lexical_lists(query, search_filter, depth=depth)
            ranked = self._lexical(lists, depth=depth)
        window = ranked[offset:end]
        with self.db.transaction() as conn:
            rows = products.get_many(conn, [h.id for h in window])
            statuses = products.sync_statuses(conn, list(rows))
        # A vector whose row was just deleted is skipped; its deletion is already on the way. So is a
        # row deleted between the two reads (each statement sees what was committed by then).
        hits = [SearchHit(rows[h.id], h.score, statuses[h.id], h.ranks) for h in window if h.id in statuses]
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

    def _texts(self, ids: list[int]) -> dict[int, str]:
        """The embedded text of these products (what a rerank model reads), by id."""
        with self.db.transaction() as conn:
            return {pid: row.embedding_text() for pid, row in products.get_many(conn, ids).items()}

    def _lexical_lists(self, query: str, search_filter: SearchFilter, *, depth: int) -> LexicalLists:
        """What Postgres ranks for `query`, each list to at least FUSION_DEPTH."""
        with self.db.transaction() as conn:
            return lexical.lists(conn, query, limit=max(depth, FUSION_DEPTH), search_filter=search_filter)

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
        self, index: VectorIndex, vector: list[float], search_filter: SearchFilter, *, depth: int
    ) -> list[FusedHit]:
        """Vector-index ranking to `depth` results."""
        matches = index.query(vector, top_k=depth, filter=search_filter)
        return [FusedHit(m.id, m.score, {"semantic": n}) for n, m in enumerate(matches, start=1)]

    def _hybrid(
        self, index: VectorIndex, lists: LexicalLists, vector: list[float], search_filter: SearchFilter, *, depth: int
    ) -> list[FusedHit]:
        """Both rankings, each to at least FUSION_DEPTH, fused by weighted RRF; code matches and a confident
        lexical list first."""
        fused_depth = min(MAX_DEPTH + 1, max(FUSION_DEPTH, depth))
        matches = index.query(vector, top_k=fused_depth, filter=search_filter)
        lexical_ids = [pid for pid, _ in lists.ranked]
        return reciprocal_rank_fusion(
            {"semantic": [m.id for m in matches], "lexical": lexical_ids, "code": lists.codes},
            exact_sku=lists.exact_sku,
            first=[*lists.codes, *self.fusion.leading(lexical_ids)],
            settings=self.fusion,
        )

    def _list(
        self, *, k: int, page: int, offset: int, category: str | None, min_price: float | None, max_price: float | None
    ) -> SearchPage:
        with self.db.transaction() as conn:
            rows, total = products.list_page(
                conn,
                limit=k,
                offset=offset,
                category=category or None,
                min_price=Decimal(str(min_price)) if min_price is not None else None,
                max_price=Decimal(str(max_price)) if max_price is not None else None,
            )
            statuses = products.sync_statuses(conn, [p.id for p in rows])
        # A row deleted between the two reads is left out (its sync state is gone with it).
        hits = [SearchHit(p, None, statuses[p.id]) for p in rows if p.id in statuses]
        return SearchPage(query="", hits=hits, page=page, k=k, total=total, has_more=offset + k < total)
