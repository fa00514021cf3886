"""The chat page's conversation area, as a fragment: the messages, the pinned message box, and sending.

Sending a message, editing, regenerating or flipping a branch reruns this fragment only, not the router,
the sidebar and the panels above it, so a reply starts streaming sooner. The message box is written to
``st.bottom`` from inside the fragment: it stays pinned to the bottom of the window, and submitting it
reruns the fragment. When a reply has been saved, one full rerun redraws the title, the list and the menu.

Every action is a callback that queues a ``Pending`` send; the fragment run that follows checks everything
(options, prompt, pictures, vision, role), saves the prompt, streams the reply and saves it however it ends.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

from components import chat as chat_view
from components import chat_history as history_view
from components import session
from components.auth import enter_fragment
from services.chat.conversation import ChatTurn, validate_prompt
from services.chat.history import ChatStore
from services.chat.starters import STARTERS, Starter
from services.chat.tree import StoredConversation, title_from_prompt
from services.errors import DashboardError, user_message
from services.images import FILE_TYPES, MAX_UPLOAD_MB, clean_images, require_vision
from services.ollama.options import GenerationOptions
from services.ollama.stream import stream_updates

PENDING_KEY = "chat.pending"
EDITING_KEY = "chat.editing"
INPUT_KEY = "chat.input"


@dataclass
class Pending:
    """A send asked for by a callback (message box, starter, edit, regenerate), carried out by the next run."""

    kind: str  # "new", "edit" or "regenerate"
    text: str = ""
    files: list[tuple[str, bytes]] = field(default_factory=list)
    parent_id: str | None = None  # the prompt's parent (new, edit) or the prompt a regenerated reply answers
    keep_pictures: list[str] = field(default_factory=list)
    start_new: bool = False


@dataclass(frozen=True)
class ChatSetup:
    """What the page above decided, for this fragment: the person, the model and how to read the options."""

    store: ChatStore
    owner: str
    model: str | None
    digests: dict[str, str]
    capabilities: tuple[str, ...]
    names: tuple[str, ...]
    models_error: str
    reachable: bool
    options: Callable[[], GenerationOptions]
    apply_preset: Callable[[str], None]


def _current(setup: ChatSetup) -> StoredConversation | None:
    cid = st.session_state.get(history_view.CONVERSATION_KEY)
    return setup.store.get(setup.owner, cid) if cid else None


def _queue_prompt() -> None:
    value = st.session_state.get(INPUT_KEY)
    if value is None:
        return
    text = value if isinstance(value, str) else (value.text or "")
    files = [] if isinstance(value, str) else [(f.name, f.getvalue()) for f in value.files or []]
    st.session_state[PENDING_KEY] = Pending("new", text=text, files=files)


def _queue_starter(setup: ChatSetup, starter: Starter) -> None:
    setup.apply_preset(starter.preset)
    st.session_state[PENDING_KEY] = Pending("new", text=starter.prompt)


def _edit(message_id: str) -> None:
    st.session_state[EDITING_KEY] = message_id


def _regenerate(setup: ChatSetup, message_id: str) -> None:
    stored = _current(setup)
    turn = stored.messages.get(message_id) if stored else None
    if turn is not None and turn.parent_id:
        st.session_state[PENDING_KEY] = Pending("regenerate", parent_id=turn.parent_id)


def _choose(setup: ChatSetup, message_id: str) -> None:
    try:
        setup.store.choose(setup.owner, st.session_state.get(history_view.CONVERSATION_KEY) or "", message_id)
    except DashboardError as exc:
        history_view.notice("error", user_message(exc))


def _send_edit(turn: ChatTurn) -> None:
    st.session_state.pop(EDITING_KEY, None)
    st.session_state[PENDING_KEY] = Pending("edit", text=st.session_state.get(f"chat.edit_text.{turn.id}", ""),
                                            parent_id=turn.parent_id, keep_pictures=list(turn.images),
                                            start_new=turn.parent_id is None)


def _editor(turn: ChatTurn) -> None:
    st.text_area("Edit the prompt", value=turn.content, key=f"chat.edit_text.{turn.id}", label_visibility="collapsed")
    bar = st.container(horizontal=True, gap="small")
    bar.button("Send", key=f"chat.edit_send.{turn.id}", type="primary", icon=":material/send:", on_click=_send_edit,
               args=(turn,), help="Sends the edited prompt; the original and its replies stay as a branch.")
    bar.button("Cancel", key=f"chat.edit_cancel.{turn.id}", on_click=lambda: st.session_state.pop(EDITING_KEY, None))


def encoded_pictures(store: ChatStore, owner: str, cid: str, turns: list[ChatTurn]) -> dict[str, str]:
    """The raw base64 of the pictures these turns carry, as Ollama takes them."""
    ids = [i for t in turns for i in t.images]
    return {k: base64.b64encode(v).decode("ascii") for k, v in store.pictures(owner, cid, ids).items()}


def _placeholder(setup: ChatSetup) -> str:
    """What the message box says: what is wrong when nothing can be sent, else what can be sent."""
    if not setup.reachable:
        return "The backend is not reachable"
    if setup.models_error:
        return "The model list is unavailable"
    if not setup.names:
        return "No models are installed on this backend"
    if not setup.model:
        return "Choose a model above"
    if "vision" in setup.capabilities:
        return f"Message {setup.model}, or attach a picture with the clip"
    return f"Message {setup.model} (text only: it has no vision capability)"


@st.fragment
def conversation(setup: ChatSetup) -> None:
    """The messages of the branch shown, the starting prompts of an empty one, the message box, the send."""
    enter_fragment()  # fragment reruns skip the router's gate
    history_view.render_notices()
    stored = _current(setup)
    pending: Pending | None = st.session_state.pop(PENDING_KEY, None)
    base_leaf = stored.leaf_id if stored else None
    if pending is not None and pending.kind in ("edit", "regenerate"):
        base_leaf = pending.parent_id
    path = [] if stored is None or (pending is not None and pending.start_new) else stored.path(base_leaf)
    if stored is not None and any(t.status == "streaming" for t in path):
        setup.store.settle([t.id for t in path if t.status == "streaming"])  # a stopped reply is being saved
        stored = _current(setup)
        path = stored.path(base_leaf) if stored else []
    ids = [i for t in path for i in t.images]
    thumbnails = setup.store.pictures(setup.owner, stored.id, ids, thumbnails=True) if stored and ids else {}
    busy = any(t.status == "streaming" for t in path)
    actions = chat_view.TurnActions(edit=_edit, regenerate=lambda m: _regenerate(setup, m),
                                    choose=lambda m: _choose(setup, m), enabled=not busy)
    editing = st.session_state.get(EDITING_KEY)
    for turn in path:
        chat_view.render_turn(turn, thumbnails=thumbnails, siblings=stored.siblings(turn.id) if stored else (),
                              actions=actions, editor=_editor if turn.id == editing else None)

    sees = "vision" in setup.capabilities
    can_send = bool(setup.model) and not setup.models_error
    if not path and pending is None:
        chat_view.render_starters(STARTERS, lambda s: _queue_starter(setup, s), enabled=can_send,
                                  model=setup.model or "", sees=sees)
    if setup.models_error and not setup.reachable:
        st.info("Nothing can be sent until the backend is reachable again (see above).", icon=":material/info:")
    elif setup.models_error:
        st.info("The model list is unavailable, so nothing can be sent right now. " + setup.models_error,
                icon=":material/info:")
    elif not setup.names:
        st.info("No models are installed on this backend. Pull one on the Models page, e.g. `llama3.2:1b`.",
                icon=":material/info:")
    # No max_chars: the browser would cut a long paste silently; validate_prompt says what the limit is.
    # "stop": while a reply streams, the send button is a Stop button that stops this run (a widget of a
    # fragment would only queue a rerun behind it).
    st.bottom.chat_input(_placeholder(setup), key=INPUT_KEY, disabled=not can_send, submit_mode="stop",
                         on_submit=_queue_prompt, accept_file="multiple" if sees else False,
                         file_type=list(FILE_TYPES) if sees else None,
                         max_upload_size=MAX_UPLOAD_MB if sees else None)
    if pending is None:
        return
    if not setup.model:
        st.error("Choose a model above first." if setup.names else "There is no model to send this to.",
                 icon=":material/edit_off:")
        return
    _send(setup, setup.model, pending, stored, path)


def _send(setup: ChatSetup, model: str, pending: Pending, stored: StoredConversation | None,
          path: list[ChatTurn]) -> None:
    """Check everything first, then save the prompt, stream the reply into the page and save it."""
    store, owner = setup.store, setup.owner
    try:
        options = setup.options()
        session.require_role("operator", "chat with a model")  # checked again at the action itself
        pictures = clean_images(pending.files) if pending.files else []
        text = pending.text
        picture_only = bool(pictures or pending.keep_pictures) and not text.strip()
        if pending.kind != "regenerate" and not picture_only:
            text = validate_prompt(text)
        require_vision(model, setup.capabilities,
                       len(pictures) + len(pending.keep_pictures) + sum(len(t.images) for t in path))
    except DashboardError as exc:
        st.error(user_message(exc), icon=":material/edit_off:")
        return
    ollama_options = options.to_ollama()
    system = st.session_state.get("chat.system", "")
    backend = session.current_backend()
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
            chat_view.render_turn(user, thumbnails=store.pictures(owner, cid, user.images, thumbnails=True))
        reply = store.start_reply(owner, cid, parent_id=str(prompt_id), model=model,
                                  digest=setup.digests.get(model, ""), backend=backend.name, options=ollama_options)
    except DashboardError as exc:
        st.error(user_message(exc), icon=":material/error:")
        return
    history_view.show(cid)
    request = store.get(owner, cid).conversation(str(prompt_id))
    request.system_prompt = system
    try:
        stream = session.get_client(backend).chat(
            model, request.messages_for_request(encoded_pictures(store, owner, cid, request.turns)),
            options=ollama_options)
    except DashboardError as exc:
        reply.status, reply.error = "error", user_message(exc)
        store.finish_reply(owner, cid, reply)
    else:
        settings = session.get_settings()
        updates = stream_updates(stream, model=model, interval_s=settings.stream_interval_s,
                                 interval_per_char_s=settings.stream_interval_per_char_s)
        chat_view.stream_into(reply, updates, on_end=lambda turn: store.finish_reply(owner, cid, turn))
    st.rerun(scope="app")  # redraw the title, the list and the menu with the finished turn
