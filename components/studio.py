"""The product studio's Streamlit side: what each mode renders, and the live batch card.

Model output and product fields are untrusted: text goes through ``sanitize_markdown`` (HTML off) or
``st.code``/``st.dataframe`` (plain text), labels through ``plain_label``. The batch progress card is a
``@st.fragment(run_every=...)`` that reads the shared manager, so a refresh or a second browser sees
the same job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from components import runtime, session
from components.auth import enter_fragment
from services import format as fmt
from services.errors import DashboardError, user_message
from services.ollama.options import PRESETS
from services.safe_text import plain_label, sanitize_markdown
from services.studio.batch import BatchManager
from services.studio.batch_store import Progress
from services.studio.engine import TaskResult
from services.studio.tabular import to_csv_bytes, to_xlsx_bytes
from services.studio.tasks import LANGUAGES, TASK_FIELDS, TASK_TITLES, TaskParams
from services.studio.templates import Template, TemplateStore, allowed_placeholders

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0


def batch_manager() -> BatchManager:
    return runtime.batch_manager()


def template_store() -> TemplateStore:
    return runtime.template_store()


# ---- shared widgets ---------------------------------------------------------------------------------------


def render_params(task: str, prefix: str) -> TaskParams:
    """Language, tone and length limits for the tasks that use them."""
    if task not in ("description", "translation"):
        return TaskParams(check_language=False)
    cols = st.columns(4 if task == "description" else 1)
    language = cols[0].selectbox("Language", list(LANGUAGES), key=f"{prefix}.language",
                                 format_func=lambda c: LANGUAGES[c])
    if task == "translation":
        return TaskParams(language=language)
    tone = cols[1].text_input("Tone", value="elegant", key=f"{prefix}.tone", max_chars=60)
    sentences = cols[2].number_input("Max sentences", 1, 20, value=2, key=f"{prefix}.sentences")
    chars = cols[3].number_input("Max characters", 40, 5000, value=300, step=20, key=f"{prefix}.chars")
    return TaskParams(language=language, tone=tone or "elegant", max_sentences=int(sentences), max_chars=int(chars))


def render_fields(task: str, prefix: str) -> dict[str, str]:
    values: dict[str, str] = {}
    specs = TASK_FIELDS.get(task, ())
    short = [s for s in specs if not s.multiline]
    cols = st.columns(min(len(short), 3)) if short else []
    for i, spec in enumerate(short):
        label = spec.label + (" *" if spec.required else "")
        values[spec.name] = cols[i % len(cols)].text_input(label, key=f"{prefix}.{task}.{spec.name}", max_chars=4000)
    for spec in specs:
        if spec.multiline:
            label = spec.label + (" *" if spec.required else "")
            values[spec.name] = st.text_area(label, key=f"{prefix}.{task}.{spec.name}", max_chars=4000, height=110)
    return values


def render_output(result: TaskResult) -> None:
    """The checked output (or why it failed), with its provenance and speed figures."""
    if result.ok:
        if result.task in ("extraction", "column_mapping"):
            st.code(json.dumps(result.parsed, indent=2, ensure_ascii=False), language="json")
        elif result.task == "classification":
            st.markdown(f"**{sanitize_markdown(result.output)}**")
            st.code(result.output, language=None)
        else:
            st.markdown(sanitize_markdown(result.output))
            st.code(result.output, language=None, wrap_lines=True)
    else:
        st.error(f"No valid output: {result.error}", icon=":material/error:")
        if result.raw:
            with st.expander("Last raw answer (failed the checks)"):
                st.code(result.raw, language=None, wrap_lines=True)
    st.caption(stats_line(result))


def stats_line(result: TaskResult) -> str:
    parts = [f"{result.duration_s:.2f} s"]
    tps = result.stats.get("tokens_per_second") if result.stats else None
    if tps:
        parts.append(f"{tps:.1f} tokens/s")
    if result.stats.get("eval_count"):
        parts.append(f"{result.stats['eval_count']} tokens")
    parts.append(f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}")
    parts.append(f"template {result.template_ref}")
    parts.append(f"model {result.model}")
    return plain_label(" · ".join(parts), 300)


# ---- template editor -------------------------------------------------------------------------------------


def render_template_editor(task: str, store: TemplateStore, on_save: Callable[[Template], None]) -> None:
    versions = store.versions(task)
    chosen = st.selectbox(
        "Version", [t.version for t in reversed(versions)], key=f"studio.tpl.{task}.version",
        format_func=lambda v: next(f"v{t.version} · {t.source}" + (f" · {t.saved_by} {t.saved_at}" if t.saved_at
                                                                      else "") for t in versions if t.version == v),
    )
    template = next(t for t in versions if t.version == chosen)
    st.caption("Placeholders this task knows: " + ", ".join(f"`{{{{{p}}}}}`" for p in
                                                             sorted(allowed_placeholders(task))))
    with st.form(f"studio.tpl.{task}.{template.version}"):
        system = st.text_area("System prompt", value=template.system, height=120)
        prompt = st.text_area("Prompt", value=template.prompt, height=160)
        cols = st.columns(3)
        preset = cols[0].selectbox("Parameter preset", list(PRESETS), index=list(PRESETS).index(template.preset),
                                   help="The seed's table: classification 0.1/0.5/10, enrichment 0.7/0.9/40, "
                                        "creative 1.0/0.95/50.")
        num_predict = cols[1].number_input("Max tokens", 16, 8192, value=template.num_predict or 400)
        attempts = cols[2].number_input("Attempts when a check fails", 1, 5, value=template.max_attempts)
        if st.form_submit_button("Save as new version", icon=":material/save:"):
            try:
                identity = session.require_role("operator", "save a template")
                saved = store.save(task, system=system, prompt=prompt, preset=preset, num_predict=int(num_predict),
                                   max_attempts=int(attempts), author=identity.subject)
            except DashboardError as exc:
                st.error(user_message(exc), icon=":material/edit_off:")
            else:
                on_save(saved)


# ---- batch progress --------------------------------------------------------------------------------------


def progress_caption(progress: Progress) -> str:
    return (f"{progress.finished_rows:,} / {progress.total:,} rows · {progress.done:,} done · "
            f"{progress.failed:,} failed · {progress.pending + progress.running:,} left · ETA "
            f"{fmt.eta(progress.eta_s)}")


def render_job(manager: BatchManager, job_id: str) -> None:
    """The live card: a fragment that re-runs every second while the job runs, and stops when it ends."""
    running = manager.is_running(job_id)
    st.fragment(run_every=PROGRESS_EVERY_S if running else None)(_job_card)(manager, job_id, running)


def _job_card(manager: BatchManager, job_id: str, was_running: bool) -> None:
    enter_fragment()  # fragment reruns skip app.py's sign-in gate
    try:
        job = manager.job(job_id)
        progress = manager.progress(job_id)
    except DashboardError as exc:
        st.error(user_message(exc))
        return
    running = manager.is_running(job_id)
    if was_running and not running:
        st.rerun(scope="app")  # the job ended: redraw the page once, without the timer
    with st.container(border=True):
        st.markdown(f"**Batch {plain_label(job.id)}** · {plain_label(job.source_name)} · "
                    f"{plain_label(job.template.ref)} · {plain_label(job.model)} on {plain_label(job.backend)} · "
                    f"concurrency {job.concurrency}")
        state = "running" if running else job.state
        st.progress(progress.fraction, text=f"{state}: {progress_caption(progress)}")
        cols = st.columns(4)
        cols[0].metric("Done", f"{progress.done:,}")
        cols[1].metric("Failed", f"{progress.failed:,}")
        cols[2].metric("Left", f"{progress.pending + progress.running:,}")
        cols[3].metric("ETA", fmt.eta(progress.eta_s),
                       help="From the rate of this run so far." if running else "Shown while the batch runs.")
        if job.message and not running:
            st.caption(plain_label(job.message, 200))
        bar = st.container(horizontal=True)
        buttons = iter([bar, bar, bar, bar])
        if running:
            next(buttons).button("Cancel", icon=":material/cancel:", key=f"studio.cancel.{job_id}",
                                 on_click=_action, args=(manager.cancel, job_id, "cancel a batch"))
        else:
            next(buttons).button("Retry failed", icon=":material/replay:", key=f"studio.retry.{job_id}",
                                 disabled=progress.failed == 0, on_click=_action,
                                 args=(manager.retry_failed, job_id, "retry a batch"),
                                 help="Runs only the failed rows again; finished rows are kept.")
            next(buttons).button("Resume", icon=":material/play_arrow:", key=f"studio.resume.{job_id}",
                                 disabled=progress.pending + progress.running == 0, on_click=_action,
                                 args=(manager.resume, job_id, "resume a batch"))
        next(buttons).download_button(
            "CSV", data=lambda: to_csv_bytes(manager.results_frame(job_id)),
            file_name=f"{_stem(job.source_name)}-{job.task}.csv", mime="text/csv", icon=":material/download:",
            key=f"studio.csv.{job_id}", on_click="ignore", help="Every input column plus the results.")
        next(buttons).download_button(
            "XLSX", data=lambda: to_xlsx_bytes(manager.results_frame(job_id)),
            file_name=f"{_stem(job.source_name)}-{job.task}.xlsx", icon=":material/download:",
            mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", key=f"studio.xlsx.{job_id}",
            on_click="ignore", help="Every input column plus the results; formulas are neutralised.")
        error = st.session_state.pop(f"studio.action_error.{job_id}", None)
        if error:
            st.error(error, icon=":material/error:")
        only_failed = st.toggle("Only failed rows", key=f"studio.only_failed.{job_id}")
        frame = manager.rows(job_id, status="failed" if only_failed else None, limit=200)
        st.dataframe(frame, hide_index=True, width="stretch", height=280,
                     column_config={"output": st.column_config.TextColumn("output", width="large"),
                                    "error": st.column_config.TextColumn("error", width="medium"),
                                    "duration_s": st.column_config.NumberColumn("seconds", format="%.2f")})
        if progress.total > 200:
            st.caption("The table shows the first 200 rows; the downloads have them all.")


def _action(method: Callable[[str], Any], job_id: str, what: str) -> None:
    try:
        session.require_role("operator", what)
        method(job_id)
    except DashboardError as exc:
        st.session_state[f"studio.action_error.{job_id}"] = user_message(exc)


def _stem(name: str) -> str:
    stem = Path(name).stem or "products"
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)[:60]


def render_task_title(task: str) -> str:
    return TASK_TITLES.get(task, task)
