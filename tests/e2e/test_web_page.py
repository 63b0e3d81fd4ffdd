"""A person uses the page in real headless Chromium while the real pipeline keeps the index in sync."""

from __future__ import annotations

import re

import psycopg2
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ARTIFACTS

# How the catalog describes AI software without saying "AI".
ML_TERMS = (
    "machine learning",
    "neural network",
    "predictive",
    "deep learning",
    "natural language processing",
    "large language model",
)
# A rewritten description (a sentence appended to a long one barely moves a MiniLM embedding).
NEW_DESCRIPTION = "Logs glacier meltwater and snowpack readings for alpine hydrologists."
SYNC_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.slow


def search(page: Page, query: str) -> None:
    """Type a query into the search box and submit it, as a person would."""
    page.get_by_label("Search products").fill(query)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_label("Search products")).to_have_value(query)


def sign_in(page: Page, password: str) -> None:
    """Sign in through the page's form."""
    page.get_by_role("link", name="Sign in to edit").click()
    page.get_by_label("Edit password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_search_edit_and_delete_in_a_real_browser(stack, page: Page):
    ARTIFACTS.mkdir(exist_ok=True)
    rows = page.locator("tbody.product")

    # Given the seeded catalog is indexed, the header says so
    page.goto(stack.url)
    expect(page.locator('#sync-summary [data-key="products"]')).to_have_text("300")
    expect(page.locator('#sync-summary [data-key="indexed"]')).to_have_text("300")
    for lane in ("live", "bulk"):
        # each lane's depth, and the age of its oldest message once known ("0 · 0 s")
        cell = page.locator(f'#sync-summary [data-key="{lane}_queue_depth"]')
        expect(cell).to_have_text(re.compile(r"^\d+( · \d+ s)?$"))
    # and a visitor sees no edit controls until signed in (the Secure session cookie works on 127.0.0.1)
    expect(page.get_by_role("button", name=re.compile("^Edit"))).to_have_count(0)
    sign_in(page, stack.edit_password)

    # When searching "AI", Then machine-learning products come first, with scores
    search(page, "AI")
    expect(rows).to_have_count(20)
    top = [rows.nth(i).locator(".description").inner_text().lower() for i in range(3)]
    assert all(any(term in text for term in ML_TERMS) for text in top), top
    expect(rows.first.locator(".score")).to_have_text(re.compile(r"^\d\.\d{4}$"))
    expect(rows.first.locator(".badge")).to_have_text("indexed")
    page.screenshot(path=str(ARTIFACTS / "web-search.png"))

    # When an invalid price is saved, Then the message appears next to the field and nothing is saved
    first = rows.first
    product_id = first.get_attribute("data-id")
    editor = page.locator(f"#editor-{product_id}")
    first.get_by_role("button", name=re.compile("^Edit")).click()
    editor.get_by_label("Price").fill("twelve")
    editor.get_by_role("button", name="Save").click()
    expect(editor.locator('[data-error-for="price"]')).to_have_text("Price must be a number such as 19.99")
    expect(editor.get_by_label("Price")).to_have_attribute("aria-invalid", "true")
    editor.get_by_role("button", name="Cancel").click()
    expect(editor).to_be_hidden()

    # When its description is edited, Then its badge goes pending, then indexed by itself
    first.get_by_role("button", name=re.compile("^Edit")).click()
    editor.get_by_label("Description").fill(NEW_DESCRIPTION)
    badge = page.locator(f"#product-{product_id} .badge")
    with stack.sync_paused():
        editor.get_by_role("button", name="Save").click()
        expect(badge).to_have_text("pending")
        expect(page.locator(f"#product-{product_id} .description")).to_contain_text("glacier meltwater")
    expect(badge).to_have_text("indexed", timeout=SYNC_TIMEOUT_MS)

    # and the new words are findable
    search(page, "glacier meltwater and snowpack measurements")
    expect(rows.first).to_have_attribute("data-id", product_id)

    # When someone else changes a product's description while this person edits only its price,
    # Then the save is refused (409) with their version shown, and saving again keeps their description
    other = rows.nth(1)
    other_id = other.get_attribute("data-id")
    other_editor = page.locator(f"#editor-{other_id}")
    other.get_by_role("button", name=re.compile("^Edit")).click()
    other_editor.get_by_label("Price").fill("12.34")
    theirs = "Rewritten by another editor a moment ago."
    conn = psycopg2.connect(stack.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE products SET description = %s WHERE id = %s", (theirs, other_id))
    other_editor.get_by_role("button", name="Save").click()
    expect(other_editor.locator(".form-message")).to_contain_text(re.compile("changed", re.IGNORECASE))
    expect(other_editor.get_by_label("Description")).to_have_value(theirs)
    expect(other_editor.get_by_label("Price")).to_have_value("12.34")
    other_editor.get_by_role("button", name="Save").click()
    expect(other_editor).to_be_hidden()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT description, price::text FROM products WHERE id = %s", (other_id,))
        assert cur.fetchone() == (theirs, "12.34")
    conn.close()

    # When a product is added, Then it appears pending and becomes indexed
    page.get_by_text("Add a product").click()
    add = page.locator("#add-product")
    add.get_by_label("SKU").fill("E2E-1")
    add.get_by_label("Name").fill("Orbit Tide Predictor")
    add.get_by_label("Category").fill("software")
    add.get_by_label("Price").fill("49.00")
    add.get_by_label("Description").fill("Forecasts tides for harbour pilots with a neural network.")
    added = page.locator("tbody.product", has_text="Orbit Tide Predictor")
    with stack.sync_paused():
        add.get_by_role("button", name="Add product").click()
        expect(added.locator(".badge")).to_have_text("pending")
    expect(added.locator(".badge")).to_have_text("indexed", timeout=SYNC_TIMEOUT_MS)

    # When the edited product is deleted (after confirming), Then it leaves the table and the results
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#product-{product_id}").get_by_role("button", name=re.compile("^Delete")).click()
    expect(page.locator(f"#product-{product_id}")).to_have_count(0)
    search(page, "glacier meltwater and snowpack measurements")
    expect(rows.first).to_be_visible()
    expect(page.locator(f"#product-{product_id}")).to_have_count(0)
    # (the header refreshes every 5 s, from a status at most 2 s old: web/api.py SYNC_STATUS_CACHE_SECONDS)
    expect(page.locator('#sync-summary [data-key="products"]')).to_have_text("300", timeout=15_000)

    # When searching a kitchen product's SKU in the default hybrid ranking, Then that product comes first,
    # and hovering its score shows it was the exact SKU match and where the other lists ranked it
    search(page, "KI-0000252")
    expect(rows.first.locator(".sku")).to_have_text("KI-0000252")
    score = rows.first.locator("td.score")
    score.hover()
    expect(score).to_have_attribute("title", re.compile(r"sku #1"))
    # When the ranking is switched to words only, Then the choice sticks and the summary says how results are ordered
    page.get_by_label("Ranking").select_option("lexical")
    search(page, "sleeping bag")
    expect(page.get_by_label("Ranking")).to_have_value("lexical")
    expect(page.locator("#result-summary")).to_contain_text("best keyword matches first")
    expect(rows.first.locator(".name")).to_contain_text("Sleeping Bag")
    expect(rows.first.locator("td.score")).to_have_attribute("title", "lexical #1")
    page.get_by_label("Ranking").select_option("hybrid")

    # The same page on a phone: a screenshot for the record
    page.set_viewport_size({"width": 390, "height": 844})
    search(page, "AI")
    page.screenshot(path=str(ARTIFACTS / "web-search-phone.png"))
