"""Chat playground: talk to any installed model with honest speed figures; conversations are kept per person,
pictures go to vision models, and a setup that works can be saved as a model."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from components import chat as chat_view
from components import chat_history as history_view
from components import save_model, session
from components.router import enter_page
from services.chat.conversation import MAX_PROMPT_CHARS, ChatTurn, validate_prompt
from services.chat.starters import STARTERS, Starter
from services.chat.tree import StoredConversation, title_from_prompt
from services.errors import DashboardError, InvalidInput, user_message
from services.images import FILE_TYPES, MAX_UPLOAD_MB, clean_images, require_vision
from services.ollama.options import CUSTOM, PRESETS, GenerationOptions, parse_stop_sequences, preset_for
from services.ollama.stream import stream_updates
from services.safe_text import plain_label

identity = enter_page("chat")
owner = identity.subject
store = chat_view.chat_store()

PRESET_KEY = "chat.preset"
PENDING_KEY = "chat.pending"
EDITING_KEY = "chat.editing"
OPTION_KEYS = ("temperature", "top_p", "top_k", "num_predict", "num_ctx", "repeat_penalty", "seed")
DEFAULTS = {"chat.temperature": 0.7, "chat.top_p": 0.9, "chat.top_k": 40, PRESET_KEY: "enrichment",
            "chat.num_predict": None, "chat.num_ctx": None, "chat.repeat_penalty": None, "chat.seed": None,
            "chat.stop": "", "chat.system": ""}


@dataclass
class Pending:
    """A send asked for by a callback (chat input, starter, edit, regenerate), carried out by this run."""

    kind: str  # "new", "edit" or "regenerate"
    text: str = ""
    files: list[tuple[str, bytes]] = field(default_factory=list)
    parent_id: str | None = None  # the prompt's parent (new, edit) or the prompt a regenerated reply answers
    keep_pictures: list[str] = field(default_factory=list)
    start_new: bool = False


def _apply_preset() -> None:
    for option, value in PRESETS.get(st.session_state.get(PRESET_KEY) or "", {}).items():
        st.session_state[f"chat.{option}"] = value


def _mark_preset() -> None:
    st.session_state[PRESET_KEY] = preset_for(st.session_state.get("chat.temperature"),
                                              st.session_state.get("chat.top_p"), st.session_state.get("chat.top_k"))


def _apply_conversation(stored: StoredConversation) -> None:
    """Opening a conversation brings back its model, system prompt and the options of its last reply."""
    st.session_state.pop(EDITING_KEY, None)
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
    st.session_state.pop(EDITING_KEY, None)


def _queue_prompt() -> None:
    value = st.session_state.get("chat.input")
    if value is None:
        return
    text = value if isinstance(value, str) else (value.text or "")
    files = [] if isinstance(value, str) else [(f.name, f.getvalue()) for f in value.files or []]
    st.session_state[PENDING_KEY] = Pending("new", text=text, files=files)


def _queue_starter(starter: Starter) -> None:
    st.session_state[PRESET_KEY] = starter.preset
    _apply_preset()
    st.session_state[PENDING_KEY] = Pending("new", text=starter.prompt)


def _edit(message_id: str) -> None:
    st.session_state[EDITING_KEY] = message_id


def _regenerate(message_id: str) -> None:
    stored = store.get(owner, st.session_state.get(history_view.CONVERSATION_KEY) or "")
    turn = stored.messages.get(message_id) if stored else None
    if turn is not None and turn.parent_id:
        st.session_state[PENDING_KEY] = Pending("regenerate", parent_id=turn.parent_id)


def _choose(message_id: str) -> None:
    try:
        store.choose(owner, st.session_state.get(history_view.CONVERSATION_KEY) or "", message_id)
    except DashboardError as exc:
        history_view.notice("error", user_message(exc))


def _send_edit(turn: ChatTurn) -> None:
    st.session_state.pop(EDITING_KEY, None)
    st.session_state[PENDING_KEY] = Pending("edit", text=st.session_state.get(f"chat.edit_text.{turn.id}", ""),
                                            parent_id=turn.parent_id, keep_pictures=list(turn.images),
                                            start_new=turn.parent_id is None)


def _editor(turn: ChatTurn) -> None:
    st.text_area("Edit the prompt", value=turn.content, key=f"chat.edit_text.{turn.id}", max_chars=MAX_PROMPT_CHARS,
                 label_visibility="collapsed")
    bar = st.container(horizontal=True, gap="small")
    bar.button("Send", key=f"chat.edit_send.{turn.id}", type="primary", icon=":material/send:", on_click=_send_edit,
               args=(turn,), help="Sends the edited prompt; the original and its replies stay as a branch.")
    bar.button("Cancel", key=f"chat.edit_cancel.{turn.id}", on_click=lambda: st.session_state.pop(EDITING_KEY, None))


def _options() -> GenerationOptions:
    return GenerationOptions(
        temperature=st.session_state["chat.temperature"], top_p=st.session_state["chat.top_p"],
        top_k=int(st.session_state["chat.top_k"]), num_predict=st.session_state.get("chat.num_predict"),
        num_ctx=st.session_state.get("chat.num_ctx"), repeat_penalty=st.session_state.get("chat.repeat_penalty"),
        seed=st.session_state.get("chat.seed"), stop=parse_stop_sequences(st.session_state.get("chat.stop", "")),
    ).validate()


def _encoded(cid: str, turns: list[ChatTurn]) -> dict[str, str]:
    ids = [i for t in turns for i in t.images]
    return {k: base64.b64encode(v).decode("ascii") for k, v in store.pictures(owner, cid, ids).items()}


# ---- which conversation, the sidebar list ---------------------------------------------------------------
for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)
stored = history_view.resolve(store, owner, _apply_conversation)
history_view.render_sidebar(store, owner, stored.id if stored else None, _open, _new)
backend = session.current_backend()

st.title(plain_label(stored.title, 120) if stored else "Chat playground", anchor=False)
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
        data = _encoded(fresh.id, path.turns)
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
                                 on_deleted=lambda: st.session_state.pop(EDITING_KEY, None))

capabilities = chat_view.model_capabilities(backend, model, installed)
sees = "vision" in capabilities


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

history_view.render_notices()

# ---- the conversation ---------------------------------------------------------------------------------
pending: Pending | None = st.session_state.pop(PENDING_KEY, None)
base_leaf = stored.leaf_id if stored else None
if (pending is not None and pending.kind == "edit") or (pending is not None and pending.kind == "regenerate"):
    base_leaf = pending.parent_id
path = stored.path(base_leaf) if stored else []
if pending is not None and pending.kind == "edit" and pending.start_new:
    path = []
if stored is not None and any(t.status == "streaming" for t in path):
    store.settle([t.id for t in path if t.status == "streaming"], timeout_s=1.5)  # a Stop click is being saved
    stored = store.get(owner, stored.id)
    path = stored.path(base_leaf) if stored else []
thumbnails = store.pictures(owner, stored.id, [i for t in path for i in t.images], thumbnails=True) if stored else {}
busy = any(t.status == "streaming" for t in path)
actions = chat_view.TurnActions(edit=_edit, regenerate=_regenerate, choose=_choose, enabled=not busy)
editing = st.session_state.get(EDITING_KEY)
for turn in path:
    chat_view.render_turn(turn, thumbnails=thumbnails, siblings=stored.siblings(turn.id) if stored else (),
                          actions=actions, editor=_editor if turn.id == editing else None)

can_send = bool(model) and not models_error
if not path and pending is None:
    chat_view.render_starters(STARTERS, _queue_starter, enabled=can_send, model=model or "", sees=sees)
if models_error and not reachable:
    st.info("Nothing can be sent until the backend is reachable again (see above).", icon=":material/info:")
elif models_error:
    st.info("The model list is unavailable, so nothing can be sent right now. " + models_error, icon=":material/info:")
elif not names:
    st.info("No models are installed on this backend. Pull one on the Models page, e.g. `llama3.2:1b`.",
            icon=":material/info:")
if not reachable:
    placeholder = "The backend is not reachable"
elif models_error:
    placeholder = "The model list is unavailable"
elif not names:
    placeholder = "No models are installed on this backend"
elif not model:
    placeholder = "Choose a model above"
elif sees:
    placeholder = f"Message {model}, or attach a picture with the clip"
else:
    placeholder = f"Message {model} (text only: it has no vision capability)"
st.chat_input(placeholder, key="chat.input", disabled=not can_send, submit_mode="disable", on_submit=_queue_prompt,
              max_chars=MAX_PROMPT_CHARS, accept_file="multiple" if sees else False,
              file_type=list(FILE_TYPES) if sees else None, max_upload_size=MAX_UPLOAD_MB if sees else None)


# ---- sending --------------------------------------------------------------------------------------------
def send(pending: Pending, model: str) -> None:
    """Check everything first, then save the prompt, stream the reply into the page and save it."""
    try:
        options = _options()
        session.require_role("operator", "chat with a model")  # checked again at the action itself
        pictures = clean_images(pending.files) if pending.files else []
        text = pending.text
        picture_only = bool(pictures or pending.keep_pictures) and not text.strip()
        if pending.kind != "regenerate" and not picture_only:
            text = validate_prompt(text)
        require_vision(model, capabilities, len(pictures) + len(pending.keep_pictures) +
                       sum(len(t.images) for t in path))
    except DashboardError as exc:
        st.error(user_message(exc), icon=":material/edit_off:")
        return
    ollama_options = options.to_ollama()
    system = st.session_state.get("chat.system", "")
    try:
        cid = stored.id if stored else store.create(owner, title=title_from_prompt(text, [p.name for p in pictures]),
                                                    model=model, system_prompt=system)
        prompt_id = pending.parent_id
        if pending.kind != "regenerate":
            parent = None if pending.start_new else (pending.parent_id if pending.kind == "edit" else
                                                     (path[-1].id if path else None))
            user = store.add_user(owner, cid, parent_id=parent, text=text, pictures=pictures,
                                  keep_pictures=pending.keep_pictures, system_prompt=system)
            prompt_id = user.id
            shown = store.pictures(owner, cid, user.images, thumbnails=True)
            chat_view.render_turn(user, thumbnails=shown)
        reply = store.start_reply(owner, cid, parent_id=str(prompt_id), model=model, digest=digests.get(model, ""),
                                  backend=backend.name, options=ollama_options)
    except DashboardError as exc:
        st.error(user_message(exc), icon=":material/error:")
        return
    history_view.show(cid)
    request = store.get(owner, cid).conversation(str(prompt_id))
    request.system_prompt = system
    try:
        stream = session.get_client(backend).chat(model, request.messages_for_request(_encoded(cid, request.turns)),
                                                   options=ollama_options)
    except DashboardError as exc:
        reply.status, reply.error = "error", user_message(exc)
        store.finish_reply(owner, cid, reply)
    else:
        settings = session.get_settings()
        updates = stream_updates(stream, model=model, interval_s=settings.stream_interval_s,
                                 interval_per_char_s=settings.stream_interval_per_char_s)
        chat_view.stream_into(reply, updates, on_end=lambda turn: store.finish_reply(owner, cid, turn))
    st.rerun()  # redraw the title, the list and the menu with the finished turn


if pending is not None:
    if not model:
        st.error("Choose a model above first." if names else "There is no model to send this to.",
                 icon=":material/edit_off:")
    else:
        send(pending, model)
