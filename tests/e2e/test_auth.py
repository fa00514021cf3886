"""Signing in for real: `streamlit run` with a key, Chromium, tokens by link and by form."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
from playwright.sync_api import Page, expect

from services.access.tokens import LEEWAY_S
from tests.e2e.conftest import DashboardServer, goto, screenshot, start_dashboard, stop_dashboard, wait_for_app
from tests.standin import StandinServer

pytestmark = pytest.mark.e2e

SECRET = "e2e-" + "s" * 44
NAV = "[data-testid='stSidebarNav'] a"


def token(role: str, sub: str, ttl_s: int = 600, **extra: object) -> str:
    now = int(time.time())
    claims = {"iss": "ollama-dashboard", "aud": "ollama-dashboard", "sub": sub, "role": role, "iat": now - 1,
              "exp": now + ttl_s, **extra}
    return jwt.encode(claims, SECRET)


@pytest.fixture(scope="module")
def keyed_dashboard(e2e_standin: StandinServer, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[DashboardServer]:
    server = start_dashboard({"OLLAMA_HOST": e2e_standin.url, "DASHBOARD_JWT_SECRET": SECRET},
                             tmp_path_factory.mktemp("keyed"))
    yield server
    stop_dashboard(server)
    log = server.log()
    assert not server.tracebacks(), log
    assert SECRET not in log
    assert "sign-in required: tokens verified with HS256" in log


def nav_titles(page: Page) -> list[str]:
    """Link labels without the icon's ligature text (``chat\n\nChat`` -> ``Chat``)."""
    return [link.inner_text().strip().split("\n")[-1].strip() for link in page.locator(NAV).all()]


def sign_in_with_form(page: Page, raw: str) -> None:
    page.get_by_label("Access token", exact=True).and_(page.get_by_role("textbox")).fill(raw)
    page.get_by_role("button", name="Sign in").click()
    wait_for_app(page)


def test_without_a_token_every_address_shows_the_sign_in_page(page: Page, keyed_dashboard: DashboardServer) -> None:
    for path in ("/", "/chat", "/audit"):
        goto(page, keyed_dashboard, path)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        expect(page.get_by_text("Not signed in.")).to_be_visible()
        expect(page.get_by_text("Chat playground")).to_have_count(0)
        expect(page.get_by_text("Page not found")).to_have_count(0)
        assert nav_titles(page) == []
    screenshot(page, "auth-sign-in")
    # Signing in from a deep link lands on the page that was asked for.
    goto(page, keyed_dashboard, "/chat")
    sign_in_with_form(page, token("operator", "olga"))
    expect(page.get_by_text("Chat playground")).to_be_visible()
    assert page.url.endswith("/chat")


def test_viewer_by_link_token_leaves_the_address_bar(page: Page, keyed_dashboard: DashboardServer) -> None:
    raw = token("viewer", "wall-screen-1", ttl_s=30 * 86400)
    goto(page, keyed_dashboard, f"/?token={raw}")
    expect(page.get_by_text("wall-screen-1")).to_be_visible()
    page.wait_for_function("() => !window.location.search.includes('token=')", timeout=10_000)
    assert raw not in page.url and "token" not in page.url
    titles = nav_titles(page)
    assert not {"Chat", "Models", "Audit log"} & set(titles)
    assert page.url.endswith("/monitoring")  # the viewer's first (and, today, only) page
    screenshot(page, "auth-viewer-by-link")
    # The forbidden page by address: not served to a viewer.
    page.goto(keyed_dashboard.url + "/chat")
    wait_for_app(page)
    expect(page.get_by_text("Chat playground")).to_have_count(0)


def test_wall_screen_kiosk_link(page: Page, keyed_dashboard: DashboardServer) -> None:
    raw = token("viewer", "wall-screen-2", ttl_s=30 * 86400)
    goto(page, keyed_dashboard, f"/monitoring?kiosk=1&token={raw}")
    page.wait_for_function("() => !window.location.search.includes('token=')", timeout=10_000)
    assert "kiosk=1" in page.url and raw not in page.url
    expect(page.get_by_text("Sign in", exact=True)).to_have_count(0)
    screenshot(page, "auth-wall-screen-kiosk")


def test_admin_by_form_sees_every_page_then_signs_out(page: Page, keyed_dashboard: DashboardServer) -> None:
    goto(page, keyed_dashboard, "/")
    sign_in_with_form(page, token("admin", "ada"))
    expect(page.get_by_text("ada", exact=False).first).to_be_visible()
    titles = nav_titles(page)
    assert {"Chat", "Models", "Audit log", "Monitoring"} <= set(titles)
    expect(page.get_by_role("textbox", name="Access token")).to_have_count(0)
    screenshot(page, "auth-admin-by-form")
    page.get_by_role("button", name="Sign out").click()
    wait_for_app(page)
    expect(page.get_by_text("You signed out.")).to_be_visible()
    expect(page.get_by_text("Page not found")).to_have_count(0)
    assert nav_titles(page) == []
    screenshot(page, "auth-signed-out")


def test_viewer_by_form_and_bad_tokens_are_explained(page: Page, keyed_dashboard: DashboardServer) -> None:
    goto(page, keyed_dashboard, "/")
    forged = jwt.encode({"sub": "mallory", "role": "admin"}, None, algorithm="none")
    sign_in_with_form(page, forged)
    expect(page.get_by_text("Invalid token.")).to_be_visible()
    expect(page.get_by_text("only accepts HS256")).to_be_visible()
    screenshot(page, "auth-refused-alg-none")
    sign_in_with_form(page, token("root", "mallory"))
    expect(page.get_by_text("Not allowed.")).to_be_visible()
    sign_in_with_form(page, token("viewer", "vic"))
    expect(page.get_by_text("vic", exact=False).first).to_be_visible()
    assert "Chat" not in nav_titles(page)


def test_a_session_that_expires_is_stopped_on_the_next_rerun(page: Page, keyed_dashboard: DashboardServer) -> None:
    # Valid for ~12 more seconds (30 s leeway), then the next interaction must land on "Session expired".
    raw = token("operator", "otto", ttl_s=-18)
    goto(page, keyed_dashboard, f"/chat?token={raw}")
    expect(page.get_by_text("Chat playground")).to_be_visible()
    expired_at = jwt.decode(raw, options={"verify_signature": False})["exp"] + LEEWAY_S
    while time.time() <= expired_at:  # the condition is the clock itself: the token's expiry must pass
        time.sleep(expired_at - time.time() + 0.1)
    chat_input = page.locator("[data-testid='stChatInput'] textarea")
    chat_input.fill("are you still there?")
    chat_input.press("Enter")
    wait_for_app(page)
    expect(page.get_by_text("Session expired.")).to_be_visible()
    expect(page.get_by_text("Page not found")).to_have_count(0)
    expect(page.get_by_text("Chat playground")).to_have_count(0)
    screenshot(page, "auth-session-expired")


def test_open_local_mode_banner(page: Page, dashboard: DashboardServer) -> None:
    goto(page, dashboard, "/chat")
    expect(page.get_by_text("Open local mode")).to_be_visible()
    screenshot(page, "auth-open-local-mode")
    assert "OPEN LOCAL MODE" in dashboard.log()
