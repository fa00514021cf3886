"""What both image tests do in Chromium, wherever the dashboard runs (a folder assembled like the image, or
the image itself): open every page with a token by link, run a product description, run a compare round."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from services.access.pages import PAGES
from tests.e2e.conftest import screenshot, wait_for_app

DESK = {"width": 1440, "height": 900}
REPLY = "Une robe fluide en soie rouge, élégante du cocktail au dîner."
COMPARE_MODELS = ("llama3.2:1b", "qwen3:0.6b")
# What each page shows first when it opened (the chat page's title is longer than its navigation label).
HEADINGS = {spec.url_path: spec.title for spec in PAGES} | {"chat": "Chat playground"}
# Deadlines, not timings: generous because the machine may be loaded (a whole-suite run beside other work).
PATIENCE_MS = 60_000
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)


def open_as(page: Page, base_url: str, path: str, token: str) -> None:
    separator = "&" if "?" in path else "?"
    page.set_default_timeout(PATIENCE_MS)
    page.goto(f"{base_url}{path}{separator}token={quote(token)}")
    wait_for_app(page, timeout_ms=PATIENCE_MS)
    page.wait_for_function("() => !window.location.search.includes('token=')", timeout=PATIENCE_MS)
    wait_for_app(page, timeout_ms=PATIENCE_MS)


def assert_no_error_shown(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text("This app has encountered an error")).to_have_count(0)
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)


def open_every_page(page: Page, base_url: str, admin_token: str, prefix: str) -> list[str]:
    """Each page of the registry, as an admin, by its own address: it opens, titled, without an error."""
    page.set_viewport_size(DESK)
    opened = []
    for spec in PAGES:
        open_as(page, base_url, f"/{spec.url_path}", admin_token)
        expect(page.get_by_role("heading", name=HEADINGS[spec.url_path]).first).to_be_visible(timeout=PATIENCE_MS)
        assert_no_error_shown(page)
        nav = page.locator("[data-testid='stSidebarNav'] a").all_inner_texts()
        assert all(any(other.title in link for link in nav) for other in PAGES), nav  # an admin sees every page
        screenshot(page, f"{prefix}-{spec.url_path}")
        opened.append(spec.url_path)
    return opened


def describe_a_product(page: Page, base_url: str, token: str, prefix: str) -> None:
    """The product studio's single mode: the shipped description template, answered by the stand-in."""
    page.set_viewport_size(DESK)
    open_as(page, base_url, "/descriptions", token)
    page.get_by_role("textbox", name="Product type").fill("robe de cocktail")
    page.get_by_role("textbox", name="Colour").fill("rouge")
    page.get_by_role("textbox", name="Material").fill("soie")
    wait_for_app(page, timeout_ms=PATIENCE_MS)
    page.locator(".st-key-studio-single-go button").click()
    expect(page.get_by_text(REPLY).first).to_be_visible(timeout=PATIENCE_MS)
    expect(page.get_by_text(re.compile(r"template description@v\d+")).first).to_be_visible(timeout=PATIENCE_MS)
    assert_no_error_shown(page)
    screenshot(page, f"{prefix}-description")


def _choose(page: Page, name: str) -> None:
    option = page.get_by_role("option", name=name)
    for _ in range(3):  # the dropdown may close while a rerun redraws the page; open it again
        if option.is_visible():
            break
        page.locator(".st-key-compare-models [role='combobox']").first.click()
        try:
            option.wait_for(timeout=10_000)
        except PlaywrightTimeout:
            continue
    option.click()


def compare_round(page: Page, base_url: str, token: str, prefix: str) -> None:
    """A round of the shipped deck (decks/product-tasks.json) on two models, streamed to the end."""
    page.set_viewport_size({"width": 1280, "height": 720})  # the projector
    open_as(page, base_url, "/compare", token)
    for name in COMPARE_MODELS:
        _choose(page, name)
    page.keyboard.press("Escape")
    wait_for_app(page, timeout_ms=PATIENCE_MS)
    expect(page.get_by_text("Next: 1/", exact=False)).to_be_visible(timeout=PATIENCE_MS)  # the shipped deck
    page.locator(".st-key-compare-run_deck button").click()
    # What the audience sees: a column Streamlit keeps hidden in the page while it redraws is not a column.
    columns = page.locator("[class*='st-key-compare-col-']:visible")
    deadline = time.monotonic() + PATIENCE_MS / 1000
    while time.monotonic() < deadline:
        texts = columns.all_inner_texts()
        if len(texts) == len(COMPARE_MODELS) and all("END." in text for text in texts):
            break
        time.sleep(0.2)
    texts = columns.all_inner_texts()
    assert len(texts) == len(COMPARE_MODELS) and all("END." in text for text in texts), texts
    wait_for_app(page, timeout_ms=PATIENCE_MS)
    assert_no_error_shown(page)
    screenshot(page, f"{prefix}-compare-round")


def tracebacks(log: str) -> list[str]:
    """Tracebacks through the project's code in a server log (Streamlit's own disconnect race excluded)."""
    from tests.e2e.conftest import OUR_CODE, STREAMLIT_WEBSOCKET_RACE

    blocks = re.split(r"(?=^Traceback \(most recent call last\):)", log, flags=re.MULTILINE)
    found = [b for b in blocks if TRACEBACK.match(b)]
    return [b for b in found if not (STREAMLIT_WEBSOCKET_RACE in b and not OUR_CODE.search(b))]
