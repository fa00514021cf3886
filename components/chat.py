"""Render chat turns (pictures, branches, per-message actions) and stream a reply into the page.

Model output only ever goes through ``sanitize_markdown`` into ``st.markdown`` (HTML off) or ``st.text``.
The per-message actions (edit a prompt, regenerate a reply, flip between branches) are callbacks the page
passes in, so this module holds no conversation state of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import streamlit as st

from components import runtime, session
from services.chat.conversation import ChatTurn, format_stats_line
from services.chat.history import ChatStore
from services.chat.starters import Starter
from services.config import Backend
from services.errors import DashboardError, StreamFailed, user_message
from services.ollama.stream import StreamUpdate
from services.ollama.wire import InstalledModel
from services.safe_text import plain_label, sanitize_markdown

STATUS_NOTES = {"stopped": ":material/stop_circle: Stopped by you; the reply above is partial."}
THUMB_WIDTH = 160
RAW_HEIGHT = 260  # the Raw popover's JSON scrolls inside this height, so the popover fits above the chat input


def chat_store() -> ChatStore:
    return runtime.chat_store()


@st.cache_data(ttl=60, show_spinner=False, max_entries=256)
def _shown_capabilities(backend: Backend, model: str) -> tuple[str, ...]:
    return tuple(str(c) for c in session.get_client(backend).show(model).get("capabilities") or ())


def model_capabilities(backend: Backend, model: str | None, installed: Sequence[InstalledModel]) -> tuple[str, ...]:
    """What a model can do: from ``/api/tags`` on newer Ollama builds, else from ``/api/show`` (cached)."""
    if not model:
        return ()
    for entry in installed:
        if entry.name == model and entry.capabilities:
            return entry.capabilities
    try:
        return _shown_capabilities(backend, model)
    except DashboardError:
        return ()


@dataclass(frozen=True)
class TurnActions:
    """What the buttons under a message do; each gets the message (or the sibling to show) as argument."""

    edit: Callable[[str], None]
    regenerate: Callable[[str], None]
    choose: Callable[[str], None]
    enabled: bool = True


def render_stats(stats: dict, key: str, row: Any = None) -> None:
    """The figures of one reply: TTFT from the client, tokens/s from Ollama's own counters, and the Raw popover."""
    line = format_stats_line(stats)
    if not line:
        return
    row = row if row is not None else st.container(horizontal=True, vertical_alignment="center", gap="small")
    row.caption(line, width="stretch")
    # Not drawn lazily: the popover picks its side (above the chat input near the bottom) from its content's size.
    with row.popover("Raw", icon=":material/data_object:", key=f"chat.raw.{key}", type="tertiary"):
        st.caption("As Ollama returned them (durations in nanoseconds), plus client-side timings.")
        st.code(json.dumps(stats, indent=2), language="json", height=RAW_HEIGHT)


def render_thinking(thinking: str, *, expanded: bool = False) -> None:
    if thinking:
        with st.expander("Thinking", icon=":material/psychology:", expanded=expanded):
            st.text(thinking)


def render_pictures(turn: ChatTurn, thumbnails: Mapping[str, bytes]) -> None:
    shown = [thumbnails[i] for i in turn.images if i in thumbnails]
    if shown:
        st.image(shown, width=THUMB_WIDTH)
    if len(shown) < len(turn.images):
        st.caption(f"{len(turn.images) - len(shown)} picture(s) no longer stored.")


def _branch_switch(turn: ChatTurn, siblings: Sequence[str], actions: TurnActions, bar: Any) -> None:
    if len(siblings) < 2 or turn.id not in siblings:
        return
    index = siblings.index(turn.id)
    what = "reply" if turn.role == "assistant" else "prompt"
    bar.button("", icon=":material/chevron_left:", key=f"chat.prev.{turn.id}", type="tertiary",
               disabled=index == 0 or not actions.enabled, on_click=actions.choose, args=(siblings[max(index - 1, 0)],),
               help=f"Show the previous {what}")
    bar.caption(f"{index + 1} / {len(siblings)}", width="content")
    bar.button("", icon=":material/chevron_right:", key=f"chat.next.{turn.id}", type="tertiary",
               disabled=index == len(siblings) - 1 or not actions.enabled, on_click=actions.choose,
               args=(siblings[min(index + 1, len(siblings) - 1)],), help=f"Show the next {what}")


def _actions_row(turn: ChatTurn, siblings: Sequence[str], actions: TurnActions | None) -> None:
    """Under a message: its figures (a reply), edit or regenerate, the branch switch, the Raw figures."""
    if turn.status == "streaming":
        return
    active = actions is not None
    if not turn.stats and not (active and (turn.role == "user" or turn.content or turn.error)):
        return
    row = st.container(horizontal=True, vertical_alignment="center", gap="small")
    if actions is not None and turn.role == "user":
        row.button("", icon=":material/edit:", key=f"chat.edit.{turn.id}", type="tertiary",
                   disabled=not actions.enabled, on_click=actions.edit, args=(turn.id,),
                   help="Edit this prompt and send it again; the earlier version stays as a branch")
    if actions is not None:
        _branch_switch(turn, siblings, actions, row)
    if actions is not None and turn.role == "assistant":
        row.button("", icon=":material/refresh:", key=f"chat.regen.{turn.id}", type="tertiary",
                   disabled=not actions.enabled, on_click=actions.regenerate, args=(turn.id,),
                   help="Regenerate this reply; the earlier one stays as a branch")
    if turn.stats:
        render_stats(turn.stats, turn.id, row)
    elif turn.role == "assistant":
        row.caption("", width="stretch")


def render_turn(turn: ChatTurn, *, thumbnails: Mapping[str, bytes] | None = None, siblings: Sequence[str] = (),
                actions: TurnActions | None = None, editor: Callable[[ChatTurn], None] | None = None) -> None:
    """One message as it was stored; ``editor`` replaces a prompt's text with its edit form.

    A reply always has the same four slots as ``stream_into`` draws (thinking, text, note, figures), so the
    rerun after a stream redraws them in place instead of leaving the streamed copy on screen for a moment.
    """
    with st.chat_message(turn.role):
        if turn.role == "assistant":
            thinking_slot = st.empty()
            if turn.thinking:
                with thinking_slot.expander("Thinking", icon=":material/psychology:"):
                    st.text(turn.thinking)
            if turn.status == "streaming":
                st.markdown(":material/hourglass_top: _This reply is being written in another tab; it appears here "
                            "when it is finished._")
            elif turn.content or not turn.error:
                st.markdown(sanitize_markdown(turn.content) if turn.content else "_(no text)_")
            else:
                st.empty()
            _render_note(turn, st.empty())
        else:
            render_pictures(turn, thumbnails or {})
            if editor is not None:
                editor(turn)
                return
            st.markdown(sanitize_markdown(turn.content) if turn.content else "_(picture only)_")
        _actions_row(turn, siblings, actions)


def _render_note(turn: ChatTurn, slot: Any) -> None:
    """How a reply ended, when it did not simply complete."""
    note = STATUS_NOTES.get(turn.status)
    if note and turn.error:  # stopped by something else than a Stop click (the dashboard restarted)
        slot.warning(f":material/stop_circle: Stopped: {turn.error}; the reply above is partial.")
    elif note:
        slot.warning(note)
    elif turn.error:
        slot.error(turn.error, icon=":material/error:")


def render_starters(starters: Sequence[Starter], on_pick: Callable[[Starter], None], *, enabled: bool,
                    model: str, sees: bool) -> None:
    """An empty conversation: a few of the companies' own product tasks, one click to send."""
    with st.container(border=True):
        st.markdown("**Start with one of the catalogue tasks**, or type your own message below.")
        grid = st.container(horizontal=True, gap="small")
        for index, starter in enumerate(starters):
            grid.button(starter.label, key=f"chat.starter.{index}", on_click=on_pick, args=(starter,),
                        disabled=not enabled, help=plain_label(starter.prompt, 300) + f" (preset: {starter.preset})")
        if model and sees:
            st.caption(f":material/image: {plain_label(model)} can read pictures: attach a product photo (PNG, JPEG "
                       "or WebP) with the clip in the message box and ask for its description.")
        elif model:
            st.caption(f":material/hide_image: {plain_label(model)} has no vision capability, so attaching pictures "
                       "is off. Choose a vision model (gemma3, llava, …) to describe a product photo.")


def _waiting_text(update: StreamUpdate) -> str:
    if update.elapsed_s < 1.0:
        return ":material/hourglass_top: Waiting for the model…"
    return f":material/hourglass_top: Waiting for the model… {update.elapsed_s:.0f} s (it may be loading)"


def stream_into(turn: ChatTurn, updates: Iterator[StreamUpdate], on_end: Callable[[ChatTurn], None]) -> None:
    """Show a reply as it streams, keeping ``turn`` current; ``on_end`` saves it however the stream ends.

    The message box's Stop button (``submit_mode="stop"``) stops this run: Streamlit raises at the next
    Streamlit call, closing the stream aborts the HTTP request, and ``on_end`` (in a ``finally``) saves the
    text that arrived as ``stopped``; the next run draws it with its note. A rerun asked for meanwhile (a click
    outside the conversation) interrupts the same way.
    """
    with st.chat_message("assistant"):
        thinking_box = st.empty()
        text_box = st.empty()
        footer = st.empty()  # the note's slot (as in the history): how the reply ended
        try:
            with closing(updates):
                for update in updates:
                    turn.content, turn.thinking = update.content, update.thinking
                    if update.thinking:
                        with thinking_box.expander("Thinking", icon=":material/psychology:",
                                                   expanded=not update.content):
                            st.text(update.thinking)
                    if update.waiting:
                        text_box.markdown(_waiting_text(update))
                    else:
                        text_box.markdown(sanitize_markdown(update.content) or " ")
                    if update.done and update.stats is not None:
                        turn.stats = update.stats.as_dict()
                        turn.status = "complete"
        except StreamFailed as failed:
            turn.content, turn.thinking = failed.partial.content, failed.partial.thinking
            turn.status = "error"
            turn.error = user_message(failed.cause)
        except DashboardError as exc:
            turn.status = "error"
            turn.error = user_message(exc)
        finally:
            if turn.status == "streaming":
                turn.status = "stopped"
            on_end(turn)
        if turn.status == "error" and turn.content:
            text_box.markdown(sanitize_markdown(turn.content))
        elif turn.status == "error":
            text_box.empty()
        _render_note(turn, footer)  # the Stop button's slot: the same place the history draws the note
        if turn.stats:
            render_stats(turn.stats, turn.id)
