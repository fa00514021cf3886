"""The chat page through Streamlit's AppTest: the real app script, the real client, the loopback stand-in."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from services.chat.conversation import Conversation
from tests.standin import StandinServer

CHAT = "pages/chat.py"
# The chat page draws its panels' widgets only while they are open.
PANELS = {"chat.params_open": True, "chat.save_open": True, "chat.menu_open": True}


def send(at: AppTest, text: str) -> AppTest:
    return at.chat_input(key="chat.input").set_value(text).run()


def conversation(at: AppTest, owner: str = "local") -> Conversation:
    """The branch the page shows, read back from the store (what a reload would show)."""
    from components import runtime

    stored = runtime.chat_store().get(owner, at.session_state["chat.conversation_id"])
    assert stored is not None
    return stored.conversation()


def page_text(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
                     + [w.value for w in at.warning] + [i.value for i in at.info])


def assert_no_html(at: AppTest) -> None:
    assert all(not m.allow_html for m in at.markdown), "model text must never be rendered as HTML"


def test_model_picker_lists_installed_chat_models(open_page: Callable[..., AppTest]) -> None:
    at = open_page(CHAT, session_state=PANELS)
    assert not at.exception
    assert at.selectbox(key="chat.model").options == ["llama3.2:1b", "qwen3:0.6b", "phi3:mini"]


def test_a_reply_streams_with_stats_that_match_ollamas_counters(
    open_page: Callable[..., AppTest], app_env: StandinServer
) -> None:
    at = send(open_page(CHAT, session_state=PANELS), "Describe a red evening dress")
    assert not at.exception
    user, reply = conversation(at).turns
    assert user.content == "Describe a red evening dress"
    assert reply.status == "complete" and reply.content.endswith("END.")
    assert reply.stats["eval_count"] == 30
    assert reply.stats["tokens_per_second"] == pytest.approx(
        reply.stats["eval_count"] / reply.stats["eval_duration"] * 1e9)
    assert reply.digest == app_env.state.models["llama3.2:1b"]["digest"]
    assert "tokens/s" in page_text(at) and "first token" in page_text(at)
    assert_no_html(at)


def test_presets_set_the_options_that_are_sent(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    at = open_page(CHAT, session_state=PANELS)
    at.segmented_control(key="chat.preset").set_value("classification").run()
    assert (at.slider(key="chat.temperature").value, at.slider(key="chat.top_p").value,
            at.number_input(key="chat.top_k").value) == (0.1, 0.5, 10)
    at.number_input(key="chat.seed").set_value(7).run()
    send(at, "Classify: red dress")
    options = app_env.state.requests_to("/api/chat")[-1]["body"]["options"]
    assert options == {"temperature": 0.1, "top_p": 0.5, "top_k": 10, "seed": 7}
    at.slider(key="chat.temperature").set_value(0.3).run()
    assert at.segmented_control(key="chat.preset").value == "custom"


def test_multi_turn_history_is_sent_back(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    at = open_page(CHAT, session_state=PANELS)
    at.text_area(key="chat.system").set_value("Answer in French.").run()
    send(at, "first")
    send(at, "second")
    messages = app_env.state.requests_to("/api/chat")[-1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "Answer in French." and messages[2]["content"].endswith("END.")
    assert len(conversation(at).turns) == 4


def test_model_output_is_never_html_nor_an_image(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    app_env.state.configure(replies={"payload": "<script>alert(1)</script> ![x](https://evil.example/x.png) "
                                                "[y](javascript:alert(2)) costs $5"})
    at = send(open_page(CHAT, session_state=PANELS), "payload please")
    rendered = at.markdown[-1].value if "costs" in at.markdown[-1].value else page_text(at)
    assert "\\<script>" in rendered and "!\\[x]" in rendered and "](javascript" not in rendered
    assert "\\$5" in rendered
    assert_no_html(at)


def test_thinking_is_shown_apart_and_collapsed(open_page: Callable[..., AppTest]) -> None:
    at = open_page(CHAT, session_state=PANELS)
    at.selectbox(key="chat.model").set_value("qwen3:0.6b").run()
    send(at, "think about it")
    reply = conversation(at).turns[-1]
    assert reply.thinking.startswith("Let me think") and "think" not in reply.content
    at.run()  # history rendering
    thinking = [e for e in at.expander if e.label == "Thinking"]
    assert thinking and not thinking[0].proto.expanded


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("inband", "The model failed while answering"), ("cut", "was cut off"), ("cut_close", "was cut off"),
     ("stall", "is not answering"), ("no_done", "was cut off")],
)
def test_faults_after_tokens_keep_the_partial_reply(
    open_page: Callable[..., AppTest], app_env: StandinServer, fault: str, expected: str
) -> None:
    at = send(open_page(CHAT, session_state=PANELS), "first question")
    app_env.state.configure(fault=fault, fault_after=4, stall_s=4)
    at = send(at, "second question")
    assert not at.exception
    turns = conversation(at).turns
    assert len(turns) == 4 and turns[1].status == "complete"
    partial = "".join(f"t{i:04d} " for i in range(1, 30)) + "END." if fault == "no_done" else "t0001 t0002 t0003 t0004 "
    assert turns[3].status == "error" and turns[3].content == partial
    assert expected in turns[3].error and expected in page_text(at)


def test_busy_backend_says_so(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    app_env.state.configure(fault="busy")
    at = send(open_page(CHAT, session_state=PANELS), "hello")
    assert "is busy" in page_text(at) and not at.exception
    assert conversation(at).turns[0].content == "hello"


def test_a_model_deleted_mid_session_explains_itself(
    open_page: Callable[..., AppTest], app_env: StandinServer
) -> None:
    at = send(open_page(CHAT, session_state=PANELS), "hello")
    del app_env.state.models["llama3.2:1b"]
    at.session_state["chat.input"] = None
    from components import session

    session.refresh_backend_caches()
    at = send(at.run(), "still there?")
    assert "(not installed)" in at.selectbox(key="chat.model").format_func("llama3.2:1b")
    assert "Model not found" in page_text(at)
    assert conversation(at).turns[1].status == "complete"


def test_a_cold_load_is_reported_as_such(open_page: Callable[..., AppTest], app_env: StandinServer) -> None:
    app_env.state.configure(load_delay_s=1.0)
    at = send(open_page(CHAT, session_state=PANELS), "wake up")
    assert "cold start: model load 1." in page_text(at)


def test_long_prompt_works_and_empty_prompt_is_refused(
    open_page: Callable[..., AppTest], app_env: StandinServer
) -> None:
    at = send(open_page(CHAT, session_state=PANELS), "x" * 20_000)
    assert conversation(at).turns[-1].status == "complete"
    assert len(app_env.state.requests_to("/api/chat")[-1]["body"]["messages"][0]["content"]) == 20_000
    at = send(at, "   ")
    assert "Type a message first" in page_text(at)
    assert len(conversation(at).turns) == 2


def test_backend_down_shows_what_to_do_and_no_traceback(
    open_page: Callable[..., AppTest], app_env: StandinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    at = open_page(CHAT, session_state=PANELS)
    assert not at.exception
    shown = page_text(at).replace("\\", "")  # labels are Markdown-escaped; the browser shows them plain
    assert "Ollama is not reachable at http://127.0.0.1:9" in shown and "Connection refused" in shown
    assert at.chat_input(key="chat.input").disabled


def test_a_new_conversation_keeps_the_previous_one(open_page: Callable[..., AppTest]) -> None:
    at = send(open_page(CHAT, session_state=PANELS), "hello")
    assert at.session_state["chat.conversation_id"]
    assert [b.label for b in at.download_button] == ["Export Markdown", "Export JSON"]
    at = at.sidebar.button(key="chat.new").click().run()
    assert at.session_state["chat.conversation_id"] is None and not at.chat_message
    assert at.sidebar.radio(key="chat.list").value is None and len(at.sidebar.radio(key="chat.list").options) == 1
    assert at.sidebar.radio(key="chat.list").options[0].startswith("hello")


def test_a_viewer_cannot_chat_even_by_calling_the_page(app_env: StandinServer) -> None:
    from components.session import IDENTITY_KEY, Identity

    at = AppTest.from_function(_run_chat_page_directly, default_timeout=30)
    at.session_state[IDENTITY_KEY] = Identity(subject="wall-1", role="viewer")
    at.run()
    assert not at.exception
    assert not at.chat_input  # the router took over: a viewer's navigation has no chat page
    assert not app_env.state.requests_to("/api/chat")


def _run_chat_page_directly() -> None:
    """The page script itself, with no router in front (Streamlit's pages/ discovery): its gate hands over to
    the router, which never runs the chat page for a viewer."""
    import runpy

    runpy.run_path("pages/chat.py")
