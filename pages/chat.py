"""Chat playground: talk to any installed model, with honest speed figures."""

from __future__ import annotations

import streamlit as st

from components import chat as chat_view
from components import session
from components.router import enter_page
from services.chat.conversation import Conversation, validate_prompt
from services.errors import DashboardError, user_message
from services.ollama.options import CUSTOM, PRESETS, GenerationOptions, parse_stop_sequences, preset_for
from services.ollama.stream import stream_updates

enter_page("chat")

CONVERSATION_KEY = "chat.conversation"
PRESET_KEY = "chat.preset"
DEFAULTS = {"chat.temperature": 0.7, "chat.top_p": 0.9, "chat.top_k": 40, PRESET_KEY: "enrichment"}


def _apply_preset() -> None:
    name = st.session_state.get(PRESET_KEY)
    for option, value in PRESETS.get(name or "", {}).items():
        st.session_state[f"chat.{option}"] = value


def _mark_preset() -> None:
    st.session_state[PRESET_KEY] = preset_for(
        st.session_state.get("chat.temperature"), st.session_state.get("chat.top_p"),
        st.session_state.get("chat.top_k"),
    )


def _clear(conversation: Conversation) -> None:
    conversation.clear()


for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)
conversation: Conversation = st.session_state.setdefault(CONVERSATION_KEY, Conversation())
backend = session.current_backend()

st.title("Chat playground", anchor=False)

models_error = ""
try:
    models = session.installed_models(backend)
except DashboardError as exc:
    models, models_error = [], user_message(exc)
digests = {m.name: m.digest for m in models}
names = [m.name for m in models if "embedding" not in m.capabilities]
chosen = st.session_state.get("chat.model")
if chosen and chosen not in names:
    names.append(chosen)  # keep a vanished model visible: sending to it explains what happened

top = st.columns([4, 5, 2], vertical_alignment="bottom")
model = top[0].selectbox(
    "Model", names, key="chat.model",
    placeholder="Model list unavailable" if models_error else "No models installed" if not names else "Choose a model",
    format_func=lambda n: n if n in digests else f"{n} (not installed)",
)
top[1].segmented_control(
    "Preset", [*PRESETS, CUSTOM], key=PRESET_KEY, required=True, on_change=_apply_preset,
    format_func=str.capitalize,
    help="The seed's presets: classification 0.1/0.5/10, enrichment 0.7/0.9/40, creative 1.0/0.95/50.",
)
with top[2].popover("Conversation", icon=":material/forum:", width="stretch"):
    st.download_button("Export Markdown", conversation.to_markdown(), file_name="conversation.md",
                       mime="text/markdown", icon=":material/download:", disabled=not conversation.turns,
                       width="stretch")
    st.download_button("Export JSON", conversation.to_json(), file_name="conversation.json",
                       mime="application/json", icon=":material/download:", disabled=not conversation.turns,
                       width="stretch", help="With model, digest, options and timings.")
    st.button("Clear conversation", icon=":material/delete_sweep:", on_click=_clear, args=(conversation,),
              disabled=not conversation.turns, width="stretch")

with st.expander("Parameters and system prompt", icon=":material/tune:"):
    conversation.system_prompt = st.text_area(
        "System prompt", key="chat.system",
        placeholder="Optional. Replaces the model's own system prompt.",
    )
    cols = st.columns(3)
    cols[0].slider("Temperature", 0.0, 2.0, step=0.05, key="chat.temperature", on_change=_mark_preset)
    cols[1].slider("top_p", 0.0, 1.0, step=0.05, key="chat.top_p", on_change=_mark_preset)
    cols[2].number_input("top_k", 1, 1000, step=1, key="chat.top_k", on_change=_mark_preset)
    cols = st.columns(4)
    cols[0].number_input("Max tokens (num_predict)", -1, 1_000_000, value=None, step=64,
                         key="chat.num_predict", placeholder="model default", help="-1 means no limit.")
    cols[1].number_input("Context (num_ctx)", 256, 2_097_152, value=None, step=1024, key="chat.num_ctx",
                         placeholder="model default",
                         help="Only sent when set. A value different from the loaded model's reloads it.")
    cols[2].number_input("repeat_penalty", 0.0, 5.0, value=None, step=0.05, key="chat.repeat_penalty",
                         placeholder="model default")
    cols[3].number_input("Seed", 0, 2**31 - 1, value=None, step=1, key="chat.seed", placeholder="random",
                         help="Set it to make replies reproducible.")
    st.text_area("Stop sequences (one per line)", key="chat.stop", height=68)

conversation.settle()
chat_view.render_history(conversation.turns)

if models_error and not session.backend_health(backend).reachable:
    st.info("Nothing can be sent until the backend is reachable again (see above).", icon=":material/info:")
elif models_error:
    st.info("The model list is unavailable, so nothing can be sent right now. " + models_error,
            icon=":material/info:")
elif not names:
    st.info("No models are installed on this backend. Pull one on the Models page, e.g. `llama3.2:1b`.",
            icon=":material/info:")

prompt = st.chat_input(
    f"Message {model}" if model else "Choose a model first",
    key="chat.input", disabled=not model or bool(models_error), submit_mode="disable",
)  # no max_chars: the browser would cut a long paste silently; validate_prompt says what the limit is
if prompt is not None and model:
    try:
        options = GenerationOptions(
            temperature=st.session_state["chat.temperature"], top_p=st.session_state["chat.top_p"],
            top_k=int(st.session_state["chat.top_k"]), num_predict=st.session_state.get("chat.num_predict"),
            num_ctx=st.session_state.get("chat.num_ctx"),
            repeat_penalty=st.session_state.get("chat.repeat_penalty"), seed=st.session_state.get("chat.seed"),
            stop=parse_stop_sequences(st.session_state.get("chat.stop", "")),
        ).validate()
        validate_prompt(prompt)
        session.require_role("operator", "chat with a model")  # checked again at the action itself
    except DashboardError as exc:
        st.error(user_message(exc), icon=":material/edit_off:")
    else:
        chat_view.render_turn(conversation.add_user(prompt))
        ollama_options = options.to_ollama()
        reply = conversation.start_assistant(model=model, digest=digests.get(model, ""), backend=backend.name,
                                             options=ollama_options)
        try:
            stream = session.get_client(backend).chat(model, conversation.messages_for_request(),
                                                      options=ollama_options)
        except DashboardError as exc:
            reply.status, reply.error = "error", user_message(exc)
        else:
            settings = session.get_settings()
            updates = stream_updates(stream, model=model, interval_s=settings.stream_interval_s,
                                     interval_per_char_s=settings.stream_interval_per_char_s)
            chat_view.stream_into(reply, updates)
        st.rerun()  # redraw the controls above (export, clear) with the finished turn
