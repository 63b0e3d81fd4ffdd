"""The page people see: a server-rendered product table (search, filters, pages) that app.js makes editable."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, render_template, request, url_for
from markupsafe import Markup, escape

from refarch import products
from refarch.products import MAX_ID, ProductNotFoundError
from refarch.search.service import DEFAULT_K, DEFAULT_MODE, SearchInputError, SearchPage, SearchRequest
from web.api import sync_summary
from web.contract import present
from web.db import get_db, get_runtime
from web.errors import SEARCH_PROVIDER_ERRORS, search_provider_message

bp = Blueprint("views", __name__)

# A query word highlighted in a snippet: letters and digits, at least this many of them.
_HIGHLIGHTED_WORD_CHARS = 3


@bp.app_template_filter("highlight")
def highlight(text: str | None, query: str | None) -> Markup:
    """The text, escaped, with every word starting like a word of the query marked (<mark>): a long text's
    snippet shows where the query's words are in the chunk that matched."""
    words = {w.lower() for w in re.findall(r"\w+", query or "") if len(w) >= _HIGHLIGHTED_WORD_CHARS}
    if not text or not words:
        return escape(text or "")
    pattern = re.compile(
        r"\b(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\w*", re.I
    )
    parts: list[str] = []
    last = 0
    for found in pattern.finditer(text):
        parts += [str(escape(text[last : found.start()])), f"<mark>{escape(found.group())}</mark>"]
        last = found.end()
    parts.append(str(escape(text[last:])))
    return Markup("".join(parts))


PAGE_SIZES = (10, 20, 50, 100)
SEARCH_MODE_LABELS = (("hybrid", "Hybrid (meaning + words)"), ("semantic", "Meaning only"), ("lexical", "Words only"))
# How the result summary says the results are ordered, per mode used.
MODE_ORDERS = {
    "hybrid": "best matches by meaning and words first",
    "semantic": "most similar in meaning first",
    "lexical": "best keyword matches first",
}


@bp.get("/")
def index() -> tuple[str, int]:
    """Search results (or all products by id) with filters, pagination, sync badges and the status header."""
    error: str | None = None
    error_status = 200
    result: SearchPage | None = None
    try:
        service = get_runtime().search
        result = service.answer(
            SearchRequest.checked(present(request.args)), filters=service.column_filters(request.args)
        )
    except SearchInputError as err:
        error, error_status = str(err), 400
    except SEARCH_PROVIDER_ERRORS as err:
        # The rest of the page (filters, totals) still works: show the outage as its message.
        error, error_status = search_provider_message(err), 503
    summary = sync_summary()
    source = get_runtime().search.source
    if not source.is_builtin_products:
        # Another source: its columns, filters and edit form from the definition (rows.html).
        page = render_template(
            "rows.html",
            source=source,
            result=result,
            error=error,
            summary=summary,
            form=request.args,
            search_modes=SEARCH_MODE_LABELS,
            default_mode=DEFAULT_MODE,
            page_url=_page_url,
        )
        return page, error_status
    with get_db() as conn:
        categories = products.categories(conn)
    html = render_template(
        "index.html",
        result=result,
        error=error,
        categories=categories,
        summary=summary,
        form=request.args,
        page_sizes=PAGE_SIZES,
        default_k=DEFAULT_K,
        search_modes=SEARCH_MODE_LABELS,
        default_mode=DEFAULT_MODE,
        mode_orders=MODE_ORDERS,
        page_url=_page_url,
    )
    return html, error_status


@bp.get("/products/<int:product_id>/row")
def product_row(product_id: int) -> str:
    """One product's table rows (display + editor), for the page to insert after adding it."""
    with get_db() as conn:
        product = products.get(conn, product_id) if product_id <= MAX_ID else None
        if product is None:
            raise ProductNotFoundError(product_id)
        sync = products.sync_statuses(conn, [product_id]).get(product_id, {})
    return render_template(
        "product_row.html", product=product, sync=sync, score=None, show_score=request.args.get("score_column") == "1"
    )


def _page_url(page: int) -> str:
    """This page's URL with another page number (filters kept)."""
    # Names starting with "_" are url_for's own options (_method, _external, ...), never filters.
    args: dict[str, Any] = {
        key: value for key, value in request.args.items() if key != "page" and value and not key.startswith("_")
    }
    return url_for("views.index", **args, page=page)
