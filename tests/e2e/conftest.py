"""End-to-end fixtures: `streamlit run` (through serve.py) on loopback, driven by Debian's Chromium.

Like Streamlit's own e2e_playwright suite: one server per test module, health-checked on
``/_stcore/health``; one browser per session; a fresh page per test. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.standin import StandinServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.e2e
STREAMLIT_WEBSOCKET_RACE = "starlette_websocket.py"
OUR_CODE = re.compile(r'File "[^"]*/(?:app\.py|serve\.py|services/|components/|pages/)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DashboardServer:
    url: str
    process: subprocess.Popen
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tracebacks(self) -> list[str]:
        """Tracebacks in the server log, less Streamlit's own websocket-disconnect race.

        Streamlit 1.67 mistakes Starlette's RuntimeError on an already-disconnected socket for a text
        frame and closes twice; uvicorn then logs "Exception in ASGI application" from
        starlette_websocket.py. Users never see it. Any traceback through our code still counts.
        """
        blocks = re.split(r"(?=^Traceback \(most recent call last\):)", self.log(), flags=re.MULTILINE)
        found = [b for b in blocks if b.startswith("Traceback")]
        return [b for b in found if not (STREAMLIT_WEBSOCKET_RACE in b and not OUR_CODE.search(b))]

    def warnings(self, *, allowed: tuple[str, ...] = ()) -> list[str]:
        """Log lines at WARNING or above, and deprecations, less the ``allowed`` substrings."""
        noisy = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|[Dd]eprecat")
        return [line for line in self.log().splitlines()
                if noisy.search(line) and not any(text in line for text in allowed)]


def start_dashboard(env_overrides: dict[str, str], tmp: Path, *, how: str = "serve") -> DashboardServer:
    """Start the dashboard as people do: ``python serve.py`` (what ``make run`` and the image run) or
    ``streamlit run app.py`` (how most Streamlit recipes start an app)."""
    port = free_port()
    data_dir = tmp / "data"
    env = {**os.environ, "DASHBOARD_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1",
           "DASHBOARD_METRICS_PORT": "0", **env_overrides}
    log_path = tmp / "streamlit.log"
    log = log_path.open("w")
    starter = ["serve.py"] if how == "serve" else ["-m", "streamlit", "run", "app.py"]
    process = subprocess.Popen(
        [sys.executable, *starter, "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1).text == "ok":
                return DashboardServer(url, process, data_dir, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"streamlit did not become healthy:\n{log_path.read_text()}")


def stop_dashboard(server: DashboardServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def e2e_standin() -> Iterator[StandinServer]:
    with StandinServer() as server:
        yield server


@pytest.fixture
def fresh_standin(e2e_standin: StandinServer) -> StandinServer:
    """The module's stand-in, reset to its defaults for this test."""
    e2e_standin.state.reset()
    return e2e_standin


@pytest.fixture(scope="module")
def dashboard(e2e_standin: StandinServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    server = start_dashboard({"OLLAMA_HOST": e2e_standin.url, "DASHBOARD_STALL_TIMEOUT": "2"},
                             tmp_path_factory.mktemp("dashboard"))
    yield server
    stop_dashboard(server)
    assert not server.tracebacks(), server.log()
    assert not server.warnings(), server.log()


# `browser` (one Chromium for the whole run) lives in tests/conftest.py: the image tier drives it too, and
# Playwright's sync API allows one instance per thread.


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def wait_for_app(page: Page, timeout_ms: int = 20_000) -> None:
    """Wait until the script run is finished (Streamlit's own e2e suite waits on the same attribute)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)


def goto(page: Page, dashboard: DashboardServer, path: str) -> None:
    page.goto(dashboard.url + path)
    wait_for_app(page)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
