"""Product studio: descriptions, extraction, classification, column mapping and translation, for one
product, side by side on several models, or over a whole supplier file as a server-side batch."""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import streamlit as st

from components import batch, session, studio, taxonomy
from components import chat as chat_view
from components.router import enter_page
from services import format as fmt
from services.errors import DashboardError, InvalidInput, user_message
from services.images import FILE_TYPES, MAX_UPLOAD_MB, clean_image, require_vision
from services.ollama.client import OllamaClient
from services.safe_text import plain_label
from services.studio.engine import Attempt, TaskResult, run_task
from services.studio.tabular import MAX_UPLOAD_BYTES, Table, read_csv_bytes, read_table
from services.studio.tasks import BATCH_TASKS, TASK_FIELDS, TASK_TITLES, TASKS, TaskParams, suggest_mapping

MODES = {"single": "Single product", "compare": "Compare models", "batch": "Batch", "templates": "Templates",
         "taxonomies": "Taxonomies"}
NONE = "— not mapped —"
DEFAULT_ROW_SECONDS = 3.0

enter_page("descriptions")
backend = session.current_backend()
store = studio.template_store()
st.title("Product studio", anchor=False)
st.caption("Marketing descriptions, structured extraction, taxonomy classification (the full Google product taxonomy "
           "or the company's own), supplier column mapping and translation. Every output is checked before it is "
           "kept.")

models_error = ""
try:
    models = [m.name for m in session.installed_models(backend) if "embedding" not in m.capabilities]
except DashboardError as exc:
    models, models_error = [], user_message(exc)

if "studio.mode" not in st.session_state:
    st.session_state["studio.mode"] = st.query_params.get("mode", "single") if st.query_params.get(
        "mode") in MODES else "single"
mode = st.segmented_control("Mode", list(MODES), key="studio.mode", format_func=MODES.get, required=True,
                            label_visibility="collapsed")


def one_line(text: str, limit: int = 120) -> str:
    """Option labels are plain text (not Markdown): only collapse whitespace and shorten."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def choose_model(key: str) -> str | None:
    if models_error:
        st.info("The model list is unavailable, so nothing can run right now. " + models_error, icon=":material/info:")
        return None
    if not models:
        st.info("No models are installed on this backend. Pull one on the Models page, e.g. `llama3.2:1b`.",
                icon=":material/info:")
        return None
    return st.selectbox("Model", models, key=key)


def choose_template(task: str, key: str) -> Any:
    versions = store.versions(task)
    version = st.selectbox("Template", [t.version for t in reversed(versions)], key=f"{key}.{task}",
                           format_func=lambda v: f"{task}@v{v}" + (" (latest)" if v == versions[-1].version else ""))
    return store.get(task, version)


def mapping_inputs(prefix: str) -> dict[str, Any]:
    """Column mapping takes a pasted excerpt of the supplier file (header row plus a few rows)."""
    text = st.text_area("Header row and a few rows of the supplier file (CSV)", key=f"{prefix}.excerpt", height=140,
                        max_chars=20_000, placeholder="Designation;Prix TTC;Code EAN;Descriptif\nRobe Lina;89,90;...")
    if not text.strip():
        return {}
    table = read_csv_bytes(text.encode("utf-8"), "excerpt.csv")
    sample = table.frame.head(5).to_csv(index=False)
    return {"headers": table.columns, "sample": sample}


def run_one(model: str, task: str, template: Any, inputs: dict[str, Any], params: TaskParams,
            client: OllamaClient | None = None, on_attempt: Callable[[Attempt], None] | None = None,
            images: list[str] | None = None) -> TaskResult:
    """One product through one task; ``client`` is fetched on the script thread when not given."""
    chosen = taxonomy.taxonomy_for(params) if task == "classification" else None
    return run_task(client or session.get_client(backend), template, model, inputs, params, on_attempt=on_attempt,
                    taxonomy=chosen, images=images or ())


PHOTO_TASKS = ("description", "extraction", "classification")


def photo_input(task: str, model: str | None) -> list[str] | None:
    """An optional product photo, checked like a chat picture: raw base64 to send, [] without one, None (the
    reason shown) when it is refused, including for a model without the vision capability."""
    if task not in PHOTO_TASKS:
        return []
    uploaded = st.file_uploader("Product photo (optional, for a vision model)", type=list(FILE_TYPES),
                                key="studio.single.photo", max_upload_size=MAX_UPLOAD_MB,
                                help="PNG, JPEG or WebP. The output then uses what the photo shows plus the fields.")
    if uploaded is None:
        return []
    cached = st.session_state.get("studio.single.photo_clean")
    if cached is None or cached[0] != uploaded.file_id:
        try:
            cached = (uploaded.file_id, clean_image(uploaded.getvalue(), uploaded.name))
        except InvalidInput as exc:
            cached = (uploaded.file_id, str(exc))
        st.session_state["studio.single.photo_clean"] = cached
    try:
        if isinstance(cached[1], str):
            raise InvalidInput(cached[1])
        if model:
            require_vision(model, chat_view.model_capabilities(backend, model, session.installed_models(backend)), 1)
    except DashboardError as exc:
        st.error(user_message(exc), icon=":material/hide_image:")
        return None
    st.image(cached[1].thumbnail, width=160, caption=cached[1].describe())
    return [cached[1].base64()]


# ---- single product ------------------------------------------------------------------------------------
def task_inputs(task: str, prefix: str) -> tuple[dict, TaskParams] | None:
    """The task's input form and its parameters; None (with the reason shown) when the input is refused."""
    try:
        inputs = mapping_inputs(prefix) if task == "column_mapping" else studio.render_fields(task, prefix)
    except InvalidInput as exc:
        st.error(user_message(exc), icon=":material/edit_off:")
        return None
    params = studio.render_params(task, prefix)
    if task == "classification":
        params = taxonomy.classification_params(prefix, params)
    return inputs, params


def single_choices() -> tuple[str, str | None, Any]:
    top = st.columns([2, 2, 2])
    with top[0]:
        task = st.selectbox("Task", TASKS, key="studio.single.task", format_func=TASK_TITLES.get)
    with top[1]:
        model = choose_model("studio.single.model")
    with top[2]:
        template = choose_template(task, "studio.single.template")
    return task, model, template


def single_request(task: str, model: str | None, template: Any, inputs: dict[str, Any],
                   params: TaskParams) -> dict[str, Any] | None:
    """The request the Generate / Regenerate buttons ask for (None when neither was clicked)."""
    last = st.session_state.get("studio.single.last")
    bar = st.container(horizontal=True)
    generate = bar.button("Generate", type="primary", icon=":material/auto_awesome:", disabled=not model,
                          key="studio.single.go")
    regenerate = bar.button("Regenerate", icon=":material/refresh:", disabled=last is None,
                            key="studio.single.again", help="Run the last request again, as it was.")
    if generate and model:
        return {"model": model, "task": task, "template": template, "inputs": inputs, "params": params}
    if regenerate and last is not None:
        return last["request"]
    return None


def single_run(request: dict[str, Any]) -> None:
    """Stream each attempt live (with its number and what the model was told), then show the result once."""
    try:
        session.require_role("operator", "generate")
        live = st.empty()
        result = run_one(**request, on_attempt=lambda attempt: studio.render_attempt(live, attempt))
    except DashboardError as exc:
        st.error(user_message(exc), icon=":material/error:")
        return
    st.session_state["studio.single.last"] = {"request": request, "result": result}
    st.rerun()  # redraw with the result once, and Regenerate enabled


def single_result() -> None:
    last = st.session_state.get("studio.single.last")
    if last is not None:
        with st.container(border=True):
            studio.render_output(last["result"])


def single_mode() -> None:
    task, model, template = single_choices()
    gathered = task_inputs(task, "studio.single")
    if gathered is None:
        return
    inputs, params = gathered
    photos = photo_input(task, model)  # None: refused (the reason is shown), so Generate is off
    request = single_request(task, model if photos is not None else None, template, inputs, params)
    if request is not None:
        request.setdefault("images", photos or [])  # a Regenerate keeps the photo it was first run with
        single_run(request)
    single_result()


# ---- compare -------------------------------------------------------------------------------------------
def compare_mode() -> None:
    top = st.columns([2, 4])
    task = top[0].selectbox("Task", TASKS, key="studio.compare.task", format_func=TASK_TITLES.get)
    if models_error or not models:
        choose_model("studio.compare.none")
        return
    chosen = top[1].multiselect("Models (2 or 3)", models, key="studio.compare.models", max_selections=3,
                                default=models[:2])
    template = choose_template(task, "studio.compare.template")
    gathered = task_inputs(task, "studio.compare")
    if gathered is None:
        return
    inputs, params = gathered
    if st.button("Compare", type="primary", icon=":material/compare:", disabled=len(chosen) < 2,
                 key="studio.compare.go"):
        try:
            session.require_role("operator", "compare models")
            client = session.get_client(backend)  # cached resources are read here, not in the pool's threads
            with st.spinner(f"Running {template.ref} on {len(chosen)} models…"), ThreadPoolExecutor(3) as pool:
                # Each worker runs in a copy of this run's context: the person acting (a gateway token) goes along.
                futures = [pool.submit(contextvars.copy_context().run, run_one, m, task, template, inputs, params,
                                       client) for m in chosen]
                st.session_state["studio.compare.results"] = [f.result() for f in futures]
        except DashboardError as exc:
            st.error(user_message(exc), icon=":material/error:")
    results: list[TaskResult] = st.session_state.get("studio.compare.results", [])
    if results:
        for column, result in zip(st.columns(len(results)), results, strict=True):
            with column.container(border=True):
                st.markdown(f"**{plain_label(result.model)}**")
                studio.render_output(result)


# ---- batch ---------------------------------------------------------------------------------------------
def load_upload() -> Table | None:
    uploaded = st.file_uploader("Supplier file (CSV or XLSX, with a header row)", type=["csv", "txt", "tsv", "xlsx"],
                                key="studio.batch.file", max_upload_size=MAX_UPLOAD_BYTES // (1024 * 1024))
    if uploaded is None:
        return None
    cache = st.session_state.get("studio.batch.parsed")
    if cache is None or cache[0] != uploaded.file_id:
        try:
            parsed: Table | str = read_table(uploaded.getvalue(), uploaded.name)
        except InvalidInput as exc:
            parsed = str(exc)
        cache = (uploaded.file_id, parsed)
        st.session_state["studio.batch.parsed"] = cache
    if isinstance(cache[1], str):
        st.error(f"{plain_label(uploaded.name)} was not accepted: {cache[1]}", icon=":material/block:")
        return None
    return cache[1]


def batch_mapping(task: str, table: Table) -> dict[str, str | None]:
    """The field -> column choices, suggested from the headers; a new file starts from its own suggestions."""
    tag = hashlib.sha1(table_key(table).encode()).hexdigest()[:8]
    st.markdown("**Map the file's columns to the task's fields**")
    suggested = suggest_mapping(task, table.columns)
    options = [NONE, *table.columns]
    mapping: dict[str, str | None] = {}
    fields = TASK_FIELDS[task]
    cols = st.columns(min(len(fields), 3))
    for i, spec in enumerate(fields):
        default = suggested.get(spec.name)
        choice = cols[i % len(cols)].selectbox(
            spec.label + (" *" if spec.required else ""), options, key=f"studio.batch.map.{tag}.{task}.{spec.name}",
            index=options.index(default) if default in options else 0)
        mapping[spec.name] = None if choice == NONE else choice
    return mapping


def missing_required(task: str, table: Table, mapping: dict[str, str | None]) -> list[str]:
    """What stops a Run, in the words of the form: unmapped required fields by their labels."""
    return [f"Map a column to “{spec.label}” (required)." for spec in TASK_FIELDS[task]
            if spec.required and not mapping.get(spec.name)]


def empty_required(task: str, table: Table, mapping: dict[str, str | None]) -> list[str]:
    """Rows that will fail for an empty required field, counted before Run."""
    notes = []
    for spec in TASK_FIELDS[task]:
        column = mapping.get(spec.name)
        if spec.required and column in table.frame.columns:
            empty = int((table.frame[column].astype(str).str.strip() == "").sum())
            if empty:
                notes.append(f"{fmt.count(empty, 'row')} with no {spec.label} (column {column!r}): they will fail.")
    return notes


def batch_setup(table: Table, running_job: str | None) -> None:
    st.caption(plain_label(f"{table.source_name}: {len(table):,} rows, {len(table.columns)} columns · "
                           + " · ".join(table.notes), 300))
    top = st.columns([2, 2, 2])
    task = top[0].selectbox("Task", BATCH_TASKS, key="studio.batch.task", format_func=TASK_TITLES.get)
    with top[1]:
        model = choose_model("studio.batch.model")
    with top[2]:
        template = choose_template(task, "studio.batch.template")
    lanes = batch.choose_lanes(model, backend) if model else None
    slots = sum(lane.slots for lane in lanes or ())
    params = studio.render_params(task, "studio.batch")
    if task == "classification":
        params = taxonomy.classification_params("studio.batch", params)
    mapping = batch_mapping(task, table)
    st.markdown("**Preview** (first rows)")
    st.dataframe(table.frame.head(5), hide_index=True, width="stretch")
    manager = batch.batch_manager()
    per_row = manager.average_row_seconds(task, model) if model else None
    basis = "measured on earlier runs" if per_row else f"assuming about {fmt.duration(DEFAULT_ROW_SECONDS)} per row"
    if slots:
        estimate = len(table) * (per_row or DEFAULT_ROW_SECONDS) / slots
        st.caption(f"Estimated time: {fmt.duration(estimate)} for {fmt.count(len(table), 'row')} on "
                   f"{fmt.count(len(lanes or ()), 'backend')} with {slots} slots in all ({basis}; each backend's "
                   "slots come from the backends file).")
    blockers = missing_required(task, table, mapping)
    for blocker in blockers:
        st.warning(blocker, icon=":material/rule:")
    for note in empty_required(task, table, mapping):
        st.caption(plain_label(note, 200))
    if running_job:
        st.info("This file is running as the batch above; Run is available again when it ends.",
                icon=":material/hourglass_top:")
    if st.button("Run batch", type="primary", icon=":material/play_arrow:",
                 disabled=not model or not lanes or bool(blockers) or bool(running_job), key="studio.batch.go",
                 help="It starts at once, or waits its turn when the most batches allowed at once are running."):
        try:
            identity = session.require_role("operator", "run a batch")
            job_id = manager.create_job(table, template=template, model=str(model), params=params, mapping=mapping,
                                        lanes=lanes, owner=identity.subject)
            manager.start(job_id)
        except DashboardError as exc:
            st.error(user_message(exc), icon=":material/error:")
        else:
            st.session_state["studio.batch.want"] = job_id
            st.session_state.setdefault("studio.batch.runs", {})[table_key(table)] = job_id
            st.query_params["job"] = job_id
            st.rerun()  # to the running job, at the top of the page


def table_key(table: Table) -> str:
    return f"{table.source_name}:{len(table)}:{','.join(table.columns)}"


def running_job_for(table: Table | None) -> str | None:
    """The batch this session started from this file, while it runs (Run is disabled for it meanwhile)."""
    if table is None:
        return None
    job_id = st.session_state.get("studio.batch.runs", {}).get(table_key(table))
    return job_id if job_id and batch.batch_manager().is_active(job_id) else None


def batch_job_card() -> None:
    """The chosen batch, at the top: the one just started, else the one in the address, else a running one."""
    manager = batch.batch_manager()
    batch.render_queue(manager)
    jobs = manager.jobs(limit=20)
    if not jobs:
        return
    ids = [j.id for j in jobs]
    wanted = st.session_state.pop("studio.batch.want", None) or st.session_state.get("studio.batch.job") \
        or st.query_params.get("job")
    if wanted not in ids:
        running = [j.id for j in jobs if manager.is_running(j.id)]
        wanted = running[0] if running else ids[0]
    labels = {j.id: f"{j.source_name} · {j.task} · {j.model} · {j.state} · {j.id}" for j in jobs}
    st.session_state["studio.batch.job"] = wanted
    job_id = st.selectbox("Batch", ids, key="studio.batch.job", format_func=lambda i: one_line(labels[i]))
    if st.query_params.get("job") != job_id:
        st.query_params["job"] = job_id
    batch.render_job(manager, job_id)


def batch_mode() -> None:
    batch_job_card()
    st.markdown("**New batch**")
    table = load_upload()
    if table is not None:
        with st.container(border=True):
            batch_setup(table, running_job_for(table))


# ---- templates -----------------------------------------------------------------------------------------
def templates_mode() -> None:
    task = st.selectbox("Task", TASKS, key="studio.tpl.task", format_func=TASK_TITLES.get)
    saved = st.session_state.pop("studio.tpl.saved", None)
    if saved:
        st.success(f"Saved {saved}. New runs use it; earlier results keep the version that produced them.",
                   icon=":material/check:")

    def on_save(template: Any) -> None:
        st.session_state["studio.tpl.saved"] = template.ref
        st.session_state.pop(f"studio.tpl.{template.task}.version", None)
        st.rerun()

    studio.render_template_editor(task, store, on_save)


if st.query_params.get("mode") != mode:
    st.query_params["mode"] = mode
{"single": single_mode, "compare": compare_mode, "batch": batch_mode, "templates": templates_mode,
 "taxonomies": taxonomy.taxonomies_view}[mode]()
