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
from services.stage.lineup import SLOTS, ColumnSnapshot
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
[class*="st-key-compare-tally-"][class*="-leader"] { border: 3px solid #b45309 !important; background: #fffbeb; }
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


def stage(letters: Sequence[str]) -> dict[str, ColumnView]:
    """One bordered column per letter (the audience's A, B, ... by position), each with placeholders redrawn
    as its stream advances."""
    columns = st.columns(len(letters), border=True, gap="medium")
    views = {}
    for column, letter in zip(columns, letters, strict=True):
        with column, st.container(key=f"compare-col-{letter}"):
            views[letter] = ColumnView(st.empty(), st.empty(), st.empty())
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
    if hidden and snap.cold_start:  # blind: a line of text like every column's, not a box of its own
        parts.append(f"cold start: loaded during the request ({snap.load_s:.1f} s)")
    if not hidden:
        if snap.digest:
            parts.append("digest " + snap.digest.removeprefix("sha256:")[:12])
        if snap.ollama_version:
            parts.append(f"Ollama {snap.ollama_version}")
    return " · ".join(parts) or "–"


def _status(snap: ColumnSnapshot, hidden: bool) -> str:
    if snap.status in STATUS_TEXT:
        return STATUS_TEXT[snap.status]
    if snap.status == "waiting":
        return f":material/hourglass_top: Waiting for the first token… {snap.elapsed_s:.1f} s"
    if snap.status == "streaming":
        return ":material/stream: Streaming (live figures)"
    if snap.status == "error":
        return f":material/error: {snap.error}" if hidden else ":material/error: Failed"
    return ":material/check_circle: Done"


def _draw_head(snap: ColumnSnapshot, name: str, letter: str, hidden: bool) -> None:
    st.subheader(plain_label(name), anchor=False)
    st.caption(plain_label(f"Model {letter} · backend hidden" if hidden else f"Model {letter} · {snap.backend}"))


def _draw_figures(snap: ColumnSnapshot, hidden: bool) -> None:
    """The same elements in every column, whatever happened to it: blind mode must have no tells."""
    left, right = st.columns(2)
    ttft, tps = _figures(snap)
    left.metric("First token", ttft)
    right.metric("Tokens/s", tps, help="Live: tokens received per second so far. Done: Ollama's own "
                 "eval_count / eval_duration.")
    st.caption(plain_label(_details(snap, hidden), limit=300))
    st.caption(plain_label(_status(snap, hidden), limit=400))
    if hidden:
        return
    if snap.cold_start:
        st.warning(f"Cold start: the model loaded during this request ({snap.load_s:.1f} s, counted in the "
                   "first token).", icon=":material/ac_unit:")
    if snap.error:
        st.error(snap.error, icon=":material/error:")


def _answer(snap: ColumnSnapshot) -> None:
    if snap.content:
        st.markdown(sanitize_markdown(snap.content))
    else:
        st.markdown("_(no text)_" if snap.terminal else "…")


def _draw_body(snap: ColumnSnapshot, letter: str, hidden: bool, present: bool) -> None:
    # Thinking is shown only once names are: a "Thinking" box in one column would give a thinking model away.
    if snap.thinking and not hidden:
        with st.expander("Thinking", icon=":material/psychology:", expanded=False):
            st.text(snap.thinking)
    if present:
        # The presenter script sizes this box to the screen, steps the text down to fit, and scrolls it:
        # following the stream while it runs, back to the start once done (the marker says which).
        with st.container(border=False):
            st.html(f'<span class="answer-mark" data-letter="{letter}" '
                    f'data-state="{"done" if snap.terminal else "live"}"></span>')
            _answer(snap)
        return
    if snap.terminal:  # finished: the whole answer, from its first word
        _answer(snap)
        return
    # Streaming: a fixed-height box following the words keeps the page still while every column grows.
    with st.container(height=OUTPUT_HEIGHT_PX, autoscroll=True, border=False):
        _answer(snap)


def render_column(view: ColumnView, snap: ColumnSnapshot, name: str, *, letter: str, hidden: bool,
                  present: bool = False, parts: Sequence[str] = ("head", "figures", "body")) -> None:
    """Redraw only the parts of a column whose data changed since the last draw."""
    drawers = {
        "head": ((name, hidden), lambda: _draw_head(snap, name, letter, hidden)),
        "figures": ((_figures(snap), _details(snap, hidden), snap.status, snap.error, snap.cold_start,
                     round(snap.elapsed_s, 1) if snap.status == "waiting" else 0),
                    lambda: _draw_figures(snap, hidden)),
        "body": ((len(snap.content), len(snap.thinking), snap.terminal, hidden),
                 lambda: _draw_body(snap, letter, hidden, present)),
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


def render_round(session: CompareSession, record: RoundRecord, *, present: bool = False) -> None:
    letters = SLOTS[: len(record.columns) or len(session.lineup)]
    views = stage(letters)
    for letter, column in zip(letters, record.columns, strict=False):
        snap = snapshot_from_record(column)
        render_column(views[letter], snap, session.display_name(snap.slot, record), letter=letter,
                      hidden=session.hidden, present=present)


def stream_round(session: CompareSession, record: RoundRecord, run: ComparisonRun, *, present: bool = False,
                 stop_at: DeltaGenerator | None = None) -> None:
    """Drive ``run`` from this script thread, redrawing only what changed, at most every ``FRAME_S``.

    ``record`` is in session state and always holds the latest snapshots, so a Stop click (which
    interrupts this loop and aborts every stream) or a rerun loses nothing. The run's contestants come in
    the round's display order, so column ``i`` is letter ``SLOTS[i]``.
    """
    (stop_at or st).button("Stop", icon=":material/stop:", key="compare.stop", type="primary",
                           help="Stops every column at once and closes every connection to the models (Esc).")
    snaps = run.snapshots()
    letters = SLOTS[: len(snaps)]
    views = stage(letters)

    def draw(all_snaps: Sequence[ColumnSnapshot], parts: Sequence[str] = ("head", "figures", "body")) -> None:
        for letter, snap in zip(letters, all_snaps, strict=True):
            render_column(views[letter], snap, session.display_name(snap.slot, record), letter=letter,
                          hidden=session.hidden, present=present, parts=parts)

    draw(snaps, ("head",))  # names first, so the first token's frame carries only figures and text
    frames = run.frames(interval_s=FRAME_S)
    st.session_state[ACTIVE_KEY] = (run, record)
    try:
        with closing(frames):
            for frame in frames:
                record.update(frame)
                draw(frame)
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


def vote_choices(session: CompareSession, record: RoundRecord) -> list[str]:
    """The audience votes by the letters it saw (column positions), or for a tie."""
    return [*SLOTS[: len(session.order(record))], TIE]


def render_tally(session: CompareSession) -> None:
    """Wins per model, a bar each, the leader marked; while names are hidden, only how many rounds were voted.

    Blind letters change every round, so a tally by letter would mean nothing (and a tally by model before
    the reveal would tell which column was which).
    """
    voted = sum(1 for r in session.rounds if r.vote)
    if session.hidden:
        st.caption(f"{voted} of {len(session.rounds)} rounds voted. The tally by model appears with the names "
                   "at the reveal.")
        return
    tally = session.tally()
    leaders = session.leaders()
    columns = st.columns(len(tally))
    for column, (slot, wins) in zip(columns, tally.items(), strict=True):
        leader = slot in leaders
        mark = "-leader" if leader else ""
        with column, st.container(border=True, key=f"compare-tally-{slot}{mark}"):
            crown = ("★ Leading" if len(leaders) == 1 else "★ Tied for the lead") if leader else ""
            st.markdown(f"**{plain_label(session.display_name(slot), 60)}**" + (f"  \n{crown}" if crown else ""))
            st.progress(wins / voted if voted else 0.0,
                        text=f"{wins} win{'' if wins == 1 else 's'} of {voted} voted")
