"""Kept conversations through AppTest: the real app script and store, the loopback stand-in, two people, two tabs."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from components import runtime
from components.session import IDENTITY_KEY, Identity
from services.access.audit import AuditLog
from services.chat.tree import StoredConversation
from services.db import Database
from tests.standin import StandinServer

pytestmark = pytest.mark.timeout(120)
CHAT = "pages/chat.py"
# The chat page draws its panels' widgets only while they are open.
PANELS = {"chat.params_open": True, "chat.save_open": True, "chat.menu_open": True}
ROOT = Path(__file__).resolve().parents[2]
OpenPage = Callable[..., AppTest]


def send(at: AppTest, text: str) -> AppTest:
    return at.chat_input(key="chat.input").set_value(text).run()


def stored(at: AppTest, owner: str = "local") -> StoredConversation:
    conversation = runtime.chat_store().get(owner, at.session_state["chat.conversation_id"])
    assert conversation is not None
    return conversation


def shown(at: AppTest) -> list[str]:
    """What the chat messages on the page say, in order."""
    return [" ".join(m.value for m in message.markdown) for message in at.chat_message]


def listed(at: AppTest) -> list[str]:
    """The titles in the sidebar's conversation list, in order."""
    lists = [r for r in at.sidebar.radio if r.key == "chat.list"]
    return [option.split("  \n")[0].replace("\\", "") for option in lists[0].options] if lists else []


def alerts(at: AppTest) -> str:
    return "\n".join(e.value for kind in ("error", "warning", "info", "success") for e in getattr(at, kind))


def reopen(query: dict[str, str], identity: Identity | None = None) -> AppTest:
    """A new browser session (a reload, another browser) on the chat page's address."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    for key, value in PANELS.items():
        at.session_state[key] = value
    if identity is not None:
        at.session_state[IDENTITY_KEY] = identity
    at.run()
    at.switch_page(CHAT)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def test_a_reload_reopens_the_open_conversation_with_its_settings(open_page: OpenPage) -> None:
    at = open_page(CHAT, session_state=PANELS)
    at.text_area(key="chat.system").set_value("Réponds en français.").run()
    at.slider(key="chat.temperature").set_value(0.3).run()
    at = send(at, "Décris une robe de soirée rouge")
    cid = at.session_state["chat.conversation_id"]
    assert at.query_params["c"] in (cid, [cid])
    again = reopen({"c": cid})
    assert not again.exception
    assert shown(again)[0] == "Décris une robe de soirée rouge" and shown(again)[1].endswith("END.")
    assert again.subheader[0].value.replace("\\", "") == "Décris une robe de soirée rouge"
    assert again.text_area(key="chat.system").value == "Réponds en français."
    assert again.slider(key="chat.temperature").value == 0.3
    assert listed(again) == ["Décris une robe de soirée rouge"]
    assert again.sidebar.radio(key="chat.list").value == cid


def test_a_deleted_conversation_opened_from_an_old_link_says_so(open_page: OpenPage) -> None:
    at = send(open_page(CHAT, session_state=PANELS), "a secret recipe for a product page")
    cid = at.session_state["chat.conversation_id"]
    at = at.button(key=f"chat.delete.{cid}").click().run()
    at = at.button(key=f"chat.delete.yes.{cid}").click().run()
    assert "The conversation was deleted." in alerts(at)
    assert at.session_state["chat.conversation_id"] is None and "c" not in at.query_params
    [entry] = AuditLog(Database.in_dir(Path(os.environ["DASHBOARD_DATA_DIR"]))).query(action="delete_conversation")
    assert entry.who == "local" and cid in entry.detail and "2 messages" in entry.detail
    assert "secret recipe" not in f"{entry.model} {entry.outcome} {entry.detail}"  # who and what, never the content
    old_link = reopen({"c": cid})
    assert not old_link.exception
    assert "The conversation at this link was deleted on" in alerts(old_link)
    assert not old_link.chat_message and "c" not in old_link.query_params


def test_only_the_owner_sees_a_conversation_admins_included(app_env: StandinServer) -> None:
    ana = reopen({}, Identity("ana", "operator"))
    ana = send(ana, "ana's private prompt")
    cid = ana.session_state["chat.conversation_id"]
    for other in (Identity("root", "admin"), Identity("bob", "operator")):
        at = reopen({"c": cid}, other)
        assert not at.exception
        assert not at.chat_message and "ana's private prompt" not in shown(at)
        assert "never existed, or it belongs to someone else" in alerts(at)
        assert "ana's private prompt" not in listed(at)
        at.sidebar.text_input(key="chat.search").set_value("private").run()
        assert listed(at) == []


def test_search_rename_and_a_10_kb_title(open_page: OpenPage) -> None:
    at = send(open_page(CHAT, session_state=PANELS), "Lampe de chevet en laiton")
    first = at.session_state["chat.conversation_id"]
    at = at.sidebar.button(key="chat.new").click().run()
    at = send(at, "Casserole en inox")
    second = at.session_state["chat.conversation_id"]
    assert listed(at) == ["Casserole en inox", "Lampe de chevet en laiton"]
    at.sidebar.text_input(key="chat.search").set_value("laiton").run()
    assert listed(at) == ["Lampe de chevet en laiton"]
    at.text_input(key=f"chat.title.{second}").set_value("t" * 10_240).run()
    at = at.button(key=f"chat.rename.{second}").click().run()
    assert "A title is at most 120 characters; this one has 10,240." in alerts(at)
    assert stored(at).title == "Casserole en inox" and not at.exception
    at.text_input(key=f"chat.title.{second}").set_value("Casserole 20 cm").run()
    at = at.button(key=f"chat.rename.{second}").click().run()
    assert stored(at).title == "Casserole 20 cm"
    at.sidebar.text_input(key="chat.search").set_value("").run()
    at = at.sidebar.radio(key="chat.list").set_value(first).run()
    assert shown(at)[0] == "Lampe de chevet en laiton"


def test_regenerate_and_edit_keep_the_earlier_branch(open_page: OpenPage, app_env: StandinServer) -> None:
    app_env.state.configure(replies={"lamp": "A brass lamp."})
    at = send(open_page(CHAT, session_state=PANELS), "Describe a lamp")
    reply = stored(at).path()[-1]
    app_env.state.configure(replies={"lamp": "A linen lamp."})
    at = at.button(key=f"chat.regen.{reply.id}").click().run()
    assert shown(at)[-1] == "A linen lamp."
    newer = stored(at).path()[-1]
    assert stored(at).siblings(newer.id) == [reply.id, newer.id]
    at = at.button(key=f"chat.prev.{newer.id}").click().run()
    assert shown(at)[-1] == "A brass lamp."
    prompt = stored(at).path()[0]
    at = at.button(key=f"chat.edit.{prompt.id}").click().run()
    at.text_area(key=f"chat.edit_text.{prompt.id}").set_value("Describe a chair").run()
    at = at.button(key=f"chat.edit_send.{prompt.id}").click().run()
    assert shown(at)[0] == "Describe a chair"
    assert len(stored(at).messages) == 5  # nothing was overwritten: 2 prompts, 3 replies
    assert app_env.state.requests_to("/api/chat")[-1]["body"]["messages"] == [
        {"role": "user", "content": "Describe a chair"}]
    edited = stored(at).path()[0]
    at = at.button(key=f"chat.prev.{edited.id}").click().run()
    assert shown(at)[0] == "Describe a lamp"


def test_two_tabs_of_one_person_do_not_erase_each_other(open_page: OpenPage) -> None:
    tab_a = send(open_page(CHAT, session_state=PANELS), "first question")
    cid = tab_a.session_state["chat.conversation_id"]
    tab_b = reopen({"c": cid})  # the same conversation in a second tab, drawn before tab A goes on
    tab_a = send(tab_a, "from tab A")
    tab_b = send(tab_b, "from tab B")  # tab B saves after A without having seen A's exchange
    conversation = stored(tab_b)
    contents = [t.content for t in conversation.messages.values() if t.role == "user"]
    assert contents == ["first question", "from tab A", "from tab B"]
    assert len(conversation.messages) == 6
    tab_a.run()
    assert [s for s in shown(tab_a) if not s.endswith("END.")] == ["first question", "from tab A", "from tab B"]


def test_a_10_kb_first_prompt_makes_a_short_title(open_page: OpenPage) -> None:
    at = send(open_page(CHAT, session_state=PANELS), "Décris " + "une robe longue " * 640)
    assert len(stored(at).title) <= 61 and stored(at).title.startswith("Décris une robe longue")


def test_an_empty_conversation_offers_the_catalogue_tasks(open_page: OpenPage, app_env: StandinServer) -> None:
    at = open_page(CHAT, session_state=PANELS)
    starters = [b for b in at.button if (b.key or "").startswith("chat.starter.")]
    assert len(starters) == 5 and "Description de robe (FR)" in [b.label for b in starters]
    at = at.button(key="chat.starter.2").click().run()  # classification: its preset comes with it
    body = app_env.state.requests_to("/api/chat")[-1]["body"]
    assert body["messages"][-1]["content"].startswith("Classify this product in the Google product taxonomy")
    assert body["options"] == {"temperature": 0.1, "top_p": 0.5, "top_k": 10}
    assert not [b for b in at.button if (b.key or "").startswith("chat.starter.")]


def test_with_the_backend_down_the_input_says_what_is_wrong(open_page: OpenPage,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    at = open_page(CHAT, session_state=PANELS)
    assert at.chat_input(key="chat.input").placeholder == "The backend is not reachable"
    assert "Choose a model" not in at.chat_input(key="chat.input").placeholder


def picture(size: tuple[int, int] = (640, 480), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 20, 30) if mode == "RGB" else 1).save(out, fmt)
    return out.getvalue()


def huge_png() -> bytes:
    """A real 10,000 x 10,000 PNG (one bit per pixel, so it is small on disk and 100 megapixels decoded)."""
    return picture((10_000, 10_000), "PNG", mode="1")


def test_a_picture_reaches_a_vision_model_and_is_kept(open_page: OpenPage, app_env: StandinServer) -> None:
    app_env.state.apply_profile("vision")
    at = open_page(CHAT, session_state=PANELS)
    at.selectbox(key="chat.model").set_value("gemma3:4b").run()
    at.chat_input(key="chat.input").upload("robe.png", picture(), "image/png")
    at = send(at, "Décris ce produit")
    assert not at.exception and not at.error
    [sent] = app_env.state.requests_to("/api/chat")[-1]["body"]["messages"]
    assert sent["content"] == "Décris ce produit" and len(sent["images"]) == 1
    assert shown(at)[-1].startswith("[picture 1: JPEG 640x480, mostly #c8141")  # the stand-in saw it intact
    assert len(at.chat_message[0].get("image")) == 1  # the thumbnail in the conversation
    again = reopen({"c": at.session_state["chat.conversation_id"]})
    assert len(again.chat_message[0].get("image")) == 1


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("huge.png", None, "10,000 × 10,000 pixels (100 megapixels)"),
    ("cut.jpg", picture((800, 600), "JPEG")[:4_000], "damaged or incomplete"),
    ("invoice.png", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "is a PDF document, not a picture"),
    ("logo.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "is an SVG drawing"),
])
def test_bad_pictures_are_refused_before_anything_is_sent(open_page: OpenPage, app_env: StandinServer, name: str,
                                                          data: bytes | None, expected: str) -> None:
    data = huge_png() if data is None else data
    app_env.state.apply_profile("vision")
    at = open_page(CHAT, session_state=PANELS)
    at.selectbox(key="chat.model").set_value("gemma3:4b").run()
    at.chat_input(key="chat.input").upload(name, data, "image/png")
    at = send(at, "describe")
    assert expected in alerts(at)
    assert not app_env.state.requests_to("/api/chat")
    assert runtime.chat_store().count("local") == 0


def test_pictures_are_not_sent_to_a_model_without_vision(open_page: OpenPage, app_env: StandinServer) -> None:
    app_env.state.apply_profile("vision")
    at = open_page(CHAT, session_state=PANELS)
    assert at.chat_input(key="chat.input").proto.accept_file == 0  # llama3.2:1b: attaching is off
    assert "text only: it has no vision capability" in at.chat_input(key="chat.input").placeholder
    at.selectbox(key="chat.model").set_value("gemma3:4b").run()
    at.chat_input(key="chat.input").upload("robe.png", picture(), "image/png")
    at = send(at, "describe")
    before = len(app_env.state.requests_to("/api/chat"))
    at.selectbox(key="chat.model").set_value("llama3.2:1b").run()  # the conversation holds a picture now
    at = send(at, "and now?")
    assert "llama3.2:1b cannot read pictures (it has no vision capability)" in alerts(at)
    assert len(app_env.state.requests_to("/api/chat")) == before
    assert len(stored(at).messages) == 2


def test_retention_applies_to_the_list_and_to_old_links(open_page: OpenPage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_CHAT_RETENTION_DAYS", "1")
    at = send(open_page(CHAT, session_state=PANELS), "soon too old")
    old = at.session_state["chat.conversation_id"]
    database = Database.in_dir(Path(os.environ["DASHBOARD_DATA_DIR"]))
    database.execute("UPDATE chat_conversations SET updated_at = updated_at - 2 * 86400 WHERE id = ?", (old,))
    runtime.chat_store().purge()  # what the hourly pass does
    again = reopen({"c": old})
    assert "was removed by the retention policy (no activity for 1 day)" in alerts(again)
    assert "soon too old" not in listed(again)
