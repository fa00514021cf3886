"""The chat page's kept conversations: which one is open, the list in the sidebar, and the conversation menu.

Which conversation a browser shows lives in ``st.session_state`` and in the address (``?c=<id>``), so a
reload or a shared link of the same person reopens it; the conversations themselves live in the store
(``services.chat.history``), read for the signed-in person only. The list is one widget showing a short page
of the most recent ones (search and "Show more" reach the rest): each entry costs the browser a Markdown
render on every rerun, so a long history must not mean a long list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import streamlit as st

from components import runtime, session
from services import format as fmt
from services.chat.history import ChatStore, ConversationSummary
from services.chat.tree import MAX_TITLE_CHARS, StoredConversation
from services.errors import DashboardError, user_message
from services.safe_text import plain_label

CONVERSATION_KEY = "chat.conversation_id"
NOTICE_KEY = "chat.notice"
SEARCH_KEY = "chat.search"
LIMIT_KEY = "chat.list_limit"
LIST_KEY = "chat.list"
CONFIRM_DELETE_KEY = "chat.confirm_delete"
QUERY_PARAM = "c"
PAGE_SIZE = 10  # about what the sidebar shows without scrolling; search and "Show more" reach the rest
GONE_REASONS = {
    "deleted": "was deleted",
    "expired": "was removed by the retention policy (no activity for {days})",
    "cap": "was removed because the per-person limit of {cap:,} conversations was reached",
}


def notice(kind: str, text: str) -> None:
    """A message shown once, after the rerun that follows an action."""
    st.session_state.setdefault(NOTICE_KEY, []).append((kind, text))


def render_notices() -> None:
    for kind, text in st.session_state.pop(NOTICE_KEY, []):
        {"success": st.success, "info": st.info, "warning": st.warning}.get(kind, st.error)(
            text, icon={"success": ":material/check:", "warning": ":material/history:"}.get(kind, ":material/info:"))


def _gone_text(store: ChatStore, owner: str, cid: str) -> str:
    tomb = store.tombstone(owner, cid)
    if tomb is None:
        return ("No conversation at this link is available to you: it never existed, or it belongs to someone else. "
                "A new conversation is open.")
    when = datetime.fromtimestamp(tomb.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    days = f"{store.retention_days:g} day" + ("" if store.retention_days == 1 else "s")
    reason = GONE_REASONS.get(tomb.reason, "was removed").format(days=days, cap=store.max_per_owner)
    return f"The conversation at this link {reason} on {when}. A new conversation is open."


def resolve(store: ChatStore, owner: str, apply_settings: Callable[[StoredConversation], None]
            ) -> StoredConversation | None:
    """The conversation this browser shows, from the address first (a reload, an old link), then the session.

    Opening a different one applies its model, system prompt and options to the widgets (this runs before
    they are drawn). A conversation that is gone says why, once.
    """
    linked = st.query_params.get(QUERY_PARAM)
    current = st.session_state.get(CONVERSATION_KEY)
    if linked and linked != current:
        stored = store.get(owner, linked)
        if stored is None:
            notice("warning", _gone_text(store, owner, linked))
            st.session_state[CONVERSATION_KEY] = None
            del st.query_params[QUERY_PARAM]
            return None
        st.session_state[CONVERSATION_KEY] = stored.id
        apply_settings(stored)
        return stored
    if not current:
        return None
    stored = store.get(owner, current)
    if stored is None:
        notice("warning", _gone_text(store, owner, current).replace("at this link", "that was open"))
        st.session_state[CONVERSATION_KEY] = None
    if st.query_params.get(QUERY_PARAM) != (stored.id if stored else None):
        if stored is None:
            st.query_params.pop(QUERY_PARAM, None)
        else:
            st.query_params[QUERY_PARAM] = stored.id
    return stored


def show(cid: str | None) -> None:
    """Make ``cid`` (None: a new, unsaved conversation) the one this browser shows, address included."""
    st.session_state[CONVERSATION_KEY] = cid
    st.session_state.pop(CONFIRM_DELETE_KEY, None)
    if cid:
        st.query_params[QUERY_PARAM] = cid
    else:
        st.query_params.pop(QUERY_PARAM, None)


def render_sidebar(store: ChatStore, owner: str, current: str | None, on_open: Callable[[str], None],
                   on_new: Callable[[], None]) -> None:
    """New conversation, search, and the most recent conversations (a page at a time)."""
    with st.sidebar:
        head = st.container(horizontal=True, vertical_alignment="center", gap="small")
        head.markdown("**Conversations**", width="stretch")
        head.button("New", icon=":material/add:", key="chat.new", on_click=on_new, help="Start a new conversation")
        search = st.text_input("Search conversations", key=SEARCH_KEY, max_chars=200, label_visibility="collapsed",
                               placeholder="Search titles and messages", icon=":material/search:")
        limit = int(st.session_state.get(LIMIT_KEY, PAGE_SIZE))
        try:
            rows = store.summaries(owner, search=search or "", limit=limit + 1)
        except DashboardError as exc:
            st.caption(f"The list is unavailable: {user_message(exc)}")
            return
        now = time.time()
        shown = rows[:limit]
        labels = {row.id: _entry(row, now) for row in shown}
        if current is not None and current not in labels:
            current = None  # the open conversation is not on this page of the list (a search, an old one)
        st.session_state[LIST_KEY] = current  # the widget follows the open conversation, however it was opened
        # One widget for the whole list: a sent message reruns the page, and this stays one element, not one per row.
        if labels:
            st.radio("Your conversations", list(labels), key=LIST_KEY, format_func=labels.__getitem__,
                     label_visibility="collapsed", on_change=lambda: on_open(st.session_state[LIST_KEY]))
        if len(rows) > limit:
            st.button("Show more", icon=":material/expand_more:", key="chat.more", type="tertiary",
                      on_click=lambda: st.session_state.__setitem__(LIMIT_KEY, limit + PAGE_SIZE))
        if not rows:
            st.caption("No conversation matches this search." if search else
                       "Your conversations are kept here, for you only.")
        elif search and len(search.strip()) < 3:
            st.caption("Type three characters or more to search inside messages too.")


def _entry(row: ConversationSummary, now: float) -> str:
    """A list entry: the title, and under it the model and the last activity in small grey type."""
    return (f"{plain_label(row.title, 40)}  \n:small[:gray[{plain_label(row.model or 'no reply yet', 30)} · "
            f"{fmt.ago(now - row.updated_at)}]]")


def render_menu(store: ChatStore, owner: str, stored: StoredConversation | None, exports: dict[str, Callable[[], str]],
                on_deleted: Callable[[], None]) -> None:
    """Rename, export and delete the open conversation (a popover in the page's top row)."""
    if stored is None:
        st.caption("Nothing to rename, export or delete yet: the conversation is saved with its first message.")
        return
    cid = stored.id
    title_key = f"chat.title.{cid}"
    st.session_state.setdefault(title_key, stored.title)
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="small")
    # No max_chars: a pasted title is not cut silently; the store refuses a long one and says why.
    row.text_input("Title", key=title_key, width="stretch", help=f"At most {MAX_TITLE_CHARS} characters.")

    def rename() -> None:
        try:
            title = store.rename(owner, cid, st.session_state.get(title_key))
        except DashboardError as exc:
            notice("error", user_message(exc))
            st.session_state[title_key] = stored.title
        else:
            st.session_state[title_key] = title
            notice("success", "Renamed.")

    row.button("Rename", key=f"chat.rename.{cid}", on_click=rename, icon=":material/edit:")
    st.caption(f"Started {datetime.fromtimestamp(stored.created_at, UTC):%Y-%m-%d %H:%M} UTC · "
               f"{fmt.count(len(stored.messages), 'message')} (branches included)")
    st.download_button("Export Markdown", exports["markdown"], file_name=f"conversation-{cid}.md",
                       mime="text/markdown", icon=":material/download:", width="stretch", on_click="ignore")
    st.download_button("Export JSON", exports["json"], file_name=f"conversation-{cid}.json",
                       mime="application/json", icon=":material/download:", width="stretch", on_click="ignore",
                       help="The branch shown, with model, digest, options, timings and pictures.")
    if st.session_state.get(CONFIRM_DELETE_KEY) != cid:
        st.button("Delete conversation", icon=":material/delete:", key=f"chat.delete.{cid}", width="stretch",
                  on_click=lambda: st.session_state.__setitem__(CONFIRM_DELETE_KEY, cid))
        return
    st.warning("Delete this conversation with all its branches and pictures? This cannot be undone.",
               icon=":material/warning:")
    yes, no = st.columns(2)

    def delete() -> None:
        try:
            who = session.require_role("operator", "delete a conversation")
            counts = store.delete(owner, cid)
            if counts is not None:
                runtime.audit_log().record(who=who.subject, backend="", model=stored.model,
                                           action="delete_conversation", outcome="ok",
                                           detail=f"conversation {cid}: {counts[0]} messages, {counts[1]} pictures")
        except DashboardError as exc:
            notice("error", user_message(exc))
            return
        show(None)
        on_deleted()
        notice("success", "The conversation was deleted.")

    yes.button("Delete for good", type="primary", key=f"chat.delete.yes.{cid}", on_click=delete, width="stretch")
    no.button("Keep it", key=f"chat.delete.no.{cid}", width="stretch",
              on_click=lambda: st.session_state.pop(CONFIRM_DELETE_KEY, None))
