"""The wall screen in a real browser: healthy, a backend going down, and coming back, all without a touch."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DashboardServer, free_port, screenshot, start_dashboard, stop_dashboard, wait_for_app
from tests.standin import StandinServer

pytestmark = pytest.mark.e2e
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, StandinServer]]:
    servers = {"gpu-box": StandinServer().start(), "cpu-box": StandinServer().start()}
    servers["gpu-box"].state.mark_loaded("llama3.2:1b", "30m")
    servers["gpu-box"].state.mark_loaded("qwen3:0.6b", -1)
    yield servers
    for server in servers.values():
        with contextlib.suppress(OSError):
            server.halt()


@pytest.fixture(scope="module")
def wall(fleet: dict[str, StandinServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    tmp = tmp_path_factory.mktemp("wall")
    backends = tmp / "backends.toml"
    backends.write_text("".join(f'[[backends]]\nname = "{name}"\nurl = "{server.url}"\n'
                                for name, server in fleet.items()))
    metrics_port = free_port()
    server = start_dashboard({"DASHBOARD_BACKENDS_FILE": str(backends), "DASHBOARD_METRICS_PORT": str(metrics_port),
                              "DASHBOARD_PROBE_INTERVAL": "1", "DASHBOARD_PROBE_TIMEOUT": "1",
                              "DASHBOARD_KIOSK_REFRESH_S": "1"}, tmp)
    server.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
    yield server
    stop_dashboard(server)
    assert not server.tracebacks(), server.log()


def tile(page: Page, state: str):
    return page.locator(f"[class*='st-key-kiosk-tile-{state}']")


def test_wall_screen_outage_and_recovery(wall: DashboardServer, fleet: dict[str, StandinServer],
                                         browser, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(wall.url + "/monitoring?kiosk=1")
        wait_for_app(page)
        expect(tile(page, "online")).to_have_count(2, timeout=15_000)
        expect(page.get_by_test_id("stSidebar")).to_have_count(0)
        expect(page.get_by_text("2 backends: 2 online")).to_be_visible()
        expect(page.get_by_text("llama3.2:1b", exact=False)).to_be_visible()
        clock = page.get_by_text(re.compile(r"^Last updated \d\d:\d\d:\d\d UTC$"))
        first = clock.inner_text()
        expect(clock).not_to_have_text(first, timeout=10_000)  # the fragment refreshes on its own
        time.sleep(2)  # one more latency point on the chart
        screenshot(page, "monitoring-kiosk-healthy")

        port = fleet["cpu-box"].port
        fleet["cpu-box"].halt()
        expect(tile(page, "offline")).to_have_count(1, timeout=15_000)
        expect(tile(page, "offline")).to_contain_text("cpu-box")
        expect(tile(page, "offline")).to_contain_text("OFFLINE")
        expect(page.get_by_text("2 backends: 1 online · 1 OFFLINE")).to_be_visible()
        metrics = httpx.get(wall.metrics_url, timeout=5).text  # type: ignore[attr-defined]
        assert 'ollama_up{backend="cpu-box"} 0.0' in metrics and 'ollama_up{backend="gpu-box"} 1.0' in metrics
        time.sleep(2)
        screenshot(page, "monitoring-kiosk-backend-down")

        fleet["cpu-box"] = StandinServer(port=port).start()
        expect(tile(page, "offline")).to_have_count(0, timeout=15_000)
        expect(tile(page, "online")).to_have_count(2)
        screenshot(page, "monitoring-kiosk-recovered")
        assert page.get_by_text("Traceback").count() == 0
    finally:
        context.close()


def test_operator_page_lists_tiles_and_charts(wall: DashboardServer, page: Page) -> None:
    page.goto(wall.url + "/monitoring")
    wait_for_app(page)
    expect(page.get_by_test_id("stSidebar")).to_be_visible()
    expect(page.locator("[class*='st-key-mon-tile-']")).to_have_count(2, timeout=15_000)
    expect(page.get_by_text("Backends over time")).to_be_visible()
    page.get_by_text("24 h", exact=True).click()
    wait_for_app(page)
    expect(page.get_by_text("Prometheus is not configured", exact=False)).to_be_visible()
    screenshot(page, "monitoring-page")


def _start_prometheus(exporter_port: int, tmp: Path) -> tuple[str, subprocess.Popen]:
    config = tmp / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dashboard\n"
                      f"    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n")
    port = free_port()
    process = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=(tmp / "prometheus.log").open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return url, process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("prometheus did not become ready")


def test_wall_screen_prometheus_panels_then_prometheus_down(fleet: dict[str, StandinServer], browser,
                                                            tmp_path: Path) -> None:
    if not Path(PROMETHEUS).exists():
        pytest.skip("the prometheus binary is missing (make test installs Debian's prometheus package)")
    exporter_port = free_port()
    prometheus_url, prometheus = _start_prometheus(exporter_port, tmp_path)
    backends = tmp_path / "backends.toml"
    backends.write_text(f'[[backends]]\nname = "gpu-box"\nurl = "{fleet["gpu-box"].url}"\n')
    server = start_dashboard({"DASHBOARD_BACKENDS_FILE": str(backends), "DASHBOARD_METRICS_PORT": str(exporter_port),
                              "PROMETHEUS_URL": prometheus_url, "DASHBOARD_PROBE_INTERVAL": "1",
                              "DASHBOARD_KIOSK_REFRESH_S": "1", "DASHBOARD_PROMETHEUS_TIMEOUT": "2"}, tmp_path)
    context = browser.new_context(viewport={"width": 1920, "height": 1900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        # Two real generations through the chat page, so the ai_* series exist in Prometheus.
        page.goto(server.url + "/chat")
        wait_for_app(page)
        for prompt in ("Hello there", "And again", "Once more"):
            page.get_by_test_id("stChatInputTextArea").fill(prompt)
            page.keyboard.press("Enter")
            wait_for_app(page, 30_000)
            time.sleep(2.5)  # a scrape between two generations, so rate() sees an increase
        metrics = httpx.get(f"http://127.0.0.1:{exporter_port}/metrics", timeout=5).text
        assert 'ai_requests_total{model="llama3.2:1b",status="success"} 3.0' in metrics
        page.goto(server.url + "/monitoring?kiosk=1")
        wait_for_app(page)
        expect(page.locator(".js-plotly-plot")).to_have_count(2 + 5, timeout=30_000)
        time.sleep(2)
        screenshot(page, "monitoring-kiosk-prometheus")

        prometheus.terminate()
        prometheus.wait(10)
        expect(page.get_by_text(re.compile("^Stale: showing the last good data")).first).to_be_visible(
            timeout=30_000)
        expect(tile(page, "online")).to_have_count(1)
        screenshot(page, "monitoring-kiosk-prometheus-down")
    finally:
        context.close()
        stop_dashboard(server)
        if prometheus.poll() is None:
            prometheus.kill()
    assert not server.tracebacks(), server.log()
