"""The product studio's Streamlit side: what each mode renders, the live attempt view, and the live batch card.

Model output and product fields are untrusted: text goes through ``sanitize_markdown`` (HTML off) or
``st.code``/``st.text``/``st.dataframe`` (plain text), labels through ``plain_label``. The batch progress card
is a ``@st.fragment(run_every=...)`` that reads the shared manager, so a refresh or a second browser sees
the same job. Its progress bar shows done, done after repair, failed and remaining rows in their own colours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from components import runtime, session, taxonomy
from components.auth import enter_fragment
from services import format as fmt
from services.errors import DashboardError, InvalidInput, user_message
from services.ollama.options import PRESETS, parse_stop_sequences
from services.safe_text import plain_label, sanitize_markdown
from services.studio.batch import BatchManager
from services.studio.batch_store import Progress
from services.studio.engine import Attempt, TaskResult
from services.studio.tabular import to_csv_bytes, to_xlsx_bytes
from services.studio.tasks import LANGUAGES, TASK_FIELDS, TASK_TITLES, TaskParams
from services.studio.templates import Example, Template, TemplateStore, allowed_placeholders

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


STATUS_BADGES = {"done": ("Done", "green", ":material/check_circle:"),
                 "repaired": ("Done after repair", "blue", ":material/build:"),
                 "failed": ("Failed", "red", ":material/error:")}


def render_attempt(box: Any, attempt: Attempt) -> None:
    """The live view of one attempt while it streams: which attempt, what the model was told, the text so far."""
    update = attempt.update
    with box.container(border=True):
        head = f"Attempt {attempt.number} of {attempt.max_attempts} · {fmt.duration(update.elapsed_s)}"
        if update.waiting:
            head += " · waiting for the model" + (" (it may be loading)" if update.elapsed_s >= 1 else "") + "…"
        elif not update.done:
            head += " · writing…"
        st.caption(head)
        if attempt.feedback:
            st.caption(plain_label(f"Told the model: {attempt.feedback}", 300))
        if update.content:
            st.text(update.content[-3000:])


def render_output(result: TaskResult) -> None:
    """The checked output (or why it failed), how it was obtained (status, attempts, repairs), and speed."""
    label, colour, icon = STATUS_BADGES[result.status]
    st.badge(label, color=colour, icon=icon)  # type: ignore[arg-type]
    if result.ok:
        if result.task in ("extraction", "column_mapping"):
            st.code(json.dumps(result.parsed, indent=2, ensure_ascii=False), language="json")
        elif result.task == "classification":
            taxonomy.render_category(result)
        else:
            st.markdown(sanitize_markdown(result.output))
            st.code(result.output, language=None, wrap_lines=True)
        if result.repairs:
            st.caption(plain_label("Repairs: " + "; ".join(result.repairs), 600))
    elif not (result.task == "classification" and taxonomy.render_not_classified(result)):
        st.error(f"No valid output: {result.error}", icon=":material/error:")
    if result.rejections:
        st.caption(plain_label("Refused attempts: " + " · ".join(
            f"{i}: {why}" for i, why in enumerate(result.rejections, 1)), 600))
    if result.raw and (result.repairs or not result.ok):
        title = "The model's answer before repair" if result.ok else "Last raw answer (failed the checks)"
        with st.expander(title):
            st.code(result.raw, language=None, wrap_lines=True)
    st.caption(stats_line(result))


def stats_line(result: TaskResult) -> str:
    parts = [fmt.seconds(result.duration_s)]
    tps = result.stats.get("tokens_per_second") if result.stats else None
    if tps:
        parts.append(fmt.rate(tps))
    if result.stats.get("eval_count"):
        parts.append(fmt.count(int(result.stats["eval_count"]), "token"))
    parts.append(fmt.count(result.attempts, "attempt"))
    parts.append(f"template {result.template_ref}")
    parts.append(f"model {result.model}")
    return plain_label(" · ".join(parts), 300)


# ---- template editor -------------------------------------------------------------------------------------


def _examples_json(template: Template) -> str:
    return json.dumps([{k: v for k, v in (("language", e.language), ("inputs", e.inputs), ("answer", e.answer)) if v}
                       for e in template.examples], ensure_ascii=False, indent=2)


def _parse_examples(text: str) -> tuple[Example, ...]:
    try:
        items = json.loads(text or "[]")
    except ValueError as exc:
        raise InvalidInput(f"The examples are not valid JSON ({exc.msg}, line {exc.lineno}).") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidInput('The examples must be a JSON list of {"inputs": {...}, "answer": "..."} objects.')
    return tuple(Example.from_dict(i) for i in items)


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
        num_predict = cols[1].number_input(
            "Max tokens", 16, 8192, value=template.num_predict,
            help="Empty: derived from the length asked (descriptions, translations). Otherwise an upper bound.")
        attempts = cols[2].number_input("Attempts when a check fails", 1, 5, value=template.max_attempts)
        stops = st.text_area("Stop sequences (one per line; \\n for a newline)", height=80,
                             value="\n".join(s.replace("\n", "\\n") for s in template.stop))
        examples = st.text_area("Examples of a good answer (few-shot, JSON)", value=_examples_json(template),
                                height=160, help='A list of {"language": "fr", "inputs": {field: value}, '
                                                 '"answer": "..."}; only those that pass this run\'s checks are sent.')
        if st.form_submit_button("Save as new version", icon=":material/save:"):
            try:
                identity = session.require_role("operator", "save a template")
                saved = store.save(task, system=system, prompt=prompt, preset=preset,
                                   num_predict=None if num_predict is None else int(num_predict),
                                   max_attempts=int(attempts), author=identity.subject,
                                   stop=tuple(parse_stop_sequences(stops)), examples=_parse_examples(examples))
            except DashboardError as exc:
                st.error(user_message(exc), icon=":material/edit_off:")
            else:
                on_save(saved)


# ---- batch progress --------------------------------------------------------------------------------------

# Each part of the bar, with its colour and the Markdown colour that names it in the caption beneath.
SEGMENTS = (("done", "Done", "#21c354", "green"), ("repaired", "Done after repair", "#1c83e1", "blue"),
            ("failed", "Failed", "#ff4b4b", "red"), ("running", "Running", "#ffa421", "orange"),
            ("pending", "Left", "#d5dae5", "gray"))
TABLE_ROWS = 200
FULL_ERRORS = 50


def progress_caption(progress: Progress) -> str:
    repaired = f" ({progress.repaired:,} after repair)" if progress.repaired else ""
    return (f"{progress.finished_rows:,} / {progress.total:,} rows · {progress.done:,} done{repaired} · "
            f"{progress.failed:,} failed · {progress.pending + progress.running:,} left · ETA "
            f"{fmt.eta(progress.eta_s)}")


def progress_key() -> str:
    """What the bar's colours mean, in Markdown colours (no HTML)."""
    return " ".join(f":{markdown}[■] {label}" for _key, label, _colour, markdown in SEGMENTS)


def progress_segments(progress: Progress) -> pd.DataFrame:
    """The bar's parts, in order: done as they came, done after repair, failed, running, left."""
    counts = {"done": progress.done - progress.repaired, "repaired": progress.repaired, "failed": progress.failed,
              "running": progress.running, "pending": progress.pending}
    return pd.DataFrame([{"order": i, "part": label, "rows": counts[key]}
                         for i, (key, label, _colour, _markdown) in enumerate(SEGMENTS)])


def progress_chart(progress: Progress) -> alt.Chart:
    """A progress bar in which failed rows show as failed (red), not as progress like any other."""
    data = progress_segments(progress)
    domain = [label for _key, label, _colour, _markdown in SEGMENTS]
    colours = [colour for _key, _label, colour, _markdown in SEGMENTS]
    return alt.Chart(data).mark_bar(height=18).encode(
        x=alt.X("sum(rows):Q", stack="zero", axis=None, scale=alt.Scale(domain=[0, max(progress.total, 1)])),
        color=alt.Color("part:N", scale=alt.Scale(domain=domain, range=colours), legend=None),
        order=alt.Order("order:Q"),
        tooltip=[alt.Tooltip("part:N", title="Rows"), alt.Tooltip("sum(rows):Q", title="Count")],
    ).properties(height=24)


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
        state = "running" if running else job.state
        into = f" into {job.params.taxonomy or 'google-apparel@2013-07-15'}" if job.task == "classification" else ""
        st.markdown(f"**{plain_label(job.source_name)}** · {plain_label(job.template.ref + into)} · "
                    f"{plain_label(job.model)} on {plain_label(job.backend)} · concurrency {job.concurrency} · "
                    f"batch {plain_label(job.id)}")
        st.altair_chart(progress_chart(progress), width="stretch")
        st.caption(f"{state}: {progress_caption(progress)}")
        st.caption(progress_key())
        cols = st.columns(4)
        cols[0].metric("Done", fmt.count(progress.done, "row"),
                       help=f"{progress.repaired:,} of them after a repair (see the repairs column).")
        cols[1].metric("Failed", fmt.count(progress.failed, "row"))
        cols[2].metric("Left", fmt.count(progress.pending + progress.running, "row"))
        cols[3].metric("ETA", fmt.eta(progress.eta_s),
                       help="From this run's own throughput (the last minute of it)." if running
                       else "Shown while the batch runs.")
        if job.message and not running:
            st.caption(plain_label(job.message, 200))
        _job_buttons(manager, job, progress, running)
        _results_table(manager, job_id, progress)


def _job_buttons(manager: BatchManager, job: Any, progress: Progress, running: bool) -> None:
    job_id = job.id
    bar = st.container(horizontal=True)
    if running:
        bar.button("Cancel", icon=":material/cancel:", key=f"studio.cancel.{job_id}",
                   on_click=_action, args=(manager.cancel, job_id, "cancel a batch"))
    else:
        bar.button("Retry failed", icon=":material/replay:", key=f"studio.retry.{job_id}",
                   disabled=progress.failed == 0, on_click=_action,
                   args=(manager.retry_failed, job_id, "retry a batch"),
                   help="Runs only the failed rows again; finished rows are kept.")
        bar.button("Resume", icon=":material/play_arrow:", key=f"studio.resume.{job_id}",
                   disabled=progress.pending + progress.running == 0, on_click=_action,
                   args=(manager.resume, job_id, "resume a batch"))
    bar.download_button(
        "CSV", data=lambda: to_csv_bytes(manager.results_frame(job_id)),
        file_name=f"{_stem(job.source_name)}-{job.task}.csv", mime="text/csv", icon=":material/download:",
        key=f"studio.csv.{job_id}", on_click="ignore",
        help="Every input column plus the results: status, output, error, attempts, repairs (a classification: "
             "the category's id and depth, and google_product_category in Google's taxonomy).")
    bar.download_button(
        "XLSX", data=lambda: to_xlsx_bytes(manager.results_frame(job_id)),
        file_name=f"{_stem(job.source_name)}-{job.task}.xlsx", icon=":material/download:",
        mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", key=f"studio.xlsx.{job_id}",
        on_click="ignore", help="Every input column plus the results; formulas are neutralised.")
    error = st.session_state.pop(f"studio.action_error.{job_id}", None)
    if error:
        st.error(error, icon=":material/error:")


def _results_table(manager: BatchManager, job_id: str, progress: Progress) -> None:
    """Which product each row is (the file's own key columns), its status, output, attempts, repairs, error."""
    only_failed = st.toggle("Only failed rows", key=f"studio.only_failed.{job_id}", disabled=progress.failed == 0
                            and not st.session_state.get(f"studio.only_failed.{job_id}"))
    frame = manager.rows(job_id, status="failed" if only_failed else None, limit=TABLE_ROWS)
    config: dict[str, Any] = {
        "row": st.column_config.NumberColumn("row", width="small"),
        "status": st.column_config.TextColumn("status", width="medium"),
        "output": st.column_config.TextColumn("output", width="large"),
        "attempts": st.column_config.NumberColumn("attempts", width="small"),
        "repairs": st.column_config.TextColumn("repairs", width="medium"),
        "error": st.column_config.TextColumn("error", width="medium"),
        "duration_s": st.column_config.NumberColumn("seconds", format="%.2f", width="small"),
    }
    keys = [c for c in frame.columns if c.startswith("key:")]
    for column in keys:
        config[column] = st.column_config.TextColumn(column.removeprefix("key:"), width="small")
    order = ["row", *keys, "status", "attempts", "output", "repairs", "error", "duration_s"]
    st.dataframe(frame, hide_index=True, width="stretch", height=300, column_config=config, column_order=order)
    shown = progress.failed if only_failed else progress.total
    if shown > TABLE_ROWS:
        st.caption(f"The table shows the first {TABLE_ROWS:,} of {shown:,} rows; the downloads have them all.")
    if progress.failed:
        with st.expander(f"Failed rows in full ({fmt.count(progress.failed, 'row')})", icon=":material/error:"):
            failed = manager.rows(job_id, status="failed", limit=FULL_ERRORS)
            keys = [c for c in failed.columns if c.startswith("key:")]
            for record in failed.to_dict("records"):
                product = " · ".join(str(record[k]) for k in keys if str(record[k]).strip())
                st.markdown(f"**Row {record['row']}** · {plain_label(product, 120)} · "
                            f"{fmt.count(int(record['attempts']), 'attempt')}")
                st.code(record["error"], language=None, wrap_lines=True)
            if progress.failed > FULL_ERRORS:
                st.caption(f"The first {FULL_ERRORS} failed rows; the downloads have every error.")


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
