"""Save as model (admins): the chat's model, system prompt and options kept as a named model, with live progress.

The recipe is shown as a Modelfile before anything is sent. An existing name is never replaced silently:
the button turns into an explicit "Replace" for that exact name. The create streams its statuses into a
status box while it runs; the new model then shows up in this page's model list and on the Models page.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from components import runtime, session
from services import format as fmt
from services.access.roles import allows
from services.config import Backend
from services.errors import DashboardError, InvalidInput, user_message
from services.models.create import CreateProgress, create_model, existing_name, make_recipe
from services.safe_text import plain_label

NAME_KEY = "chat.save.name"
REPLACE_KEY = "chat.save.replace"  # the exact name the admin agreed to replace
CREATED_KEY = "chat.save.created"
CLEAR_KEY = "chat.save.clear"
UI_REFRESH_S = 0.1


def render(backend: Backend, model: str | None, system: str, options: Mapping[str, Any], installed: Sequence[str],
           model_key: str) -> None:
    """The form, the confirmation for an existing name, and the create itself with its progress."""
    if st.session_state.pop(CLEAR_KEY, False):
        st.session_state[NAME_KEY] = ""  # before the field is drawn: the saved name is not offered again
    identity = session.current_identity()
    can_save = allows(identity.role, "admin")
    created = st.session_state.get(CREATED_KEY)
    if created and created in installed:
        st.success(f"Saved as **{plain_label(created)}**: it is listed on the Models page and in the model list "
                   "above.", icon=":material/check:")
        st.button(f"Chat with {plain_label(created, 40)}", key="chat.save.use", icon=":material/chat:",
                  on_click=lambda: (st.session_state.__setitem__(model_key, created),
                                    st.session_state.pop(CREATED_KEY, None)))
    st.caption(f"Creates a model on **{plain_label(backend.name)}** from the chosen model with this system prompt "
               "and these options, like `ollama create`.")
    if not can_save:
        st.caption(":material/lock: Saving a model needs the admin role.")
    name = st.text_input("New model name", key=NAME_KEY, max_chars=256, disabled=not can_save,
                         placeholder="e.g. team/descriptions-fr:v1")
    if not model:
        st.caption("Choose a model above first: the new one starts from it.")
        return
    try:
        recipe = make_recipe(name, model, system, options) if name and name.strip() else None
    except InvalidInput as exc:
        st.error(str(exc), icon=":material/edit_off:")
        return
    if recipe is None:
        return
    modelfile = recipe.modelfile()
    st.code(modelfile, language=None, wrap_lines=True, height="content" if modelfile.count("\n") < 10 else 240)
    replaced = existing_name(recipe.name, installed)
    confirmed = replaced is not None and st.session_state.get(REPLACE_KEY) == recipe.name
    if replaced is not None and not confirmed:
        st.warning(f"**{plain_label(replaced)}** already exists on {plain_label(backend.name)}. Saving replaces it: "
                   "chats and batches using that name get the new settings.", icon=":material/warning:")
        go = st.button(f"Replace {plain_label(replaced, 40)}", key="chat.save.replace_go", type="primary",
                       icon=":material/published_with_changes:", disabled=not can_save)
        if go:
            st.session_state[REPLACE_KEY] = recipe.name
            confirmed = True
    else:
        go = st.button("Save as model", key="chat.save.go", type="primary", icon=":material/save:",
                       disabled=not can_save)
    if go:
        _create(backend, recipe, installed, replace=confirmed)


def _create(backend: Backend, recipe: Any, installed: Sequence[str], *, replace: bool) -> None:
    try:
        who = session.require_role("admin", "save a model")
    except DashboardError as exc:
        st.error(user_message(exc), icon=":material/lock:")
        return
    last_draw = 0.0
    started = time.monotonic()
    label = f"Creating {plain_label(recipe.name)} from {plain_label(recipe.from_model)}"
    with st.status(f"{label}…", expanded=True) as box:
        bar = st.empty()
        steps = st.empty()

        def on_progress(progress: CreateProgress) -> None:
            nonlocal last_draw
            now = time.monotonic()
            if now - last_draw < UI_REFRESH_S and not progress.succeeded:
                return  # a few redraws a second, never one per line
            last_draw = now
            box.update(label=f"{label}… step {progress.lines} · {fmt.duration(now - started)}", expanded=True)
            if progress.fraction is not None:
                bar.progress(progress.fraction, text=plain_label(progress.history[-1], 80))
            steps.markdown("\n".join(f"- {plain_label(s, 100)}" for s in progress.history))

        try:
            create_model(session.get_client(backend), runtime.audit_log(), who.subject, recipe, installed=installed,
                         replace=replace, on_progress=on_progress)
        except DashboardError as exc:
            box.update(label=f"{plain_label(recipe.name)} was not created", state="error")
            st.error(user_message(exc), icon=":material/error:")
            return
        box.update(label=f"Created {plain_label(recipe.name)}", state="complete")
    st.session_state.pop(REPLACE_KEY, None)
    st.session_state[CREATED_KEY] = recipe.name
    st.session_state[CLEAR_KEY] = True
    session.refresh_backend_caches()
    st.rerun()
