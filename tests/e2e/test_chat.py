"""The chat playground in a real headless Chromium against `streamlit run` and the loopback stand-in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DashboardServer, goto, screenshot, start_dashboard, stop_dashboard, wait_for_app
from tests.standin import StandinServer

pytestmark = pytest.mark.e2e

INPUT = "[data-testid='stChatInput'] textarea"


def ask(page: Page, text: str) -> None:
    page.locator(INPUT).fill(text)
    page.locator(INPUT).press("Enter")


def last_reply(page: Page):
    return page.get_by_test_id("stChatMessage").last


def test_a_conversation_streams_with_honest_stats(
    page: Page, dashboard: DashboardServer, fresh_standin: StandinServer
) -> None:
    fresh_standin.state.configure(tokens_per_second=40, reply_tokens=120)
    goto(page, dashboard, "/chat")
    ask(page, "Write a product description for a **red** evening dress")
    expect(last_reply(page)).to_contain_text("t0030", timeout=15_000)
    expect(page.locator(INPUT)).to_be_disabled()  # no second send while a reply streams
    screenshot(page, "chat-mid-conversation")
    expect(page.get_by_text("tokens/s")).to_be_visible(timeout=15_000)
    wait_for_app(page)
    reply = last_reply(page)
    expect(reply).to_contain_text("t0119 END.")
    caption = page.get_by_test_id("stCaptionContainer").filter(has_text="tokens/s").inner_text()
    assert "120 tokens" in caption and "first token" in caption
    tokens_per_s = float(caption.split(" tokens/s")[0].split("·")[-1])
    final = fresh_standin.state.finals[-1]  # the figure is Ollama's own counters, not a clock in the page
    assert abs(tokens_per_s - final["eval_count"] / final["eval_duration"] * 1e9) <= 0.051
    expect(page.locator(INPUT)).to_be_enabled()
    ask(page, "And a shorter one?")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(4, timeout=15_000)
    expect(last_reply(page)).to_contain_text("t0119 END.", timeout=15_000)
    wait_for_app(page)
    screenshot(page, "chat-two-turns")


def test_stop_closes_the_stream_and_keeps_the_partial_reply(
    page: Page, dashboard: DashboardServer, fresh_standin: StandinServer
) -> None:
    fresh_standin.state.configure(tokens_per_second=20, reply_tokens=2000)
    goto(page, dashboard, "/chat")
    ask(page, "Tell me everything")
    expect(last_reply(page)).to_contain_text("t0010", timeout=15_000)
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped by you")).to_be_visible(timeout=10_000)
    deadline = time.monotonic() + 5
    while fresh_standin.state.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fresh_standin.state.disconnects == 1
    text = last_reply(page).inner_text()
    assert "t0010" in text and "END." not in text
    screenshot(page, "chat-stopped")


def test_faults_show_a_message_and_keep_the_conversation(
    page: Page, dashboard: DashboardServer, fresh_standin: StandinServer
) -> None:
    fresh_standin.state.configure(tokens_per_second=500)
    goto(page, dashboard, "/chat")
    ask(page, "alpha-question")
    expect(last_reply(page)).to_contain_text("END.", timeout=15_000)
    wait_for_app(page)
    fresh_standin.state.configure(fault="inband", fault_after=3)
    ask(page, "second")
    expect(page.get_by_text("The model failed while answering")).to_be_visible(timeout=15_000)
    expect(last_reply(page)).to_contain_text("t0003")
    fresh_standin.state.configure(fault="busy")
    wait_for_app(page)
    ask(page, "third")
    expect(page.get_by_text("is busy")).to_be_visible(timeout=15_000)
    assert page.get_by_test_id("stChatMessage").filter(has_text="alpha-question").count() == 1
    screenshot(page, "chat-faults")


def test_the_json_export_carries_model_digest_and_timings(
    page: Page, dashboard: DashboardServer, fresh_standin: StandinServer, tmp_path: Path
) -> None:
    fresh_standin.state.configure(tokens_per_second=500)
    goto(page, dashboard, "/chat")
    ask(page, "export me")
    expect(last_reply(page)).to_contain_text("END.", timeout=15_000)
    wait_for_app(page)
    page.get_by_role("button", name="Conversation").click()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Export JSON").click()
    path = tmp_path / "conversation.json"
    download_info.value.save_as(path)
    document = json.loads(path.read_text())
    reply = document["turns"][1]
    assert reply["model"] == "llama3.2:1b"
    assert reply["digest"] == fresh_standin.state.models["llama3.2:1b"]["digest"]
    assert reply["stats"]["eval_count"] == 30 and reply["options"]["temperature"] == 0.7


def test_no_ollama_shows_what_to_do(page: Page, tmp_path: Path) -> None:
    server = start_dashboard({"OLLAMA_HOST": "127.0.0.1:9"}, tmp_path)
    try:
        goto(page, server, "/chat")
        banner = page.get_by_test_id("stAlertContentError")
        expect(banner).to_have_count(1)
        expect(banner).to_contain_text("Ollama is not reachable at http://127.0.0.1:9")
        expect(banner).to_contain_text("Connection refused")
        expect(banner).to_contain_text("What to do")
        expect(page.locator(INPUT)).to_be_disabled()
        screenshot(page, "chat-no-ollama")
    finally:
        stop_dashboard(server)
    assert not server.tracebacks(), server.log()
