"""The batch side of the product studio: which backends a batch runs on (and whether they hold the same
weights), the live job card with its per-backend throughput, and the queue.

The card is a ``@st.fragment(run_every=...)`` that reads the shared manager, so a refresh, a second browser or a
second dashboard process sees the same job; its progress bar shows done, done after repair, failed and remaining
rows in their own colours, and reads the job's counters only (a 100,000-row job costs the same as a small one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from components import runtime, session
from components.auth import enter_fragment
from services import format as fmt
from services.config import Backend
from services.errors import DashboardError, user_message
from services.safe_text import plain_label
from services.studio.batch import BatchManager
from services.studio.batch_store import CLI_OWNER, JobInfo, LaneSpec, Progress
from services.studio.fleet import FleetPlan, plan_fleet
from services.studio.tabular import to_csv_bytes, to_xlsx_bytes
from services.studio.taxonomy_store import LEGACY_REF

PROGRESS_EVERY_S = 1.0
PLAN_TTL_S = 30
MIXED = "mixed"
LANE_STATES = {"running": "working", "probing": "trying again", "paused": "paused", "removed": "removed"}


def batch_manager() -> BatchManager:
    return runtime.batch_manager()


# ---- which backends -----------------------------------------------------------------------------------------
@st.cache_data(ttl=PLAN_TTL_S, max_entries=64, show_spinner="Asking the backends which models they hold…")
def fleet_plan(model: str, names: tuple[str, ...]) -> FleetPlan:
    """Which of these backends hold ``model``, with which weights (cached briefly: one listing per backend)."""
    backends = [b for b in runtime.settings().backends if b.name in names]
    clients = {b.name: runtime.client(b) for b in backends}  # cached resources are read on the script thread
    return plan_fleet(model, backends, lambda b: clients[b.name])


def plan_frame(plan: FleetPlan) -> pd.DataFrame:
    return pd.DataFrame([{"backend": e.name, "kind": e.kind, "slots": e.slots, "model": "yes" if e.has_model
                          else ("?" if e.error else "no"), "weights": e.short_digest,
                          "note": ("overflow (used when the others are full)" if e.overflow else "") or e.error}
                         for e in plan.entries])


def choose_lanes(model: str, current: Backend) -> list[LaneSpec] | None:
    """The backends a batch runs on, each with its slots; None (with the reason shown) when none can run it.

    Several backends are checked first: one that lacks the model is left out, and when they hold different
    weights under one name the person chooses which weights (or knowingly mixes them)."""
    names = [b.name for b in runtime.settings().backends]
    chosen: Sequence[str] = names
    if len(names) > 1:
        cols = st.columns([3, 2])
        every = cols[1].toggle("Every backend that has the model", key="studio.batch.all_backends",
                               help="Ollama Cloud takes part as overflow: it gets rows only when the others are full.")
        if not every:
            chosen = cols[0].multiselect("Backends", names, default=[current.name], key="studio.batch.backends",
                                         help="Rows go to whichever backend has a free slot: a fast host takes more.")
    if not chosen:
        st.info("Choose at least one backend.", icon=":material/dns:")
        return None
    if len(chosen) == 1:
        backend = next(b for b in runtime.settings().backends if b.name == chosen[0])
        return [LaneSpec(backend.name, backend.slots)]
    plan = fleet_plan(model, tuple(chosen))
    st.dataframe(plan_frame(plan), hide_index=True, width="stretch")
    selected = [e.name for e in plan.usable]
    if plan.mismatch:
        st.warning(plain_label(plan.mismatch_text(), 600), icon=":material/difference:")
        options = [*sorted(plan.by_digest, key=lambda d: -len(plan.by_digest[d])), MIXED]
        pick = st.radio("Which weights should this batch use?", options, key=f"studio.batch.weights.{model}",
                        format_func=lambda d: "All of them: mix the answers of different weights" if d == MIXED
                        else f"{d.removeprefix('sha256:')[:12]} only ({', '.join(plan.by_digest[d])})")
        if pick != MIXED:
            selected = [n for n in selected if n in plan.by_digest[pick]]
    lanes = plan.lanes(selected)
    if not lanes:
        st.warning(f"None of the chosen backends has {plain_label(model)}.", icon=":material/block:")
        return None
    return lanes


# ---- the queue ------------------------------------------------------------------------------------------------
def render_queue(manager: BatchManager) -> None:
    """Running and queued batches of everyone, with their place in the queue and per-backend throughput."""
    board = manager.board()
    if not board:
        return
    mine = session.current_identity().subject
    rows = []
    for item in board:
        p = item.progress
        rows.append({"file": item.job.source_name, "owner": item.job.owner + (" (you)" if item.job.owner == mine
                                                                            else ""),
                     "state": "paused" if p.paused else p.state,
                     "place": str(p.queue_position) if p.queue_position else "",
                     "rows": f"{p.finished_rows:,} / {p.total:,}",
                     "rows/s": f"{p.rows_per_s:.2f}" if p.rows_per_s else "",
                     "backends": ", ".join(f"{lane.name} {fmt.rate(lane.rows_per_s, 'rows/s')}" for lane in p.lanes)
                     or item.job.where, "ETA": fmt.eta(p.eta_s)})
    st.caption(f"Running and queued batches ({len(board)}); at most {manager.scheduler.max_running} run at once, "
               "the rest start in turn, one person after another.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "place": st.column_config.TextColumn(width="small"), "rows/s": st.column_config.TextColumn(width="small")})


def render_lanes(progress: Progress) -> None:
    """Per-backend throughput of the run: slots, rows in flight, rows written, rows per second, pauses."""
    frame = pd.DataFrame([{"backend": lane.name + (" (overflow)" if lane.overflow else ""),
                           "state": LANE_STATES.get(lane.state, lane.state), "slots": lane.slots,
                           "in flight": lane.in_flight, "rows": lane.done,
                           "rows/s": f"{lane.rows_per_s:.2f}" if lane.rows_per_s else "",
                           "given back": lane.handed_back,
                           "note": lane.error + (f" (next try in {lane.retry_in_s:.0f} s)"
                                                 if lane.retry_in_s else "")} for lane in progress.lanes])
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "rows/s": st.column_config.TextColumn(width="small"), "note": st.column_config.TextColumn(width="large")})
    for lane in progress.lanes:
        if lane.state in ("paused", "probing", "removed"):
            st.caption(plain_label(f"{lane.name} {LANE_STATES[lane.state]}: {lane.error}", 400)
                       + " · its rows go to the other backends")


# ---- the job card --------------------------------------------------------------------------------------

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
    """The live card: a fragment that re-runs every second while the job is queued or runs, and stops when it
    ends."""
    active = manager.is_active(job_id)
    st.fragment(run_every=PROGRESS_EVERY_S if active else None)(_job_card)(manager, job_id, active)


def state_label(job: JobInfo, progress: Progress, running: bool) -> str:
    if progress.state == "queued":
        return f"queued (place {progress.queue_position} in the queue)" if progress.queue_position else "queued"
    if progress.state == "running" and not running:
        if job.owner == CLI_OWNER:
            return "interrupted (the command-line run stopped; Resume continues it here)"
        return "interrupted (its dashboard process stopped; the next one continues it shortly)"
    return "running" if running else job.state


def _job_card(manager: BatchManager, job_id: str, was_active: bool) -> None:
    enter_fragment()  # fragment reruns skip app.py's sign-in gate
    try:
        job = manager.job(job_id)
        progress = manager.progress(job_id)
        running = manager.is_running(job_id)
        active = running or progress.state == "queued"
    except DashboardError as exc:
        st.error(user_message(exc))
        return
    if was_active and not active:
        st.rerun(scope="app")  # the job ended: redraw the page once, without the timer
    with st.container(border=True):
        into = f" into {job.params.taxonomy or LEGACY_REF}" if job.task == "classification" else ""
        st.markdown(f"**{plain_label(job.source_name)}** · {plain_label(job.template.ref + into)} · "
                    f"{plain_label(job.model)} on {plain_label(job.where)} · {job.concurrency} slots · "
                    f"started by {plain_label(job.owner)} · batch {plain_label(job.id)}")
        st.altair_chart(progress_chart(progress), width="stretch")
        st.caption(f"{state_label(job, progress, running)}: {progress_caption(progress)}")
        st.caption(progress_key())
        # One container for what comes and goes (pause, backends, the final message): the elements after it keep
        # their places between the fragment's runs and the page's, so nothing is drawn twice while it redraws.
        with st.container():
            if progress.paused:
                st.warning(plain_label(progress.paused.capitalize(), 600), icon=":material/pause_circle:")
            if progress.lanes:
                render_lanes(progress)
            if job.message and not active:
                st.caption(plain_label(job.message, 200))
        cols = st.columns(4)
        cols[0].metric("Done", fmt.count(progress.done, "row"),
                       help=f"{progress.repaired:,} of them after a repair (see the repairs column).")
        cols[1].metric("Failed", fmt.count(progress.failed, "row"))
        cols[2].metric("Left", fmt.count(progress.pending + progress.running, "row"))
        cols[3].metric("ETA", fmt.eta(progress.eta_s),
                       help="From this run's own throughput (the last minute of it)." if running
                       else "Shown while the batch runs.")
        _job_buttons(manager, job, progress, active)
        _results_table(manager, job_id, progress)


def _job_buttons(manager: BatchManager, job: Any, progress: Progress, running: bool) -> None:
    job_id = job.id
    bar = st.container(horizontal=True)
    if running:
        bar.button("Cancel", icon=":material/cancel:", key=f"studio.cancel.{job_id}",
                   on_click=_action, args=(manager.cancel, job_id, "cancel a batch"),
                   help="Stops it now (or takes it out of the queue); unfinished rows stay pending.")
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
        "backend": st.column_config.TextColumn("backend", width="small"),
    }
    keys = [c for c in frame.columns if c.startswith("key:")]
    for column in keys:
        config[column] = st.column_config.TextColumn(column.removeprefix("key:"), width="small")
    order = ["row", *keys, "status", "attempts", "output", "repairs", "error", "duration_s", "backend"]
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


