"""The gate, however the dashboard is started: every page, every bad token, nothing but the sign-in page.

Two ways of starting it: ``python serve.py`` and plain ``streamlit run app.py``. With the latter, Streamlit
discovers ``pages/`` by itself until a session calls ``st.navigation``: the first visit to a fresh server
runs the page file on its own. So each page also gets a fresh server whose very first visit is that page.
A stored batch job sits in the data directory, so an ungated batch page would offer its download.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest
from playwright.sync_api import Browser, Page, expect

from services.access.pages import PAGES
from services.db import Database
from services.studio.batch import BatchManager
from services.studio.tabular import read_csv_bytes
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.e2e.conftest import DashboardServer, goto, screenshot, start_dashboard, stop_dashboard
from tests.standin import StandinServer

pytestmark = pytest.mark.e2e

SECRET = "gate-" + "k" * 43
ADDRESSES = [f"/{spec.url_path}" for spec in PAGES] + ["/descriptions?mode=batch", "/monitoring?kiosk=1", "/"]
# What a page would show past the gate: page titles, the backend's address, a model name, a download.
LEAKS = ("Chat playground", "Product studio", "Compare models", "Audit log", "Backend", "llama3.2",
         "gate-products.csv")


def _b64(part: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def bad_tokens() -> dict[str, str | None]:
    now = int(time.time())
    claims = {"iss": "ollama-dashboard", "aud": "ollama-dashboard", "sub": "mallory", "role": "admin",
              "iat": now - 5, "exp": now + 600}
    return {
        "no token": None,
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "expired": jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, SECRET),
        "wrong audience": jwt.encode({**claims, "aud": "another-app"}, SECRET),
    }


def good_token(role: str = "admin") -> str:
    now = int(time.time())
    return jwt.encode({"iss": "ollama-dashboard", "aud": "ollama-dashboard", "sub": "ada", "role": role,
                       "iat": now - 5, "exp": now + 600}, SECRET)


def seed_batch_job(data_dir: Path, standin: StandinServer) -> None:
    """A finished batch in the data directory, as someone's earlier work would leave it."""
    from services.config import Backend
    from services.connections import connect

    backend = Backend(name="local", kind="ollama", url=standin.url)
    client = connect(backend)
    manager = BatchManager(Database.in_dir(data_dir), lambda _name: client)
    table = read_csv_bytes(b"product_type,name\nrobe,Robe Lina\n", "gate-products.csv")
    template = TemplateStore(data_dir).get("description")
    job = manager.create_job(table, template=template, model="llama3.2:1b", backend="local",
                             params=TaskParams(check_language=False), mapping={"product_type": "product_type",
                                                                              "name": "name"},
                             concurrency=1, owner="ada")
    manager.start(job)
    assert manager.wait(job, timeout_s=60)
    manager.shutdown()
    client.close()


def start(how: str, standin: StandinServer, tmp: Path) -> DashboardServer:
    seed_batch_job(tmp / "data", standin)
    return start_dashboard({"OLLAMA_HOST": standin.url, "DASHBOARD_JWT_SECRET": SECRET}, tmp, how=how)


def assert_only_sign_in(page: Page, what: str) -> None:
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    body = page.inner_text("body")
    leaked = [text for text in LEAKS if text in body]
    assert not leaked, f"{what}: the sign-in page shows {leaked}"
    assert page.locator("[data-testid='stDownloadButton']").count() == 0, what
    assert page.locator("[data-testid='stSidebarNav'] a").count() == 0, what


def visit(page: Page, server: DashboardServer, address: str, token: str | None) -> None:
    joiner = "&" if "?" in address else "?"
    goto(page, server, address + (f"{joiner}token={token}" if token else ""))


@pytest.fixture(scope="module", params=["serve", "streamlit"])
def gated(request: pytest.FixtureRequest, e2e_standin: StandinServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    server = start(request.param, e2e_standin, tmp_path_factory.mktemp(f"gate-{request.param}"))
    yield server
    stop_dashboard(server)
    assert not server.tracebacks(), server.log()
    assert not server.warnings(allowed=("sign-in refused",)), server.log()
    assert SECRET not in server.log()


def test_every_page_refuses_every_bad_token(browser: Browser, gated: DashboardServer) -> None:
    for name, token in bad_tokens().items():
        for address in ADDRESSES:
            context = browser.new_context(viewport={"width": 1440, "height": 900})  # a fresh session each time
            page = context.new_page()
            visit(page, gated, address, token)
            assert_only_sign_in(page, f"{address} with {name}")
            context.close()


def test_a_good_token_opens_the_stored_batch_and_nothing_leaves_the_dashboard(browser: Browser,
                                                                             gated: DashboardServer) -> None:
    """The same server with a valid token: the seeded download is there (so the refusals above mean something),
    and no page asks the browser to fetch anything from another host (Ollama sites are often air-gapped)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    foreign: list[str] = []
    own = urlsplit(gated.url).netloc
    page.on("request", lambda request: foreign.append(request.url)
            if urlsplit(request.url).scheme in ("http", "https", "ws", "wss")
            and urlsplit(request.url).netloc != own else None)
    visit(page, gated, "/descriptions?mode=batch", good_token())
    expect(page.get_by_test_id("stDownloadButton").first).to_be_visible()
    for address in ADDRESSES:  # each page load is a new session: the token comes along, as a wall screen's link
        visit(page, gated, address, good_token())
        expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)
    screenshot(page, f"gate-{urlsplit(gated.url).port}-signed-in")
    context.close()
    assert not foreign, foreign


@pytest.mark.parametrize("spec", PAGES, ids=[spec.url_path for spec in PAGES])
def test_a_first_visit_straight_to_a_page_of_a_fresh_server_is_gated(
    browser: Browser, e2e_standin: StandinServer, tmp_path_factory: pytest.TempPathFactory, spec: object
) -> None:
    """`streamlit run app.py`, and the very first request is the page itself (Streamlit's pages/ discovery)."""
    url_path = spec.url_path  # type: ignore[attr-defined]
    server = start("streamlit", e2e_standin, tmp_path_factory.mktemp(f"first-{url_path}"))
    try:
        names = list(bad_tokens())
        name = names[[s.url_path for s in PAGES].index(url_path) % len(names)]
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        address = "/descriptions?mode=batch" if url_path == "descriptions" else f"/{url_path}"
        visit(page, server, address, bad_tokens()[name])
        assert_only_sign_in(page, f"first visit to {address} with {name}")
        if url_path == "descriptions":
            screenshot(page, "gate-first-visit-batch-page")
        # Signing in on that same page lands on the page asked for, behind the gate.
        visit(page, server, address, good_token())
        expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)
        context.close()
    finally:
        stop_dashboard(server)
    assert not server.tracebacks(), server.log()
