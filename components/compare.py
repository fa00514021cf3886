"""Render the comparison stage: big, side-by-side columns readable from the back of a room.

Model output only ever goes through ``sanitize_markdown`` into ``st.markdown`` (HTML off) or
``st.text``; names and backends go through ``plain_label``. The only HTML here is our own stylesheet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from services.safe_text import plain_label, sanitize_markdown
from services.stage.compare import ComparisonRun
from services.stage.lineup import ColumnSnapshot
from services.stage.report import TIE, CompareSession, RoundRecord

# Our own, static CSS: larger type on the stage (model output stays Markdown, never HTML).
STAGE_CSS = """
<style>
[class*="st-key-compare-col-"] [data-testid="stMarkdownContainer"] p,
[class*="st-key-compare-col-"] [data-testid="stMarkdownContainer"] li { font-size: 1.2rem; line-height: 1.5; }
[class*="st-key-compare-col-"] [data-testid="stMetricLabel"] p { font-size: 0.95rem; color: #4b5563; }
[class*="st-key-compare-col-"] [data-testid="stMetricValue"] p { font-size: 2.6rem; font-weight: 600; }
[class*="st-key-compare-col-"] [data-testid="stCaptionContainer"] p { font-size: 0.95rem; }
[class*="st-key-compare-col-"] h3 { font-size: 1.7rem; }
.st-key-compare-prompt [data-testid="stMarkdownContainer"] p { font-size: 1.35rem; }
</style>
"""

OUTPUT_HEIGHT_PX = 420
# Redraws per second are bounded: Streamlit re-sends a column's whole text on each redraw.
FRAME_S = 0.08
ACTIVE_KEY = "compare.active_run"

STATUS_TEXT = {
    "pending": ":material/schedule: Getting ready…",
    "warming": ":material/local_fire_department: Warming up (loading the model, not timed)…",
    "ready": ":material/check_circle: Loaded; waiting for the others…",
    "stopped": ":material/stop_circle: Stopped; the text above is partial.",
}


def inject_stage_css() -> None:
    st.html(STAGE_CSS)


@dataclass
class ColumnView:
    """The three parts of a column, redrawn separately: the name rarely, figures often, text as it grows."""

    head: DeltaGenerator
    figures: DeltaGenerator
    body: DeltaGenerator
    drawn: dict[str, Any] = field(default_factory=dict)


def stage(slots: Sequence[str]) -> dict[str, ColumnView]:
    """One bordered column per slot, each with placeholders redrawn as its stream advances."""
    columns = st.columns(len(slots), border=True, gap="medium")
    views = {}
    for column, slot in zip(columns, slots, strict=True):
        with column, st.container(key=f"compare-col-{slot}"):
            views[slot] = ColumnView(st.empty(), st.empty(), st.empty())
    return views


def _figures(snap: ColumnSnapshot) -> tuple[str, str]:
    ttft = f"{snap.first_token_s:.2f} s" if snap.first_token_s is not None else "–"
    tps = snap.tokens_per_s
    return ttft, (f"{tps:.0f}" if tps else "–")


def _details(snap: ColumnSnapshot, hidden: bool) -> str:
    parts = []
    if snap.stats is not None:
        if snap.stats.eval_count:
            parts.append(f"{snap.stats.eval_count} tokens")
        if snap.stats.total_duration_ns:
            parts.append(f"total {snap.stats.total_s:.2f} s")
        if snap.stats.done_reason == "length":
            parts.append("stopped at the token limit")
    elif snap.chunks:
        parts.append(f"{snap.chunks} tokens so far")
    if snap.warmup_s is not None:
        parts.append(f"warmed up first ({snap.warmup_s:.1f} s, not timed)")
    if not hidden:
        if snap.digest:
            parts.append("digest " + snap.digest.removeprefix("sha256:")[:12])
        if snap.ollama_version:
            parts.append(f"Ollama {snap.ollama_version}")
    return " · ".join(parts)


def _draw_head(snap: ColumnSnapshot, name: str, hidden: bool) -> None:
    st.subheader(plain_label(name), anchor=False)
    st.caption(plain_label(f"Model {snap.slot} · backend hidden" if hidden else f"Model {snap.slot} · {snap.backend}"))


def _draw_figures(snap: ColumnSnapshot, hidden: bool) -> None:
    left, right = st.columns(2)
    ttft, tps = _figures(snap)
    left.metric("First token", ttft)
    right.metric("Tokens/s", tps, help="Live: tokens received per second so far. Done: Ollama's own "
                 "eval_count / eval_duration.")
    if snap.cold_start:
        st.warning(f"Cold start: the model loaded during this request ({snap.load_s:.1f} s, counted in the "
                   "first token).", icon=":material/ac_unit:")
    details = _details(snap, hidden)
    if details:
        st.caption(plain_label(details, limit=300))
    if snap.status in STATUS_TEXT:
        st.caption(STATUS_TEXT[snap.status])
    elif snap.status == "waiting":
        st.caption(f":material/hourglass_top: Waiting for the first token… {snap.elapsed_s:.1f} s")
    elif snap.status == "streaming":
        st.caption(":material/stream: Streaming (live figures)")
    if snap.error:
        st.error(snap.error, icon=":material/error:")


def _draw_body(snap: ColumnSnapshot) -> None:
    if snap.thinking:
        with st.expander("Thinking", icon=":material/psychology:", expanded=False):
            st.text(snap.thinking)
    # A fixed-height, self-scrolling box keeps every column's latest words, the votes and the tally on screen.
    with st.container(height=OUTPUT_HEIGHT_PX, autoscroll=True, border=False):
        if snap.content:
            st.markdown(sanitize_markdown(snap.content))
        elif snap.status in ("done", "error", "stopped"):
            st.markdown("_(no text)_")


def render_column(view: ColumnView, snap: ColumnSnapshot, name: str, *, hidden: bool,
                  parts: Sequence[str] = ("head", "figures", "body")) -> None:
    """Redraw only the parts of a column whose data changed since the last draw."""
    drawers = {
        "head": ((name, hidden), lambda: _draw_head(snap, name, hidden)),
        "figures": ((_figures(snap), _details(snap, hidden), snap.status, snap.error, snap.cold_start,
                     round(snap.elapsed_s, 1) if snap.status == "waiting" else 0),
                    lambda: _draw_figures(snap, hidden)),
        "body": ((len(snap.content), len(snap.thinking), snap.status in ("done", "error", "stopped")),
                 lambda: _draw_body(snap)),
    }
    for part, (signature, draw) in drawers.items():
        if part not in parts or view.drawn.get(part) == signature:
            continue
        view.drawn[part] = signature
        with getattr(view, part).container():
            draw()


def snapshot_from_record(column: Mapping[str, Any]) -> ColumnSnapshot:
    """A stored column (``ColumnSnapshot.as_dict``) back as a snapshot, to redraw a finished round."""
    from services.ollama.wire import GenerationStats

    stats = column.get("stats") or {}
    return ColumnSnapshot(
        slot=str(column.get("slot", "")), model=str(column.get("model", "")), backend=str(column.get("backend", "")),
        backend_kind=str(column.get("backend_kind", "")), status=column.get("status", "done"),
        content=str(column.get("content") or ""), thinking=str(column.get("thinking") or ""),
        digest=str(column.get("digest") or ""), ollama_version=str(column.get("ollama_version") or ""),
        error=str(column.get("error") or ""), first_token_s=column.get("first_token_s"),
        elapsed_s=float(column.get("elapsed_s") or 0.0), chunks=int(column.get("chunks") or 0),
        warmup_s=column.get("warmup_s"),
        stats=GenerationStats.from_final(stats, ttft_s=stats.get("time_to_first_token_s"),
                                         wall_s=stats.get("wall_time_s")) if stats else None,
    )


def render_round(session: CompareSession, record: RoundRecord) -> None:
    views = stage([e["slot"] for e in session.lineup])
    for column in record.columns:
        snap = snapshot_from_record(column)
        if snap.slot in views:
            render_column(views[snap.slot], snap, session.display_name(snap.slot), hidden=session.hidden)


def stream_round(session: CompareSession, record: RoundRecord, run: ComparisonRun) -> None:
    """Drive ``run`` from this script thread, redrawing only what changed, at most every ``FRAME_S``.

    ``record`` is in session state and always holds the latest snapshots, so a Stop click (which
    interrupts this loop and aborts every stream) or a rerun loses nothing.
    """
    st.button("Stop", icon=":material/stop:", key="compare.stop", type="primary",
              help="Stops every column at once and closes every connection to the models.")
    views = stage([e["slot"] for e in session.lineup])
    for snap in run.snapshots():  # names first, so the first token's frame carries only figures and text
        render_column(views[snap.slot], snap, session.display_name(snap.slot), hidden=session.hidden,
                      parts=("head",))
    frames = run.frames(interval_s=FRAME_S)
    st.session_state[ACTIVE_KEY] = (run, record)
    try:
        with closing(frames):
            for snaps in frames:
                record.update(snaps)
                for snap in snaps:
                    render_column(views[snap.slot], snap, session.display_name(snap.slot), hidden=session.hidden)
    finally:
        run.close()
        record.update(run.snapshots())
        if st.session_state.get(ACTIVE_KEY, (None,))[0] is run:
            del st.session_state[ACTIVE_KEY]


def settle_interrupted_run() -> None:
    """Stop the round a click interrupted, before drawing anything.

    With fast reruns, Streamlit starts the new script run at once, while the interrupted one is still
    unwinding; stopping its streams here (again, harmlessly) means the page shows the round as stopped.
    """
    active = st.session_state.pop(ACTIVE_KEY, None)
    if active is None:
        return
    run, record = active
    run.stop()
    record.update(run.snapshots())


def render_prompt(record: RoundRecord) -> None:
    with st.container(key="compare-prompt", border=True):
        title = record.source.title or "Free prompt"
        st.caption(plain_label(f"Round {record.index} · {title} · {record.source.template_version}", limit=200))
        st.markdown(sanitize_markdown(record.prompt))


def vote_choices(session: CompareSession) -> list[str]:
    return [*(e["slot"] for e in session.lineup), TIE]


def render_tally(session: CompareSession) -> None:
    tally = session.tally()
    columns = st.columns(len(tally))
    for column, (slot, wins) in zip(columns, tally.items(), strict=True):
        column.metric(plain_label(session.display_name(slot)), f"{wins} win" + ("" if wins == 1 else "s"),
                      border=True)
