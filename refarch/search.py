"""Semantic search: embed the query, ask the vector index, return rows from Postgres in score order."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from refarch import products
from refarch.db import Database
from refarch.index_targets import GenerationTargets
from refarch.vector_index import SearchFilter

MAX_QUERY_CHARS = 512
MAX_K = 100
MAX_DEPTH = 1000
# Listing has no depth cap, but its OFFSET must stay a bigint: 10 million pages of MAX_K rows is far inside.
MAX_PAGE = 10_000_000


class SearchInputError(ValueError):
    """The request cannot be answered as asked; the message says why (an HTTP 400)."""


@dataclass(frozen=True)
class SearchHit:
    """A product with its similarity score (None when listing without a query) and sync status."""

    product: products.Product
    score: float | None
    sync: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        sync = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in self.sync.items()}
        return {**self.product.as_dict(), "score": self.score, "sync": sync}


@dataclass(frozen=True)
class SearchPage:
    """One page of results."""

    query: str
    hits: list[SearchHit]
    page: int
    k: int
    total: int | None
    has_more: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "query": self.query,
            "page": self.page,
            "k": self.k,
            "total": self.total,
            "has_more": self.has_more,
            "results": [h.as_dict() for h in self.hits],
        }


class SearchService:
    """The one search implementation (web page, JSON API, `refarch search`, benchmarks)."""

    def __init__(self, db: Database, targets: GenerationTargets) -> None:
        self.db = db
        # The active index generation, looked up per request (cached briefly): a switch needs no restart.
        self.targets = targets

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        page: int = 1,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
    ) -> SearchPage:
        """Ranked products for `query` (empty query: products by id), with filters and pagination."""
        query = (query or "").strip()
        for name, text in (("query", query), ("category", category or "")):
            problem = products.unstorable_text(text)
            if problem:
                raise SearchInputError(f"{name} {problem}")
        if len(query) > MAX_QUERY_CHARS:
            raise SearchInputError(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        if not 1 <= k <= MAX_K:
            raise SearchInputError(f"k must be between 1 and {MAX_K}")
        if page < 1:
            raise SearchInputError("page must be 1 or more")
        if page > MAX_PAGE:
            raise SearchInputError(f"page must be {MAX_PAGE:,} or less")
        if min_price is not None and max_price is not None and min_price > max_price:
            raise SearchInputError("min_price is greater than max_price")
        if (min_price is not None and min_price < 0) or (max_price is not None and max_price < 0):
            raise SearchInputError("prices cannot be negative")
        offset = (page - 1) * k
        if not query:
            return self._list(
                k=k, page=page, offset=offset, category=category, min_price=min_price, max_price=max_price
            )
        if offset + k > MAX_DEPTH:
            raise SearchInputError(f"results are ranked to a depth of {MAX_DEPTH}; narrow the query instead")
        target = self.targets.active()
        vector = target.embedder.embed([query])[0]
        matches = target.index.query(
            vector,
            top_k=offset + k + 1,
            filter=SearchFilter(category=category or None, min_price=min_price, max_price=max_price),
        )
        window = matches[offset : offset + k]
        with self.db.transaction() as conn:
            rows = products.get_many(conn, [m.id for m in window])
            statuses = products.sync_statuses(conn, list(rows))
        # A vector whose row was just deleted is skipped; its deletion is already on the way.
        hits = [SearchHit(rows[m.id], m.score, statuses.get(m.id, {})) for m in window if m.id in rows]
        return SearchPage(
            query=query,
            hits=hits,
            page=page,
            k=k,
            total=None,
            has_more=len(matches) > offset + k and offset + k < MAX_DEPTH,
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
        hits = [SearchHit(p, None, statuses.get(p.id, {})) for p in rows]
        return SearchPage(query="", hits=hits, page=page, k=k, total=total, has_more=offset + k < total)
