"""The product studio's Streamlit side: what each mode renders and the live attempt view (the batch card and the
choice of backends are in ``components.batch``).

Model output and product fields are untrusted: text goes through ``sanitize_markdown`` (HTML off) or
``st.code``/``st.text``/``st.dataframe`` (plain text), labels through ``plain_label``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import streamlit as st

from components import runtime, session, taxonomy
from services import format as fmt
from services.errors import DashboardError, InvalidInput, user_message
from services.ollama.options import PRESETS, parse_stop_sequences
from services.safe_text import plain_label, sanitize_markdown
from services.studio.engine import Attempt, TaskResult
from services.studio.tasks import LANGUAGES, TASK_FIELDS, TASK_TITLES, TaskParams
from services.studio.templates import Example, Template, TemplateStore, allowed_placeholders

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0


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


def render_task_title(task: str) -> str:
    return TASK_TITLES.get(task, task)
