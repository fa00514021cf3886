"""Demo mode in a real headless Chromium: a four-way blind comparison, votes, reveal, Stop, and the exports."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import ARTIFACTS, DashboardServer, goto, screenshot, wait_for_app
from tests.standin import StandinServer, _model_record

pytestmark = pytest.mark.e2e

MODELS = ["llama3.2:1b", "qwen3:0.6b", "phi3:mini", "gemma2:2b"]


def column(page: Page, slot: str):
    return page.locator(f".st-key-compare-col-{slot}")


def setup_four(page: Page, dashboard: DashboardServer, standin: StandinServer, *, blind: bool) -> None:
    standin.state.models["gemma2:2b"] = _model_record("gemma2:2b", 1_629_518_495, "gemma2", "2.6B", "Q4_0",
                                                      ["completion"], 8192)
    goto(page, dashboard, "/compare")
    for name in MODELS:
        option = page.get_by_role("option", name=name)
        for _ in range(3):  # the dropdown may close while a rerun redraws the page; open it again
            if option.is_visible():
                break
            page.locator(".st-key-compare-models [role='combobox']").first.click()
            try:
                option.wait_for(timeout=5_000)
            except PlaywrightTimeout:
                continue
        option.click()
    page.keyboard.press("Escape")
    wait_for_app(page)
    if blind:
        page.locator(".st-key-compare-blind").get_by_text("Blind mode").click()
        wait_for_app(page)


def test_a_four_way_blind_comparison_with_votes_reveal_and_export(
    page: Page, dashboard: DashboardServer, fresh_standin: StandinServer
) -> None:
    page.set_viewport_size({"width": 1600, "height": 1400})
    fresh_standin.state.configure(tokens_per_second=40, reply_tokens=160,
                                  model_tokens_per_second={"phi3:mini": 20})
    setup_four(page, dashboard, fresh_standin, blind=True)
    page.locator(".st-key-compare-run_deck button").click()
    for slot in "ABCD":
        expect(column(page, slot)).to_contain_text("t0020", timeout=15_000)
    screenshot(page, "compare-four-columns-mid-stream")
    headers = [column(page, slot).locator("h3").inner_text() for slot in "ABCD"]
    assert headers == ["Model A", "Model B", "Model C", "Model D"]
    stage = page.locator("[class*='st-key-compare-col-']").all_inner_texts()
    assert not any(name in text for name in MODELS for text in stage)  # blind: no names, no digests
    # The slow column (half speed) is still streaming while the others have finished.
    finished: list[str] = []
    deadline = time.monotonic() + 15
    while len(finished) < 3 and time.monotonic() < deadline:
        finished = [s for s in "ABCD" if "END." in column(page, s).inner_text()]
        time.sleep(0.1)
    slow = next(s for s in "ABCD" if s not in finished)
    assert len(finished) == 3 and "Streaming" in column(page, slow).inner_text()
    wait_for_app(page, timeout_ms=30_000)
    for slot in "ABCD":
        expect(column(page, slot)).to_contain_text("END.")
        value = column(page, slot).get_by_test_id("stMetricValue").nth(1).inner_text()
        assert 15 <= float(value) <= 45, value

    page.locator("[class*='st-key-compare-vote']").get_by_role("radio", name="Model B").click()
    wait_for_app(page)
    expect(page.get_by_text("1 of 1 rounds voted")).to_be_visible()  # blind: no tally by letter
    page.get_by_role("button", name="Reveal the models").click()
    expect(page.get_by_role("button", name="Reveal the models")).to_have_count(0)
    wait_for_app(page)
    revealed = [column(page, slot).locator("h3").inner_text() for slot in "ABCD"]
    assert sorted(revealed) == sorted(MODELS)
    leader = page.locator("[class*='st-key-compare-tally-'][class*='-leader']")
    expect(leader).to_have_count(1)
    expect(leader).to_contain_text(revealed[1])  # column B's model won the vote
    expect(leader).to_contain_text("★ Leading")
    expect(leader).to_contain_text("1 win of 1 voted")
    screenshot(page, "compare-revealed-with-tally")

    page.get_by_role("button", name="Decks, exports and re-runs").click()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export HTML report").click()
    report = ARTIFACTS / "compare-report.html"
    download_info.value.save_as(report)
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export JSON (re-runnable)").click()
    document = json.loads(download_info.value.path().read_text())
    assert document["format"] == "ollama-dashboard-comparison/1" and document["blind"] and document["revealed"]
    voted_slot = document["rounds"][0]["order"][1]  # column B of that round: the audience's letter
    winner = next(e["model"] for e in document["lineup"] if e["slot"] == voted_slot)
    assert document["tally"][winner] == 1 and document["rounds"][0]["vote"] == voted_slot

    # The exported report opens offline in the browser, with nothing blocked or fetched.
    viewer = page.context.new_page()
    problems: list[str] = []
    viewer.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    viewer.on("request", lambda req: problems.append(req.url) if not req.url.startswith("file:") else None)
    viewer.set_viewport_size({"width": 1400, "height": 1000})
    viewer.goto(report.as_uri())
    expect(viewer.get_by_role("heading", name="Model comparison")).to_be_visible()
    expect(viewer.locator("h2").first).to_contain_text("Lineup")
    body = viewer.locator("body").inner_text()
    assert all(name in body for name in MODELS) and "audience pick" in body
    viewer.screenshot(path=str(ARTIFACTS / "compare-exported-report.png"), full_page=True)
    pdf = viewer.pdf(path=str(ARTIFACTS / "compare-exported-report.pdf"), print_background=True)
    assert pdf.startswith(b"%PDF")  # printable to PDF as is
    assert problems == []
    viewer.close()


def test_stop_aborts_every_column(page: Page, dashboard: DashboardServer, fresh_standin: StandinServer) -> None:
    fresh_standin.state.configure(tokens_per_second=20, reply_tokens=2000)
    setup_four(page, dashboard, fresh_standin, blind=False)
    page.locator(".st-key-compare-run_deck button").click()
    for slot in "ABCD":
        expect(column(page, slot)).to_contain_text("t0005", timeout=15_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_app(page)
    deadline = time.monotonic() + 5
    while fresh_standin.state.disconnects < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fresh_standin.state.disconnects == 4
    for slot in "ABCD":
        expect(column(page, slot)).to_contain_text("Stopped", timeout=10_000)
        text = column(page, slot).inner_text()
        assert "t0005" in text and "END." not in text
    assert re.search(r"Model A · local", page.locator(".st-key-compare-col-A").inner_text())
