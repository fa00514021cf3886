"""The wall screen in a real browser: it fills 720p, 1080p and 4K screens without scrolling, with readable and
contrasted text; 50 backends fit; a backend going down and coming back, in words; firing alerts from a real
Prometheus; and an unmistakable STALE state when the dashboard goes away. Screenshots go to artifacts/."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import DashboardServer, free_port, screenshot, start_dashboard, stop_dashboard, wait_for_app
from tests.integration.conftest import ALERT_RULES, start_prometheus
from tests.standin import StandinServer

pytestmark = pytest.mark.e2e
SIZES = [(1280, 720), (1920, 1080), (3840, 2160)]
CLOCK = re.compile(r"^\d\d:\d\d:\d\d$")

# Measures the wall as a person would see it: the canvas's scale, every visible text's computed size and its
# contrast against the background it sits on (WCAG relative luminance), and whether anything scrolls.
MEASURE = """
() => {
  const canvas = document.querySelector('[data-testid="stMainBlockContainer"]');
  const scale = canvas.getBoundingClientRect().width / 1920;
  const lum = (c) => {
    const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map((v) => {
      v = v / 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const parts = getComputedStyle(e).backgroundColor.match(/[\\d.]+/g);
      if (parts && (parts.length < 4 || +parts[3] > 0.5)) return getComputedStyle(e).backgroundColor;
    }
    return 'rgb(5, 7, 10)';
  };
  let minFont = 1e9, minContrast = 1e9, worst = '', count = 0;
  const walker = document.createTreeWalker(document.querySelector('.wall'), NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    count += 1;
    minFont = Math.min(minFont, parseFloat(style.fontSize));
    const a = lum(style.color), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < minContrast) { minContrast = ratio; worst = el.textContent.slice(0, 60); }
  }
  const charts = Array.from(document.querySelectorAll('img.wall-chart'));
  return {scale, minFont, minContrast, worst, count,
          chartsBottom: Math.max(...charts.map((c) => c.getBoundingClientRect().bottom)),
          chartsLoaded: charts.filter((c) => c.complete && c.naturalWidth > 0).length,
          innerHeight: window.innerHeight, innerWidth: window.innerWidth,
          scrollHeight: document.scrollingElement.scrollHeight, scrollWidth: document.scrollingElement.scrollWidth};
}
"""


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, StandinServer]]:
    servers = {"gpu-box": StandinServer().start(), "cpu-box": StandinServer().start()}
    servers["gpu-box"].state.mark_loaded("llama3.2:1b", "30m")
    servers["gpu-box"].state.mark_loaded("qwen3:0.6b", -1)
    yield servers
    for server in servers.values():
        with contextlib.suppress(OSError):
            server.halt()


def backends_file(tmp: Path, entries: list[tuple[str, str]]) -> Path:
    path = tmp / "backends.toml"
    path.write_text("".join(f'[[backends]]\nname = "{name}"\nurl = "{url}"\n' for name, url in entries))
    return path


def wall_env(backends: Path, **extra: str) -> dict[str, str]:
    return {"DASHBOARD_BACKENDS_FILE": str(backends), "DASHBOARD_METRICS_PORT": str(free_port()),
            "DASHBOARD_PROBE_INTERVAL": "1", "DASHBOARD_PROBE_TIMEOUT": "1", "DASHBOARD_KIOSK_REFRESH_S": "1",
            "DASHBOARD_TZ": "Europe/Paris", **extra}


@pytest.fixture(scope="module")
def wall(fleet: dict[str, StandinServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    tmp = tmp_path_factory.mktemp("wall")
    env = wall_env(backends_file(tmp, [(name, s.url) for name, s in fleet.items()]))
    server = start_dashboard(env, tmp)
    server.metrics_url = f"http://127.0.0.1:{env['DASHBOARD_METRICS_PORT']}/metrics"  # type: ignore[attr-defined]
    yield server
    stop_dashboard(server)
    assert not server.tracebacks(), server.log()


def open_wall(browser: Browser, url: str, width: int = 1920, height: int = 1080) -> Page:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/monitoring?kiosk=1")
    wait_for_app(page)
    expect(page.locator(".wall-tile").first).to_be_visible()
    return page


def tiles(page: Page, state: str):
    return page.locator(f".wall-tile[data-state='{state}']")


def assert_fits(page: Page, width: int, height: int) -> dict:
    """No scrolling, the canvas scaled to the screen, text of at least 20 px on it, contrast of at least 4.5:1."""
    m = page.evaluate(MEASURE)
    assert m["scrollHeight"] <= m["innerHeight"] and m["scrollWidth"] <= m["innerWidth"], m
    assert m["scale"] == pytest.approx(min(width / 1920, height / 1080), rel=0.01), m
    assert m["chartsBottom"] <= m["innerHeight"] + 1 and m["chartsLoaded"] == 4, m
    assert m["minFont"] >= 20, m  # on the 1080p canvas: 20 px at 1080p, 40 px on a 4K screen
    assert m["minContrast"] >= 4.5, m
    return m


def test_the_wall_fills_720p_1080p_and_4k_with_large_contrasted_text(wall: DashboardServer, browser: Browser,
                                                                       fleet: dict[str, StandinServer]) -> None:
    # Some traffic first, so the top row and the charts have something to show: three chats and a pull.
    from tests.e2e.test_models import PROGRESS_RE, start_pull

    fleet["gpu-box"].state.configure(pull_bytes_per_s=100_000, pull_interval_s=0.05)  # lasts minutes
    worker = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    worker.set_default_timeout(30_000)
    worker.goto(wall.url + "/chat")
    wait_for_app(worker)
    for prompt in ("Hello there", "And again", "Once more"):
        worker.get_by_test_id("stChatInputTextArea").fill(prompt)
        worker.keyboard.press("Enter")
        wait_for_app(worker, 30_000)
    worker.goto(wall.url + "/models")
    wait_for_app(worker)
    start_pull(worker, "gemma2:2b")
    try:
        expect(worker.get_by_text(PROGRESS_RE)).to_be_visible(timeout=15_000)
        for width, height in SIZES:
            page = open_wall(browser, wall.url, width, height)
            expect(tiles(page, "online")).to_have_count(2, timeout=15_000)
            expect(page.locator("[data-stat='pulls'] .stat-value")).to_have_text("1", timeout=15_000)
            expect(page.locator("[data-stat='rpm'] .stat-value")).not_to_have_text("0.0")
            expect(page.get_by_test_id("stSidebar")).to_have_count(0)
            expect(page.locator(".clock-zone")).to_have_text(re.compile(r"^Europe/Paris · CES?T$"))
            page.wait_for_function("() => document.querySelectorAll('img.wall-chart').length === 4")
            time.sleep(1.5)
            assert_fits(page, width, height)
            screenshot(page, f"wall-{width}x{height}")
            page.context.close()
    finally:
        worker.context.close()


def test_fifty_backends_fit_one_screen_with_the_broken_ones_in_words(browser: Browser, tmp_path: Path) -> None:
    with StandinServer() as healthy, StandinServer() as slow:
        slow.state.configure(read_delay_s=1.5)  # beyond the 1 s probe budget for its model list: offline, timed out
        dead = f"http://127.0.0.1:{free_port()}"
        entries = [(f"node-{i:02d}", healthy.url) for i in range(45)]
        entries += [(f"node-{i:02d}", dead) for i in range(45, 48)] + [("node-48", slow.url), ("node-49", slow.url)]
        server = start_dashboard(wall_env(backends_file(tmp_path, entries)), tmp_path)
        try:
            for width, height in ((1920, 1080), (3840, 2160)):
                page = open_wall(browser, server.url, width, height)
                expect(page.locator(".wall-tile")).to_have_count(50, timeout=20_000)
                expect(tiles(page, "offline")).to_have_count(5, timeout=20_000)
                expect(page.locator(".wall-tiles")).to_have_class(re.compile("density-mini"))
                expect(tiles(page, "offline").first).to_contain_text("refused")
                expect(tiles(page, "offline").last).to_contain_text("timed out")
                expect(page.locator("[data-stat='backends'] .stat-value")).to_have_text("45/50")
                assert "Errno" not in page.locator(".wall").inner_text()
                time.sleep(1.5)
                assert_fits(page, width, height)
                screenshot(page, f"wall-50-backends-{width}x{height}")
                page.context.close()
        finally:
            stop_dashboard(server)
    assert not server.tracebacks(), server.log()


def test_a_backend_goes_down_and_comes_back_without_a_touch(wall: DashboardServer, fleet: dict[str, StandinServer],
                                                            browser: Browser) -> None:
    page = open_wall(browser, wall.url)
    expect(tiles(page, "online")).to_have_count(2, timeout=15_000)
    clock = page.locator(".clock-time")
    first = clock.inner_text()
    assert CLOCK.match(first)
    expect(clock).not_to_have_text(first, timeout=10_000)  # the fragment refreshes on its own

    port = fleet["cpu-box"].port
    fleet["cpu-box"].halt()
    expect(tiles(page, "offline")).to_have_count(1, timeout=15_000)
    expect(tiles(page, "offline")).to_contain_text("cpu-box")
    expect(tiles(page, "offline")).to_contain_text("OFFLINE")
    expect(tiles(page, "offline")).to_contain_text("connection refused")
    expect(page.locator("[data-stat='backends']")).to_contain_text("1 offline")
    metrics = httpx.get(wall.metrics_url, timeout=5).text  # type: ignore[attr-defined]
    assert 'ollama_up{backend="cpu-box"} 0.0' in metrics and 'ollama_up{backend="gpu-box"} 1.0' in metrics
    time.sleep(2)
    screenshot(page, "wall-backend-down")

    fleet["cpu-box"] = StandinServer(port=port).start()
    expect(tiles(page, "offline")).to_have_count(0, timeout=15_000)
    expect(tiles(page, "online")).to_have_count(2)
    screenshot(page, "wall-recovered")
    assert page.get_by_text("Traceback").count() == 0
    page.context.close()


def test_the_operator_page_keeps_the_raw_cause(wall: DashboardServer, page: Page) -> None:
    page.goto(wall.url + "/monitoring")
    wait_for_app(page)
    expect(page.get_by_test_id("stSidebar")).to_be_visible()
    expect(page.locator("[class*='st-key-mon-tile-']")).to_have_count(2, timeout=15_000)
    expect(page.get_by_text("Backends over time")).to_be_visible()
    page.get_by_text("24 h", exact=True).click()
    wait_for_app(page)
    expect(page.get_by_text("Prometheus is not configured", exact=False)).to_be_visible()
    screenshot(page, "monitoring-page")


def test_the_wall_turns_stale_when_the_dashboard_goes_away(fleet: dict[str, StandinServer], browser: Browser,
                                                           tmp_path: Path) -> None:
    server = start_dashboard(wall_env(backends_file(tmp_path, [("gpu-box", fleet["gpu-box"].url)])), tmp_path)
    page = open_wall(browser, server.url)
    try:
        expect(tiles(page, "online")).to_have_count(1, timeout=15_000)
        expect(page.locator("#wall-stale-banner")).to_be_hidden()
        last = page.locator(".clock-time").inner_text()
        stop_dashboard(server)  # the websocket drops and no refresh comes any more
        banner = page.locator("#wall-stale-banner")
        expect(banner).to_be_visible(timeout=20_000)
        expect(banner).to_contain_text("STALE")
        expect(banner).to_contain_text(f"No update from the dashboard since {last}")
        assert page.evaluate("() => document.documentElement.classList.contains('wall-is-stale')")
        expect(page.get_by_text("Streamlit server is not responding")).to_be_hidden()  # the banner says it
        screenshot(page, "wall-stale")
    finally:
        page.context.close()
        stop_dashboard(server)


def test_firing_alerts_from_a_real_prometheus_then_prometheus_down(fleet: dict[str, StandinServer],
                                                                    browser: Browser, tmp_path: Path) -> None:
    env = wall_env(backends_file(tmp_path, [(name, s.url) for name, s in fleet.items()]),
                   DASHBOARD_PROMETHEUS_TIMEOUT="2")
    # The shipped rules with every `for:` at zero, so the alert fires within seconds, not a minute.
    rules = tmp_path / "alerts-quick.yml"
    rules.write_text(re.sub(r"for: \d+m", "for: 0s", ALERT_RULES.read_text()))
    prometheus = start_prometheus(tmp_path, int(env["DASHBOARD_METRICS_PORT"]), rules=rules)
    env["PROMETHEUS_URL"] = prometheus.url
    server = start_dashboard(env, tmp_path)
    page = open_wall(browser, server.url)
    port = fleet["cpu-box"].port
    try:
        expect(page.locator(".wall-alerts")).to_have_text("No alert firing", timeout=30_000)
        fleet["cpu-box"].halt()
        alerts = page.locator(".wall-alerts.level-bad")
        expect(alerts).to_contain_text("Backend cpu-box is down", timeout=45_000)
        expect(alerts).to_contain_text("firing")
        time.sleep(1)
        assert_fits(page, 1920, 1080)
        screenshot(page, "wall-alert-firing")

        prometheus.stop()  # the alerts stay listed, marked with when they were read and why not now
        expect(page.locator(".wall-alerts")).to_contain_text("Prometheus is not reachable", timeout=30_000)
        expect(page.locator(".wall-alerts")).to_contain_text("Backend cpu-box is down")
        screenshot(page, "wall-alert-prometheus-down")

        operator = page.context.new_page()  # the operator page's panels show their stale state meanwhile
        operator.goto(server.url + "/monitoring")
        wait_for_app(operator, 30_000)
        expect(operator.get_by_text(re.compile("^(Stale: showing the last good data|Error: Prometheus)")).first
               ).to_be_visible(timeout=30_000)
    finally:
        page.context.close()
        stop_dashboard(server)
        prometheus.stop()
        with contextlib.suppress(OSError):
            fleet["cpu-box"] = StandinServer(port=port).start()
    assert not server.tracebacks(), server.log()
