"""Render the Models page: pull jobs, loaded and installed models, model details.

Model names, templates, licences and Modelfiles come from a backend or a registry: they are shown with
``st.code``/``st.text``/``st.dataframe`` or ``plain_label``, never as Markdown or HTML.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from components import runtime, session
from components.auth import enter_fragment
from services import format as fmt
from services.access.audit import AuditLog
from services.access.roles import allows
from services.config import Backend
from services.errors import DashboardError, user_message
from services.models.operations import (
    ModelDetail,
    loaded_rows,
    model_matrix,
    unload_model,
)
from services.models.pull_progress import UI_REFRESH_S, PullSnapshot
from services.models.pulls import PullManager
from services.ollama.wire import InstalledModel, LoadedModel
from services.safe_text import plain_label

FLASH_KEY = "models.flash"
WATCHED_KEY = "models.watched_jobs"
COUNTDOWN_REFRESH_S = 1.0
IDLE_REFRESH_S = 5.0
MAX_SHOWN_JOBS = 12
STATE_ICONS = {"queued": ":material/schedule:", "running": ":material/downloading:",
               "succeeded": ":material/check_circle:", "failed": ":material/error:",
               "cancelled": ":material/cancel:", "interrupted": ":material/history:"}


def get_audit_log() -> AuditLog:
    return runtime.audit_log()


def get_pull_manager() -> PullManager:
    return runtime.pull_manager()


@st.cache_data(ttl=3, show_spinner=False, max_entries=64)
def _loaded_models(backend: Backend) -> list[LoadedModel]:
    return session.get_client(backend).ps()


def loaded_models(backend: Backend) -> list[LoadedModel]:
    session.ensure_answering(backend)  # a host that does not answer is not asked again on this page
    return _loaded_models(backend)


@st.cache_data(ttl=30, show_spinner=False, max_entries=128)
def _model_detail(backend: Backend, model: str) -> ModelDetail:
    return ModelDetail.from_show(session.get_client(backend).show(model))


def model_detail(backend: Backend, model: str) -> ModelDetail:
    session.ensure_answering(backend)
    return _model_detail(backend, model)


def refresh_model_caches() -> None:
    session.refresh_backend_caches()
    _loaded_models.clear()
    _model_detail.clear()


def flash(kind: str, text: str) -> None:
    """A message that survives the rerun that follows an action."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, text))


def render_flash() -> None:
    for kind, text in st.session_state.pop(FLASH_KEY, []):
        {"success": st.success, "info": st.info, "warning": st.warning}.get(kind, st.error)(text)


# ---- pull jobs ---------------------------------------------------------------------------------------
def _progress_text(job: PullSnapshot) -> str:
    parts = [f"{fmt.size(job.completed)} / {fmt.size(job.total)}" if job.total else "starting…"]
    if job.total:
        parts.append(f"{job.fraction:.0%}")
    if job.active and job.rate:
        parts.append(fmt.transfer_rate(job.rate))
    if job.active and job.total:
        parts.append(f"ETA {fmt.eta(job.eta_s)}")
    return " · ".join(parts)


def _render_active_job(job: PullSnapshot, can_cancel: bool) -> None:
    with st.container(border=True):
        head, button = st.columns([6, 1], vertical_alignment="center")
        head.markdown(f"{STATE_ICONS.get(job.state, '')} **{plain_label(job.model)}** · {job.state} · "
                      f"started by {plain_label(job.requested_by)}")
        if button.button("Cancel", key=f"models.cancel.{job.id}", icon=":material/close:", disabled=not can_cancel,
                         help="Stops the pull and closes its connection. Ollama keeps what it downloaded."):
            try:
                session.require_role("admin", "cancel a pull")
                get_pull_manager().cancel(job.id)
            except DashboardError as exc:
                st.error(user_message(exc))
        st.progress(job.fraction, text=_progress_text(job))
        st.caption("Status: " + " → ".join(plain_label(s, 60) for s in job.history) if job.history else
                   "Status: connecting…")
        if job.layers:
            frame = pd.DataFrame([{"layer": layer.short_digest, "done": fmt.size(layer.completed),
                                   "size": fmt.size(layer.total), "progress": layer.fraction}
                                  for layer in job.layers])
            st.dataframe(frame, hide_index=True, width="stretch",
                         column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0,
                                                                                    max_value=1, format="percent")})


def _render_finished_job(job: PullSnapshot, can_retry: bool) -> None:
    when = datetime.fromtimestamp(job.finished_at or job.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text, button = st.columns([6, 1], vertical_alignment="center")
    line = f"{STATE_ICONS.get(job.state, '')} **{plain_label(job.model)}** · {job.state} · {when}"
    if job.total:
        line += f" · {fmt.size(job.completed)} / {fmt.size(job.total)}"
    text.markdown(line)
    if job.error:
        text.caption(plain_label(job.error, 400))
    if job.retryable and button.button("Retry", key=f"models.retry.{job.id}", icon=":material/refresh:",
                                       disabled=not can_retry, help="Ollama resumes from what it already has."):
        try:
            identity = session.require_role("admin", "pull a model")
            get_pull_manager().retry(job.id, identity.subject)
        except DashboardError as exc:
            st.error(user_message(exc))
        else:
            st.rerun(scope="fragment")


def render_pull_jobs(backend_name: str) -> None:
    """Live jobs, re-read from the shared manager on a timer (never once per progress line).

    The timer is fast while a job runs here and slow when idle (so a job started from another browser
    still shows up); a fragment that sees the state change asks for a full rerun to switch speeds.
    """
    busy = any(j.active for j in get_pull_manager().jobs(backend=backend_name, limit=MAX_SHOWN_JOBS))
    st.fragment(_pull_jobs_body, run_every=UI_REFRESH_S if busy else IDLE_REFRESH_S)(backend_name, busy)


def _pull_jobs_body(backend_name: str, fast: bool) -> None:
    enter_fragment()  # fragment reruns skip app.py's sign-in gate
    can_manage = allows(session.current_identity().role, "admin")
    jobs = get_pull_manager().jobs(backend=backend_name, limit=MAX_SHOWN_JOBS)
    active = [j for j in jobs if j.active]
    watched: set[str] = st.session_state.setdefault(WATCHED_KEY, set())
    finished_now = [j for j in jobs if j.id in watched and not j.active]
    watched.clear()
    watched.update(j.id for j in active)
    if not jobs:
        st.caption("No pulls yet on this backend.")
    for job in active:
        _render_active_job(job, can_manage)
    finished = [j for j in jobs if not j.active][:6]
    if finished:
        with st.expander(f"Recent pulls ({len(finished)})", expanded=not active,
                         icon=":material/history:"):
            for job in finished:
                _render_finished_job(job, can_manage)
    if any(j.state == "succeeded" for j in finished_now):
        refresh_model_caches()  # the new model must show up in the installed list
    if finished_now or bool(active) != fast:
        st.rerun(scope="app")


# ---- loaded models -----------------------------------------------------------------------------------
def render_loaded(backend: Backend) -> None:
    """What ``/api/ps`` says, with a countdown to unload that ticks every second while something is loaded."""
    try:
        busy = bool(loaded_models(backend))
    except DashboardError:
        busy = False
    st.fragment(_loaded_body, run_every=COUNTDOWN_REFRESH_S if busy else IDLE_REFRESH_S)(backend, busy)


def _loaded_body(backend: Backend, fast: bool) -> None:
    enter_fragment()
    try:
        models = loaded_models(backend)
    except DashboardError as exc:
        st.info(f"The loaded models are unavailable: {user_message(exc)}", icon=":material/info:")
        return
    if bool(models) != fast:
        st.rerun(scope="app")
    if not models:
        st.caption("No model is loaded right now.")
        return
    total = sum(m.size for m in models)
    vram = sum(m.size_vram for m in models)
    st.caption(f"{len(models)} loaded · {fmt.size(total)} in memory · {fmt.size(vram)} in VRAM")
    can_operate = allows(session.current_identity().role, "operator")
    rows = loaded_rows(models, datetime.now(UTC))
    widths = [3, 1.2, 1.2, 2, 1, 1.3, 1.6]
    header = st.columns(widths)
    for col, title in zip(header, ["Model", "Memory", "VRAM", "Processor", "Context", "Unloads in", ""],
                          strict=True):
        col.caption(title)
    for row in rows:
        cols = st.columns(widths, vertical_alignment="center")
        cols[0].text(row["name"])
        cols[1].text(row["size"])
        cols[2].text(row["vram"])
        cols[3].text(row["processor"])
        cols[4].text(str(row["context"] or "—"))
        cols[5].text(row["until_unload"])
        if cols[6].button("Unload", key=f"models.unload.{row['name']}", icon=":material/eject:",
                          disabled=not can_operate, width="stretch"):
            try:
                identity = session.require_role("operator", "unload a model")
                unload_model(session.get_client(backend), get_audit_log(), identity.subject, row["name"])
            except DashboardError as exc:
                st.error(user_message(exc))
            else:
                _loaded_models.clear()
                flash("success", f"Unloaded {row['name']}.")
                st.rerun(scope="app")


# ---- installed models --------------------------------------------------------------------------------
def render_installed_table(rows: list[dict]) -> None:
    frame = pd.DataFrame(
        [{"Name": r["name"], "Family": r["family"], "Parameters": r["parameters"],
          "Quantization": r["quantization"], "Size (GiB)": r["size"] / 1024**3, "Modified": r["modified"],
          "ID": r["digest"]} for r in rows],
        columns=["Name", "Family", "Parameters", "Quantization", "Size (GiB)", "Modified", "ID"],
    )
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"Size (GiB)": st.column_config.NumberColumn(format="%.2f"),
                                "Modified": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})


def render_detail(detail: ModelDetail) -> None:
    cols = st.columns(4)
    cols[0].metric("Architecture", detail.architecture or "—")
    cols[1].metric("Context length", f"{detail.context_length:,}" if detail.context_length else "—")
    cols[2].metric("Parameters", f"{detail.parameter_count:,}" if detail.parameter_count else "—")
    cols[3].metric("Capabilities", len(detail.capabilities))
    st.caption("Capabilities: " + (", ".join(plain_label(c) for c in detail.capabilities) or "none reported"))
    if detail.parameters:
        st.dataframe(pd.DataFrame(detail.parameters, columns=["parameter", "value"]), hide_index=True,
                     width="stretch")
    else:
        st.caption("No parameters set in the Modelfile.")
    for title, text in (("System prompt", detail.system), ("Template", detail.template),
                        ("License", detail.license), ("Modelfile", detail.modelfile)):
        with st.expander(title, expanded=False):
            if text:
                st.code(text, language=None, wrap_lines=True)
            else:
                st.caption("(none)")


def render_matrix(per_backend: dict[str, list[InstalledModel] | None]) -> None:
    rows = model_matrix(per_backend)
    if not rows:
        st.caption("No models on any backend.")
        return
    differing = [r["model"] for r in rows if r["differs"]]
    frame = pd.DataFrame(rows).rename(columns={"model": "Model", "differs": "Digests differ"})
    st.dataframe(frame, hide_index=True, width="stretch")
    st.caption("Each cell is the model's short digest on that host; — means not installed, ? means the host "
               "did not answer.")
    if differing:
        st.warning("Different digests for the same name on different hosts (not the same weights): "
                   + ", ".join(plain_label(n) for n in differing), icon=":material/difference:")
