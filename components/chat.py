"""Render chat turns and stream a reply into the page. Model output only ever goes through
``sanitize_markdown`` into ``st.markdown`` (HTML off) or ``st.text``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing

import streamlit as st

from services.chat.conversation import ChatTurn, format_stats_line
from services.errors import DashboardError, StreamFailed, user_message
from services.ollama.stream import StreamUpdate
from services.safe_text import sanitize_markdown

STATUS_NOTES = {"stopped": ":material/stop_circle: Stopped by you; the reply above is partial."}


def render_stats(stats: dict) -> None:
    """The figures of one reply: TTFT from the client, tokens/s from Ollama's own counters."""
    line = format_stats_line(stats)
    if not line:
        return
    left, right = st.columns([6, 1], vertical_alignment="center")
    left.caption(line)
    with right.popover("Raw", icon=":material/data_object:", use_container_width=False):
        st.caption("As Ollama returned them (durations in nanoseconds), plus client-side timings.")
        st.code(json.dumps(stats, indent=2), language="json")


def render_thinking(thinking: str, *, expanded: bool = False) -> None:
    if thinking:
        with st.expander("Thinking", icon=":material/psychology:", expanded=expanded):
            st.text(thinking)


def render_turn(turn: ChatTurn) -> None:
    with st.chat_message(turn.role):
        if turn.role == "assistant":
            render_thinking(turn.thinking)
            if turn.content or not turn.error:
                st.markdown(sanitize_markdown(turn.content) if turn.content else "_(no text)_")
            note = STATUS_NOTES.get(turn.status)
            if note:
                st.warning(note)
            if turn.error:
                st.error(turn.error, icon=":material/error:")
            if turn.stats:
                render_stats(turn.stats)
        else:
            st.markdown(sanitize_markdown(turn.content))


def render_history(turns: list[ChatTurn]) -> None:
    for turn in turns:
        render_turn(turn)


def _waiting_text(update: StreamUpdate) -> str:
    if update.elapsed_s < 1.0:
        return ":material/hourglass_top: Waiting for the model…"
    return f":material/hourglass_top: Waiting for the model… {update.elapsed_s:.0f} s (it may be loading)"


def stream_into(turn: ChatTurn, updates: Iterator[StreamUpdate]) -> None:
    """Show a reply as it streams, keeping ``turn`` current so a Stop or rerun loses nothing.

    ``turn`` lives in session state: whatever happens (done, error, Stop click, rerun), it ends with the
    text that arrived and a status saying how the reply ended.
    """
    with st.chat_message("assistant"):
        thinking_box = st.empty()
        text_box = st.empty()
        footer = st.empty()
        footer.button("Stop", icon=":material/stop:", key=f"chat.stop.{turn.id}",
                      help="Stops the reply and closes the connection to the model.")
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
        footer.empty()
        if turn.status == "error":
            if turn.content:
                text_box.markdown(sanitize_markdown(turn.content))
            else:
                text_box.empty()
            st.error(turn.error, icon=":material/error:")
        if turn.stats:
            render_stats(turn.stats)
