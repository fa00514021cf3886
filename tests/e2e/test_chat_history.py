"""Kept conversations, pictures and Save as model in a real Chromium against `streamlit run` and the stand-in."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from services.chat.history import ChatStore
from services.db import Database
from tests.e2e.conftest import DashboardServer, goto, screenshot, wait_for_app
from tests.standin import StandinServer

pytestmark = pytest.mark.e2e

INPUT = "[data-testid='stChatInput'] textarea"
DESK = {"width": 1440, "height": 900}


def ask(page: Page, text: str) -> None:
    page.locator(INPUT).fill(text)
    page.locator(INPUT).press("Enter")


def replies(page: Page):
    return page.get_by_test_id("stChatMessage")


def keyed(page: Page, key: str):
    """The visible button of a keyed element (a button with a tooltip also renders a hidden copy)."""
    return page.locator(f".st-key-{key} button:visible")


def choose_model(page: Page, name: str) -> None:
    """Pick a model, reloading while the dashboard still serves its cached model list (a few seconds)."""
    option = page.get_by_role("option", name=name)
    deadline = time.monotonic() + 30
    for _ in range(40):  # the dropdown may also close while a rerun redraws the page; open it again
        page.locator(".st-key-chat-model [role='combobox']").first.click()
        try:
            option.wait_for(timeout=2_000)
            break
        except PlaywrightTimeout:  # retried
            page.keyboard.press("Escape")
            if time.monotonic() > deadline:
                raise
            page.reload()
            wait_for_app(page)
    option.click()
    wait_for_app(page)


def product_photo(path: Path) -> Path:
    """A product shot with camera EXIF (make, model, GPS), larger than what is sent to a model."""
    image = Image.new("RGB", (1600, 2000), (245, 242, 238))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    draw.polygon([(700, 300), (900, 300), (960, 700), (1250, 1800), (350, 1800), (640, 700)], fill=(180, 20, 40))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS R6"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}
    image.save(path, "JPEG", quality=90, exif=exif)
    return path


def seed(server: DashboardServer, titles: list[str]) -> None:
    """Conversations kept by the open-mode person, written to the running dashboard's own database."""
    store = ChatStore(Database.in_dir(server.data_dir), retention_days=90, max_per_owner=2_000)
    for title in titles:
        cid = store.create("local", title=title, model="llama3.2:1b")
        user = store.add_user("local", cid, parent_id=None, text=title)
        reply = store.start_reply("local", cid, parent_id=user.id, model="llama3.2:1b", digest="", backend="local",
                                  options={"temperature": 0.7})
        reply.content, reply.status = "Une description.", "complete"
        store.finish_reply("local", cid, reply)


def test_the_history_list_search_and_a_reload(page: Page, dashboard: DashboardServer,
                                              fresh_standin: StandinServer) -> None:
    page.set_viewport_size(DESK)
    seed(dashboard, ["Robe de soirée rouge", "Lampe de chevet en laiton", "Casserole inox 20 cm",
                     "Mapping fichier fournisseur", "Traduction fiche satin"])
    fresh_standin.state.configure(tokens_per_second=400, reply_tokens=60)
    goto(page, dashboard, "/chat")
    ask(page, "Écris une description courte pour une robe de soirée rouge")
    expect(replies(page).last).to_contain_text("END.", timeout=20_000)
    wait_for_app(page)
    assert "?c=" in page.url
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Écris une description courte pour une")).to_be_visible()
    expect(sidebar.get_by_text("Lampe de chevet en laiton")).to_be_visible()
    sidebar.get_by_text("Robe de soirée rouge").first.scroll_into_view_if_needed()  # the whole list
    screenshot(page, "chat-history-list")
    page.reload()
    wait_for_app(page)
    expect(replies(page)).to_have_count(2)
    expect(replies(page).first).to_contain_text("robe de soirée rouge")
    sidebar.get_by_placeholder("Search titles and messages").fill("laiton")
    sidebar.get_by_placeholder("Search titles and messages").press("Enter")
    wait_for_app(page)
    expect(sidebar.get_by_text("Robe de soirée rouge")).to_have_count(0)
    sidebar.get_by_text("Lampe de chevet en laiton").click()
    wait_for_app(page)
    expect(replies(page).first).to_contain_text("Lampe de chevet en laiton")
    assert not dashboard.tracebacks()


def test_two_tabs_of_one_person_keep_both_messages(page: Page, dashboard: DashboardServer,
                                                   fresh_standin: StandinServer) -> None:
    fresh_standin.state.configure(tokens_per_second=500)
    goto(page, dashboard, "/chat")
    ask(page, "first question")
    expect(replies(page).last).to_contain_text("END.", timeout=15_000)
    wait_for_app(page)
    second = page.context.new_page()
    second.goto(page.url)
    wait_for_app(second)
    ask(page, "from tab A")
    expect(replies(page).last).to_contain_text("END.", timeout=15_000)
    wait_for_app(page)
    ask(second, "from tab B")  # this tab never saw tab A's exchange
    expect(replies(second)).to_have_count(6, timeout=15_000)
    expect(replies(second).last).to_contain_text("END.", timeout=15_000)
    wait_for_app(second)
    page.reload()
    wait_for_app(page)
    for text in ("first question", "from tab A", "from tab B"):
        expect(page.get_by_test_id("stChatMessage").filter(has_text=text)).to_have_count(1)
    second.close()


def test_a_product_photo_reaches_a_vision_model_with_a_thumbnail(page: Page, dashboard: DashboardServer,
                                                                 fresh_standin: StandinServer,
                                                                 tmp_path: Path) -> None:
    page.set_viewport_size(DESK)
    fresh_standin.state.apply_profile("vision")
    fresh_standin.state.configure(tokens_per_second=300, reply_tokens=60)
    goto(page, dashboard, "/chat")
    expect(page.locator(INPUT)).to_have_attribute("placeholder", "Message llama3.2:1b (text only: it has no vision "
                                                                  "capability)")
    choose_model(page, "gemma3:4b")
    page.locator("[data-testid='stChatInput'] input[type='file']").set_input_files(str(product_photo(
        tmp_path / "robe-rouge.jpg")))
    expect(page.get_by_text("robe-rouge.jpg")).to_be_visible()
    ask(page, "Décris ce produit pour la boutique en ligne, en deux phrases.")
    expect(replies(page).last).to_contain_text("[picture 1: JPEG 1254x1568", timeout=20_000)
    expect(replies(page).last).to_contain_text("END.", timeout=20_000)
    wait_for_app(page)
    thumbnail = replies(page).first.locator("img")
    expect(thumbnail).to_have_count(1)
    assert thumbnail.bounding_box()["width"] <= 161
    sent = fresh_standin.state.requests_to("/api/chat")[-1]["body"]["messages"][-1]["images"][0]
    decoded = Image.open(io.BytesIO(__import__("base64").b64decode(sent)))
    assert decoded.size == (1254, 1568) and not dict(decoded.getexif())  # downscaled, camera and GPS data gone
    screenshot(page, "chat-vision-reply")
    assert not dashboard.tracebacks()


def test_the_raw_popover_fits_above_the_chat_input(page: Page, dashboard: DashboardServer,
                                                   fresh_standin: StandinServer) -> None:
    page.set_viewport_size(DESK)
    fresh_standin.state.configure(tokens_per_second=500, reply_tokens=200)
    goto(page, dashboard, "/chat")
    ask(page, "a long answer please")
    expect(replies(page).last).to_contain_text("END.", timeout=20_000)
    wait_for_app(page)
    replies(page).last.get_by_role("button", name="Raw").click()
    body = page.get_by_test_id("stPopoverBody")
    expect(body.get_by_text('"eval_count": 200')).to_be_visible(timeout=10_000)
    box, chat_input = body.bounding_box(), page.get_by_test_id("stChatInput").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= DESK["height"]
    assert box["y"] + box["height"] <= chat_input["y"] or box["y"] >= chat_input["y"] + chat_input["height"]
    screenshot(page, "chat-raw-popover")


def test_save_as_model_shows_progress_and_lists_the_model(page: Page, dashboard: DashboardServer,
                                                          fresh_standin: StandinServer) -> None:
    page.set_viewport_size(DESK)
    fresh_standin.state.configure(create_step_s=0.6)
    goto(page, dashboard, "/chat")
    page.get_by_text("Save as model", exact=True).first.click()
    wait_for_app(page)
    name = page.locator(".st-key-chat-save-name input")
    name.fill("team/fiches-fr:v1")
    name.press("Enter")
    wait_for_app(page)
    expect(page.get_by_text("FROM llama3.2:1b")).to_be_visible()
    keyed(page, "chat-save-go").click()
    expect(page.get_by_text("using existing layer").first).to_be_visible(timeout=10_000)
    time.sleep(0.3)  # a frame with a few statuses listed, for the screenshot only (nothing is asserted on time)
    screenshot(page, "chat-save-as-model-progress")
    expect(page.get_by_text("Saved as")).to_be_visible(timeout=20_000)
    name.fill("team/fiches-fr:v1")
    name.press("Enter")
    wait_for_app(page)
    expect(page.get_by_text("already exists on local")).to_be_visible()
    expect(keyed(page, "chat-save-replace_go")).to_contain_text("Replace team/fiches-fr:v1")
    goto(page, dashboard, "/models")
    expect(page.get_by_test_id("stMetric").filter(has_text="Installed models")
           .get_by_test_id("stMetricValue")).to_have_text("5")
    assert "team/fiches-fr:v1" in fresh_standin.state.models
    assert not dashboard.tracebacks()
