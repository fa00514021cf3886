"""Chat playground: talk to any installed model with honest speed figures; conversations are kept per person,
pictures go to vision models, and a setup that works can be saved as a model."""

from __future__ import annotations

from typing import Any

import streamlit as st

from components import chat as chat_view
from components import chat_area, save_model, session
from components import chat_history as history_view
from components.router import enter_page
from services.chat.tree import StoredConversation
from services.errors import DashboardError, InvalidInput, user_message
from services.ollama.options import CUSTOM, PRESETS, GenerationOptions, parse_stop_sequences, preset_for
from services.safe_text import plain_label

identity = enter_page("chat")
owner = identity.subject
store = chat_view.chat_store()

PRESET_KEY = "chat.preset"
OPTION_KEYS = ("temperature", "top_p", "top_k", "num_predict", "num_ctx", "repeat_penalty", "seed")
DEFAULTS = {"chat.temperature": 0.7, "chat.top_p": 0.9, "chat.top_k": 40, PRESET_KEY: "enrichment",
            "chat.num_predict": None, "chat.num_ctx": None, "chat.repeat_penalty": None, "chat.seed": None,
            "chat.stop": "", "chat.system": ""}


def _apply_preset() -> None:
    for option, value in PRESETS.get(st.session_state.get(PRESET_KEY) or "", {}).items():
        st.session_state[f"chat.{option}"] = value


def _use_preset(name: str) -> None:
    st.session_state[PRESET_KEY] = name
    _apply_preset()


def _mark_preset() -> None:
    st.session_state[PRESET_KEY] = preset_for(st.session_state.get("chat.temperature"),
                                              st.session_state.get("chat.top_p"), st.session_state.get("chat.top_k"))


def _apply_conversation(stored: StoredConversation) -> None:
    """Opening a conversation brings back its model, system prompt and the options of its last reply."""
    st.session_state.pop(chat_area.EDITING_KEY, None)
    st.session_state["chat.system"] = stored.system_prompt
    if stored.model:
        st.session_state["chat.model"] = stored.model
    replies = [t for t in stored.path() if t.role == "assistant" and t.options]
    if replies:
        used = replies[-1].options
        for option in OPTION_KEYS:
            st.session_state[f"chat.{option}"] = used.get(option, DEFAULTS.get(f"chat.{option}"))
        st.session_state["chat.stop"] = "\n".join(s.replace("\n", "\\n") for s in used.get("stop", []))
        _mark_preset()


def _open(cid: str) -> None:
    stored = store.get(owner, cid)
    history_view.show(cid if stored else None)
    if stored is not None:
        _apply_conversation(stored)


def _new() -> None:
    history_view.show(None)
    st.session_state.pop(chat_area.EDITING_KEY, None)


def _options() -> GenerationOptions:
    return GenerationOptions(
        temperature=st.session_state["chat.temperature"], top_p=st.session_state["chat.top_p"],
        top_k=int(st.session_state["chat.top_k"]), num_predict=st.session_state.get("chat.num_predict"),
        num_ctx=st.session_state.get("chat.num_ctx"), repeat_penalty=st.session_state.get("chat.repeat_penalty"),
        seed=st.session_state.get("chat.seed"), stop=parse_stop_sequences(st.session_state.get("chat.stop", "")),
    ).validate()


# ---- which conversation, the sidebar list ---------------------------------------------------------------
for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)
stored = history_view.resolve(store, owner, _apply_conversation)
history_view.render_sidebar(store, owner, stored.id if stored else None, _open, _new)
backend = session.current_backend()

if stored is None:
    st.title("Chat playground", anchor=False)
else:  # a conversation's own title: a header, so a long one does not push the conversation down
    st.subheader(plain_label(stored.title, 120), anchor=False)
models_error = ""
try:
    installed = session.installed_models(backend)
except DashboardError as exc:
    installed, models_error = [], user_message(exc)
digests = {m.name: m.digest for m in installed}
names = [m.name for m in installed if "embedding" not in m.capabilities]
chosen = st.session_state.get("chat.model")
if chosen and chosen not in names:
    names.append(chosen)  # keep a vanished model visible: sending to it explains what happened
reachable = session.backend_health(backend).reachable

top = st.columns([4, 5, 2], vertical_alignment="bottom")
model = top[0].selectbox(
    "Model", names, key="chat.model",
    placeholder="Model list unavailable" if models_error else "No models installed" if not names else "Choose a model",
    format_func=lambda n: n if n in digests else f"{n} (not installed)",
)
top[1].segmented_control(
    "Preset", [*PRESETS, CUSTOM], key=PRESET_KEY, required=True, on_change=_apply_preset, format_func=str.capitalize,
    help="The seed's presets: classification 0.1/0.5/10, enrichment 0.7/0.9/40, creative 1.0/0.95/50.",
)
# Menus and panels draw their widgets only while open: every rerun (a sent message is one) stays light.
menu = top[2].popover("Conversation", icon=":material/forum:", width="stretch", key="chat.menu_open",
                      on_change="rerun")


def _exports(kind: str) -> Any:
    """The export of the branch shown, built only when the button is clicked (not on every rerun)."""
    def build() -> str:
        fresh = store.get(owner, stored.id) if stored else None
        if fresh is None:
            return ""
        path = fresh.conversation()
        info = store.picture_info(owner, fresh.id)
        data = chat_area.encoded_pictures(store, owner, fresh.id, path.turns)
        pictures = {k: {"name": v.name, "mime": v.mime, "width": v.width, "height": v.height,
                        **({"data_base64": data[k]} if kind == "json" and k in data else {})}
                    for k, v in info.items()}
        if kind == "json":
            return path.to_json(title=fresh.title, pictures=pictures, exported_by=owner)
        return path.to_markdown(title=fresh.title, pictures=pictures)
    return build


if menu.open:
    with menu:
        history_view.render_menu(store, owner, stored, {"markdown": _exports("markdown"), "json": _exports("json")},
                                 on_deleted=lambda: st.session_state.pop(chat_area.EDITING_KEY, None))

capabilities = chat_view.model_capabilities(backend, model, installed)


def _save_system() -> None:
    if stored is not None:
        store.update_settings(owner, stored.id, system_prompt=st.session_state.get("chat.system", ""))


def _parameters_label() -> str:
    """The closed panel still says what will be sent."""
    parts = [f"temperature {st.session_state['chat.temperature']:g}", f"top_p {st.session_state['chat.top_p']:g}",
             f"top_k {st.session_state['chat.top_k']}"]
    extra = sum(st.session_state.get(f"chat.{k}") is not None for k in ("num_predict", "num_ctx", "repeat_penalty",
                                                                         "seed"))
    if extra or (st.session_state.get("chat.stop") or "").strip():
        parts.append("more options set")
    if (st.session_state.get("chat.system") or "").strip():
        parts.append("system prompt set")
    return "Parameters and system prompt · " + " · ".join(parts)


params = st.expander(_parameters_label(), icon=":material/tune:", key="chat.params_open", on_change="rerun")
if params.open:
    with params:
        keep = "session"  # the values stay while the panel is closed
        st.text_area("System prompt", key="chat.system", on_change=_save_system, persist_state=keep,
                     placeholder="Optional. Replaces the model's own system prompt.")
        cols = st.columns(3)
        cols[0].slider("Temperature", 0.0, 2.0, step=0.05, key="chat.temperature", on_change=_mark_preset,
                       persist_state=keep)
        cols[1].slider("top_p", 0.0, 1.0, step=0.05, key="chat.top_p", on_change=_mark_preset, persist_state=keep)
        cols[2].number_input("top_k", 1, 1000, step=1, key="chat.top_k", on_change=_mark_preset, persist_state=keep)
        cols = st.columns(4)
        cols[0].number_input("Max tokens (num_predict)", -1, 1_000_000, step=64, key="chat.num_predict",
                             placeholder="model default", help="-1 means no limit.", persist_state=keep)
        cols[1].number_input("Context (num_ctx)", 256, 2_097_152, step=1024, key="chat.num_ctx",
                             placeholder="model default", persist_state=keep,
                             help="Only sent when set. A value different from the loaded model's reloads it.")
        cols[2].number_input("repeat_penalty", 0.0, 5.0, step=0.05, key="chat.repeat_penalty",
                             placeholder="model default", persist_state=keep)
        cols[3].number_input("Seed", 0, 2**31 - 1, step=1, key="chat.seed", placeholder="random",
                             help="Set it to make replies reproducible.", persist_state=keep)
        st.text_area("Stop sequences (one per line)", key="chat.stop", height=68, persist_state=keep)

saving = st.expander("Save as model", icon=":material/save_as:", key="chat.save_open", on_change="rerun")
if saving.open:
    with saving:
        try:
            current_options = _options().to_ollama()
        except InvalidInput as exc:
            st.error(str(exc), icon=":material/edit_off:")
        else:
            save_model.render(backend, model if model in digests else None, st.session_state.get("chat.system", ""),
                              current_options, list(digests), "chat.model")


# ---- the conversation: a fragment, so sending reruns it alone ----------------------------------------------
chat_area.conversation(chat_area.ChatSetup(
    store=store, owner=owner, model=model, digests=digests, capabilities=capabilities, names=tuple(names),
    models_error=models_error, reachable=reachable, options=_options, apply_preset=_use_preset))
