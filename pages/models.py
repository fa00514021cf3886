"""Models: what is installed and loaded on the selected backend; pull, load, unload, copy, delete."""

from __future__ import annotations

import streamlit as st

from components import models as view
from components import session
from components.router import enter_page
from services import format as fmt
from services.access.roles import allows
from services.errors import DashboardError, user_message
from services.models.operations import (
    KEEP_ALIVE_CHOICES,
    SORT_ORDERS,
    copy_model,
    delete_model,
    filter_and_sort,
    installed_rows,
    load_model,
)
from services.ollama.wire import InstalledModel
from services.safe_text import plain_label

PULL_NAME_KEY = "models.pull_name"

identity = enter_page("models")
is_admin = allows(identity.role, "admin")
backend = session.current_backend()
settings = session.get_settings()

st.title("Models", anchor=False)
st.caption(f"Backend **{plain_label(backend.name)}** · `{backend.url}`")
view.render_flash()


def _start_pull() -> None:
    """Runs before the rerun, so the name field can be cleared once the job exists."""
    name = st.session_state.get(PULL_NAME_KEY, "")
    try:
        who = session.require_role("admin", "pull a model")
        job, created = view.get_pull_manager().start(backend, name, who.subject)
    except DashboardError as exc:
        view.flash("error", user_message(exc))
        return
    st.session_state[PULL_NAME_KEY] = ""
    if created:
        view.flash("success", f"Pulling {job.model} on {backend.name}; progress below (it keeps going if you "
                              "leave or reload the page).")
    else:
        view.flash("info", f"{job.model} is already being pulled on {backend.name} (started by "
                           f"{job.requested_by}); showing that job.")


# ---- pull --------------------------------------------------------------------------------------------
st.subheader("Pull a model", anchor=False)
left, right = st.columns([5, 1], vertical_alignment="bottom")
left.text_input("Model name with tag", key=PULL_NAME_KEY, placeholder="e.g. llama3.2:1b, qwen2.5:0.5b",
                disabled=not is_admin, help="Pulls run on the dashboard server; several can run at once.")
right.button("Pull", key="models.pull", icon=":material/download:", type="primary", on_click=_start_pull,
             disabled=not is_admin, width="stretch")
if not is_admin:
    st.caption("Pulling, copying and deleting models needs the admin role.")
view.render_pull_jobs(backend.name)

# ---- loaded ------------------------------------------------------------------------------------------
st.subheader("Loaded now", anchor=False)
view.render_loaded(backend)

models_error = ""
try:
    installed: list[InstalledModel] = session.installed_models(backend)
except DashboardError as exc:
    installed, models_error = [], user_message(exc)
names = [m.name for m in installed]

with st.expander("Load a model (warm it up)", icon=":material/bolt:"):
    cols = st.columns([4, 2, 1], vertical_alignment="bottom")
    to_load = cols[0].selectbox("Model to load", names, key="models.load_model", placeholder="No models")
    keep = cols[1].selectbox("Keep loaded for", KEEP_ALIVE_CHOICES, key="models.keep_alive",
                             help="'forever' keeps it until someone unloads it.")
    if cols[2].button("Load", key="models.load", icon=":material/bolt:", disabled=not to_load,
                      width="stretch"):
        try:
            who = session.require_role("operator", "load a model")
            with st.spinner(f"Loading {to_load}…"):
                load_model(session.get_client(backend), view.get_audit_log(), who.subject, to_load or "", keep)
        except DashboardError as exc:
            st.error(user_message(exc), icon=":material/error:")
        else:
            view.refresh_model_caches()
            view.flash("success", f"{to_load} is loaded (keep-alive {keep}).")
            st.rerun()

# ---- installed ---------------------------------------------------------------------------------------
st.subheader("Installed", anchor=False)
if models_error:
    st.info("The installed models are unavailable right now. " + models_error, icon=":material/info:")
else:
    rows = installed_rows(installed)
    cols = st.columns([3, 2], vertical_alignment="bottom")
    needle = cols[0].text_input("Filter", key="models.filter", placeholder="name, family or quantization")
    order = cols[1].selectbox("Sort by", list(SORT_ORDERS), key="models.sort")
    shown = filter_and_sort(rows, needle, *SORT_ORDERS[order])
    metrics = st.columns(3)
    metrics[0].metric("Installed models", len(rows))
    metrics[1].metric("Disk used", fmt.size(sum(m.size for m in installed)))
    metrics[2].metric("Shown", len(shown))
    if shown:
        view.render_installed_table(shown)
    elif rows:
        st.caption("No installed model matches the filter.")
    else:
        st.info("Nothing is installed on this backend yet. Pull one above, e.g. `llama3.2:1b`.",
                icon=":material/info:")

    shown_names = [r["name"] for r in shown]
    if shown_names:
        st.subheader("Inspect and manage", anchor=False)
        selected = st.selectbox("Model", shown_names, key="models.selected")
        details_tab, copy_tab, delete_tab = st.tabs(["Details", "Copy (alias)", "Delete"])
        with details_tab:
            try:
                view.render_detail(view.model_detail(backend, selected))
            except DashboardError as exc:
                st.info(f"Details are unavailable: {user_message(exc)}", icon=":material/info:")
        with copy_tab:
            cols = st.columns([5, 1], vertical_alignment="bottom")
            destination = cols[0].text_input("New name", key="models.copy_to", placeholder="e.g. team/assistant:v1",
                                             disabled=not is_admin)
            if cols[1].button("Copy", key="models.copy", icon=":material/content_copy:", disabled=not is_admin,
                              width="stretch"):
                try:
                    who = session.require_role("admin", "copy a model")
                    new = copy_model(session.get_client(backend), view.get_audit_log(), who.subject, selected,
                                     destination)
                except DashboardError as exc:
                    st.error(user_message(exc), icon=":material/error:")
                else:
                    view.refresh_model_caches()
                    view.flash("success", f"Copied {selected} to {new}.")
                    st.rerun()
        with delete_tab:
            try:
                loaded_names = {m.name for m in view.loaded_models(backend)}
            except DashboardError:
                loaded_names = set()
            if selected in loaded_names:
                st.warning(f"{selected} is loaded right now: chats using it will fail after the delete. "
                           "Consider unloading it first.", icon=":material/warning:")
            st.caption("Deleting removes the model's files from the backend. Type the model's name to confirm.")
            cols = st.columns([5, 1], vertical_alignment="bottom")
            typed = cols[0].text_input("Type the model's name", key="models.delete_confirm",
                                       placeholder=selected, disabled=not is_admin)
            if cols[1].button("Delete", key="models.delete", icon=":material/delete:", type="primary",
                              disabled=not is_admin, width="stretch"):
                try:
                    who = session.require_role("admin", "delete a model")
                    outcome = delete_model(session.get_client(backend), view.get_audit_log(), who.subject,
                                           selected, typed)
                except DashboardError as exc:
                    st.error(user_message(exc), icon=":material/error:")
                else:
                    view.refresh_model_caches()
                    if outcome == "already deleted":
                        view.flash("info", f"{selected} was already deleted on {backend.name}.")
                    else:
                        view.flash("success", f"Deleted {selected} from {backend.name}.")
                    del st.session_state["models.delete_confirm"]
                    st.rerun()

# ---- several backends --------------------------------------------------------------------------------
if len(settings.backends) > 1:
    st.subheader("Models × backends", anchor=False)
    per_backend: dict[str, list[InstalledModel] | None] = {}
    for other in settings.backends:
        try:
            per_backend[other.name] = session.installed_models(other)
        except DashboardError:
            per_backend[other.name] = None
    view.render_matrix(per_backend)
