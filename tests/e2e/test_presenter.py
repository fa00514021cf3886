"""The compare page's presenter view on a projector, in a real browser: driven by keys only, every column's
meters and answer on screen without scrolling at 720p, 1080p and 4K, readable type, blind columns identical
in structure, the answers shown from their first word once done. Screenshots go to artifacts/."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DashboardServer, screenshot, wait_for_app
from tests.e2e.test_compare import column, setup_four
from tests.standin import StandinServer

pytestmark = pytest.mark.e2e
WORDS = 250  # the "answers up to about 250 words"

# Everything a person sees of the presenter view, measured: scrolling, the smallest visible text, where each
# column's meters and answer box end, the answer boxes' font size and scroll position, and each column's
# structure (test ids in order, not descending into the model's own Markdown).
MEASURE = """
() => {
  const scrollers = [document.scrollingElement, document.querySelector('[data-testid="stMain"]'),
                     document.querySelector('[data-testid="stAppViewContainer"]')].filter(Boolean);
  const scrolls = scrollers.some((el) => el.scrollHeight > el.clientHeight + 1);
  let minFont = 1e9, smallest = '';
  const walker = document.createTreeWalker(document.querySelector('[data-testid="stMain"]'), NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || !el.getClientRects().length) continue;
    if (el.closest('[data-testid="stIconMaterial"]')) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < minFont) { minFont = size; smallest = walker.currentNode.textContent.trim().slice(0, 40); }
  }
  const columns = {};
  for (const col of document.querySelectorAll('[class*="st-key-compare-col-"]')) {
    const letter = [...col.classList].find((c) => c.startsWith('st-key-compare-col-')).slice(-1);
    const skeleton = [];
    const walk = (el) => { for (const child of el.children) {
      const id = child.getAttribute('data-testid');
      if (id) skeleton.push(id);
      if (id !== 'stMarkdownContainer') walk(child);
    } };
    walk(col);
    const mark = col.querySelector('.answer-mark');
    const box = mark && mark.closest('[data-testid="stVerticalBlock"]');
    const metrics = [...col.querySelectorAll('[data-testid="stMetric"]')];
    const text = box ? box.querySelector('[data-testid="stMarkdownContainer"] p') : null;
    columns[letter] = {skeleton, state: mark && mark.dataset.state,
                       boxBottom: box ? box.getBoundingClientRect().bottom : 1e9,
                       boxTop: box ? box.getBoundingClientRect().top : 0,
                       metricsBottom: Math.max(...metrics.map((m) => m.getBoundingClientRect().bottom)),
                       scrollTop: box ? box.scrollTop : -1,
                       overflows: box ? box.scrollHeight > box.clientHeight + 1 : null,
                       answerFont: text ? parseFloat(getComputedStyle(text).fontSize) : 0,
                       firstWordTop: text ? text.getBoundingClientRect().top : 1e9};
  }
  return {scrolls, minFont, smallest, columns, innerHeight: window.innerHeight, innerWidth: window.innerWidth};
}
"""


def measure(page: Page) -> dict:
    return page.evaluate(MEASURE)


def wait_all_done(page: Page, slots: str = "ABCD", timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        "(slots) => slots.split('').every((s) => { const c = document.querySelector('.st-key-compare-col-' + s);"
        " return c && c.innerText.includes('END.') && c.querySelector('.answer-mark[data-state=done]'); })",
        arg=slots, timeout=timeout_ms)
    wait_for_app(page, timeout_ms)


def assert_presentable(page: Page, floor_px: float, *, blind: bool = True) -> dict:
    """No scroll; every column's meters and answer box on screen; text at or above the floor; blind columns
    identical in structure; finished answers shown from their first word."""
    time.sleep(0.6)  # the fitting script works on the next animation frame after a resize
    m = measure(page)
    assert not m["scrolls"], m
    assert m["minFont"] >= floor_px, m
    skeletons = {letter: tuple(c["skeleton"]) for letter, c in m["columns"].items()}
    if blind:  # after the reveal a thinking model may show its "Thinking" box: names are known by then
        assert len(set(skeletons.values())) == 1, skeletons
    for letter, c in m["columns"].items():
        assert c["metricsBottom"] <= m["innerHeight"] and c["boxBottom"] <= m["innerHeight"] + 1, (letter, c)
        assert c["answerFont"] >= floor_px, (letter, c)
        if c["state"] == "done":
            assert c["scrollTop"] == 0 and c["firstWordTop"] >= c["boxTop"] - 1, (letter, c)
    return m


def test_presenter_view_by_keys_fits_720p_1080p_and_4k(page: Page, dashboard: DashboardServer,
                                                       fresh_standin: StandinServer) -> None:
    fresh_standin.state.configure(tokens_per_second=25, reply_tokens=WORDS)  # 10 s: still streaming when measured
    page.set_viewport_size({"width": 1920, "height": 1080})
    setup_four(page, dashboard, fresh_standin, blind=True)
    page.locator(".st-key-compare-present_toggle").get_by_text("Present").click()
    wait_for_app(page)
    expect(page.locator(".st-key-present-bar")).to_be_visible()
    assert "present=1" in page.url
    expect(page.get_by_test_id("stSidebar")).to_be_hidden()
    expect(page.get_by_text("Setup: models, fairness, parameters")).to_be_hidden()

    page.keyboard.press("ArrowRight")  # prompt 1
    for slot in "ABCD":
        expect(column(page, slot)).to_contain_text("t0040", timeout=20_000)
    live = measure(page)
    assert not live["scrolls"] and any(c["state"] == "live" for c in live["columns"].values()), live
    screenshot(page, "presenter-1920x1080-streaming")
    wait_all_done(page)
    headers = [column(page, slot).locator("h3").inner_text() for slot in "ABCD"]
    assert headers == ["Model A", "Model B", "Model C", "Model D"]
    assert_presentable(page, floor_px=16)
    screenshot(page, "presenter-1920x1080")

    page.set_viewport_size({"width": 1280, "height": 720})
    small = assert_presentable(page, floor_px=16)
    assert all(c["answerFont"] == 16 and c["overflows"] for c in small["columns"].values())  # floor, then scroll
    screenshot(page, "presenter-1280x720")

    page.set_viewport_size({"width": 3840, "height": 2160})
    big = assert_presentable(page, floor_px=28)
    assert min(c["answerFont"] for c in big["columns"].values()) >= 34  # the ladder scales with the screen
    screenshot(page, "presenter-3840x2160")

    page.set_viewport_size({"width": 1920, "height": 1080})
    page.keyboard.press("2")  # vote for column B
    wait_for_app(page)
    expect(page.get_by_role("button", name="B ✓")).to_be_visible()
    page.keyboard.press("r")  # reveal
    wait_for_app(page)
    expect(page.locator(".st-key-present-reveal")).to_have_count(0)
    expect(page.locator(".st-key-present-bar")).to_contain_text("★")
    assert_presentable(page, floor_px=16, blind=False)
    screenshot(page, "presenter-revealed")


def test_presenter_keys_stop_a_round_and_step_back(page: Page, dashboard: DashboardServer,
                                                  fresh_standin: StandinServer) -> None:
    fresh_standin.state.configure(tokens_per_second=2000, reply_tokens=20)
    page.set_viewport_size({"width": 1280, "height": 720})
    setup_four(page, dashboard, fresh_standin, blind=False)
    page.locator(".st-key-compare-present_toggle").get_by_text("Present").click()
    wait_for_app(page)
    expect(page.locator(".st-key-present-bar")).to_be_visible()
    page.keyboard.press("ArrowRight")
    wait_all_done(page)
    fresh_standin.state.configure(tokens_per_second=15, reply_tokens=2000)
    page.keyboard.press("ArrowRight")  # prompt 2, slow
    for slot in "ABCD":
        expect(column(page, slot)).to_contain_text("t0005", timeout=20_000)
    page.keyboard.press("Escape")  # 2000 tokens at 15/s would take two minutes: "Stopped" can only come from Esc
    for slot in "ABCD":
        expect(column(page, slot)).to_contain_text("Stopped", timeout=45_000)
    wait_for_app(page, 45_000)
    for slot in "ABCD":
        assert "END." not in column(page, slot).inner_text()
    assert_presentable(page, floor_px=16, blind=False)
    screenshot(page, "presenter-1280x720-stopped")
    page.keyboard.press("ArrowLeft")  # back to round 1: shown again, not re-run
    wait_for_app(page)
    expect(page.locator(".st-key-compare-prompt")).to_contain_text("Round 1")
    assert len(fresh_standin.state.requests_to("/api/chat")) == 8
    page.get_by_role("button", name="Exit").click()
    expect(page.get_by_text("Setup: models, fairness, parameters")).to_be_visible(timeout=30_000)
    expect(page).not_to_have_url(re.compile(r"present=1"), timeout=30_000)
