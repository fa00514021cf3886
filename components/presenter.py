"""The compare page's presenter view (a Present switch, or ``/compare?present=1``): built for a projector.

Setup, deck controls and the sidebar are out of the way; one slim bar of labelled buttons drives the show,
and ``static/presenter.js`` maps keys onto them (Streamlit has no keyboard API; a click on a labelled
button is the public way in): Right and Left for the next and previous prompt, R to reveal, 1-4 to vote,
Esc to stop. The same script fits every column's answer to the screen. The query parameter is the state,
so a reload (or a second screen opened on the same address) stays in the presenter view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from services.resources import PRESENTER_SCRIPT_FILE, PRESENTER_STYLE_FILE
from services.safe_text import plain_label
from services.stage.lineup import SLOTS
from services.stage.report import TIE, CompareSession, RoundRecord

PARAM = "present"
TOGGLE_KEY = "compare.present_toggle"
KEYS_HELP = "→ next · ← previous · R reveal · 1–4 vote · 0 tie · Esc stop"


def active() -> bool:
    return st.query_params.get(PARAM) == "1"


def _enter() -> None:
    if st.session_state.get(TOGGLE_KEY):
        st.query_params[PARAM] = "1"


def _leave() -> None:
    st.query_params.pop(PARAM, None)
    st.session_state[TOGGLE_KEY] = False


def render_switch(where: DeltaGenerator) -> None:
    where.toggle("Present", key=TOGGLE_KEY, value=False, on_change=_enter,
                 help="The projector view: only the prompt, the columns and a slim bar of buttons. "
                      f"Keys: {KEYS_HELP}. Also at /compare?present=1.")


def inject() -> None:
    """The presenter view's stylesheet and its script (our own static files; nothing from anyone's input)."""
    st.html(f"<style>{PRESENTER_STYLE_FILE.read_text(encoding='utf-8')}</style>")
    st.html(f"<script>{PRESENTER_SCRIPT_FILE.read_text(encoding='utf-8')}</script>", unsafe_allow_javascript=True)


@dataclass
class Moves:
    """What the bar's buttons do, from the page (which owns the deck, the rounds and their callbacks)."""

    previous: Callable[[], None] | None
    previous_label: str
    next: Callable[[], None] | None
    next_label: str
    reveal: Callable[[], None]
    vote: Callable[[RoundRecord, str], None]


def render_bar(session: CompareSession | None, record: RoundRecord | None, moves: Moves, *,
               running: bool = False) -> DeltaGenerator:
    """The one row of controls; returns it so a running round can put its Stop button there."""
    bar = st.container(horizontal=True, key="present-bar", vertical_alignment="center")
    bar.button(moves.previous_label, key="present-prev", icon=":material/skip_previous:", help="Left arrow",
               on_click=moves.previous, disabled=running or moves.previous is None)
    bar.button(moves.next_label, key="present-next", icon=":material/skip_next:", type="primary",
               help="Right arrow", on_click=moves.next, disabled=running or moves.next is None)
    if session is not None and session.hidden:
        bar.button("Reveal", key="present-reveal", icon=":material/visibility:", help="R", on_click=moves.reveal,
                   disabled=running)
    if session is not None and record is not None:
        can_vote = record.finished and not running
        for index, slot in enumerate(session.order(record)):
            shown = SLOTS[index]
            picked = record.vote == slot
            bar.button(f"{shown}{' ✓' if picked else ''}", key=f"present-vote-{shown}", help=f"Vote for column "
                       f"{shown} (key {index + 1})", on_click=moves.vote, args=(record, shown), disabled=not can_vote,
                       type="primary" if picked else "secondary")
        bar.button(f"Tie{' ✓' if record.vote == TIE else ''}", key="present-vote-tie", help="Key 0",
                   on_click=moves.vote, args=(record, TIE), disabled=not can_vote)
        bar.markdown(plain_label(tally_line(session), limit=200))
    bar.button("Exit", key="present-exit", icon=":material/close_fullscreen:", on_click=_leave,
               help="Back to the full page (setup, decks, exports)")
    return bar


def tally_line(session: CompareSession) -> str:
    """The tally in one line for the bar: the leader first and starred; while blind, only the vote count."""
    voted = sum(1 for r in session.rounds if r.vote)
    if session.hidden:
        return f"{voted} voted"
    tally = session.tally()
    leaders = set(session.leaders())
    ranked = sorted(tally.items(), key=lambda item: -item[1])
    return " · ".join(f"{'★ ' if slot in leaders else ''}{session.display_name(slot)} {wins}" for slot, wins in ranked)


def render_waiting(title: str) -> None:
    """Before the first round: what the next key press does."""
    st.markdown(f"### {plain_label(title, limit=200)}")
    st.caption(KEYS_HELP)
