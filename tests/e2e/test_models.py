"""The Models page in Chromium against a real `streamlit run` and the loopback stand-in."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DashboardServer, goto, screenshot, wait_for_app
from tests.standin import StandinServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
PROGRESS_RE = re.compile(r"[\d.]+ [KMG]?B / [\d.]+ [KMG]B · \d+%")


def start_pull(page: Page, name: str) -> None:
    page.get_by_role("textbox", name="Model name with tag").fill(name)
    page.get_by_role("textbox", name="Model name with tag").press("Enter")
    page.get_by_role("button", name="Pull").click()


def installed_count(page: Page) -> str:
    metric = page.get_by_test_id("stMetric").filter(has_text="Installed models")
    return metric.get_by_test_id("stMetricValue").inner_text()


def test_a_pull_survives_a_reload_and_the_new_model_shows_up(page: Page, dashboard: DashboardServer,
                                                             fresh_standin: StandinServer) -> None:
    fresh_standin.state.configure(pull_bytes_per_s=2_500_000, pull_interval_s=0.05)
    goto(page, dashboard, "/models")
    assert installed_count(page) == "4"
    start_pull(page, "gemma2:2b")
    expect(page.get_by_text("Pulling gemma2:2b on local")).to_be_visible()
    progress = page.get_by_text(PROGRESS_RE)
    expect(progress).to_be_visible(timeout=10_000)
    expect(progress).not_to_have_text(progress.inner_text(), timeout=10_000)  # the job advances on its own
    screenshot(page, "models-pulling")
    before = progress.inner_text()

    page.reload()
    wait_for_app(page)
    expect(page.get_by_text(PROGRESS_RE)).to_be_visible(timeout=10_000)  # same job, seen by a new session
    assert page.get_by_text(PROGRESS_RE).inner_text() != before
    expect(page.get_by_role("button", name="Cancel")).to_have_count(1)
    screenshot(page, "models-pulling-after-reload")
    assert len(fresh_standin.state.requests_to("/api/pull")) == 1  # the reload did not start another pull

    expect(page.get_by_text(PROGRESS_RE)).to_have_count(0, timeout=60_000)
    expect(page.get_by_test_id("stMetric").filter(has_text="Installed models")
           .get_by_test_id("stMetricValue")).to_have_text("5", timeout=15_000)
    expect(page.get_by_text("succeeded")).to_be_visible()
    screenshot(page, "models-after-pull")
    assert "gemma2:2b" in fresh_standin.state.models


def test_cancel_stops_the_pull(page: Page, dashboard: DashboardServer, fresh_standin: StandinServer) -> None:
    fresh_standin.state.configure(pull_bytes_per_s=1_000_000, pull_interval_s=0.05)
    goto(page, dashboard, "/models")
    start_pull(page, "mistral:7b")
    expect(page.get_by_text(PROGRESS_RE)).to_be_visible(timeout=10_000)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("cancelled", exact=False).first).to_be_visible(timeout=10_000)
    expect(page.get_by_role("button", name="Retry").first).to_be_visible()
    deadline = time.monotonic() + 5
    while fresh_standin.state.disconnects < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fresh_standin.state.disconnects >= 1
    assert "mistral:7b" not in fresh_standin.state.models


def test_invalid_name_is_refused_in_the_page(page: Page, dashboard: DashboardServer,
                                            fresh_standin: StandinServer) -> None:
    goto(page, dashboard, "/models")
    start_pull(page, "../../etc/passwd")
    expect(page.get_by_text("is not a valid model name")).to_be_visible()
    assert fresh_standin.state.requests_to("/api/pull") == []


def test_delete_needs_the_typed_name_and_lands_in_the_audit_log(page: Page, dashboard: DashboardServer,
                                                                fresh_standin: StandinServer) -> None:
    goto(page, dashboard, "/models")
    search = page.get_by_role("textbox", name="Filter")
    search.fill("phi3")
    search.press("Enter")
    wait_for_app(page)
    expect(page.get_by_role("combobox", name="Model", exact=True)).to_have_value("phi3:mini")
    expect(page.get_by_text("Context length")).to_be_visible()
    page.get_by_role("tab", name="Details").scroll_into_view_if_needed()
    screenshot(page, "models-details")
    page.get_by_role("tab", name="Delete").click()
    confirm = page.get_by_role("textbox", name="Type the model's name")
    confirm.fill("phi3")
    confirm.press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Type the model's exact name")).to_be_visible()
    assert "phi3:mini" in fresh_standin.state.models
    screenshot(page, "models-delete-refused")
    confirm.fill("phi3:mini")
    confirm.press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Deleted phi3:mini from local")).to_be_visible()
    assert "phi3:mini" not in fresh_standin.state.models
    page.get_by_role("link", name="Audit log").click()
    wait_for_app(page)
    expect(page.get_by_text(re.compile(r"\d+ event\(s\)"))).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()
    expect(page.get_by_text("Between")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame").locator("canvas").first).to_be_visible()
    screenshot(page, "audit-log")


def test_failed_pull_says_why_next_to_the_loaded_models(page: Page, dashboard: DashboardServer,
                                                        fresh_standin: StandinServer) -> None:
    fresh_standin.state.mark_loaded("llama3.2:1b", "10m")
    fresh_standin.state.mark_loaded("qwen3:0.6b", -1)
    goto(page, dashboard, "/models")
    start_pull(page, "no-such-model:7b")
    expect(page.get_by_text("file does not exist").first).to_be_visible(timeout=10_000)
    expect(page.get_by_role("button", name="Retry").first).to_be_visible()
    expect(page.get_by_text("forever")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^9 min \d\d s$"))).to_be_visible()  # the 10 minute keep-alive ticking
    screenshot(page, "models-failed-pull-and-loaded")
