"""Who this browser session is: the sign-in gate the router runs before any page, and the sign-in page.

A token arrives from a reverse proxy's ``Authorization: Bearer`` header (read once, when the session
starts), from the sign-in form, or once as ``?token=`` for a wall screen (removed from the address bar at
once). The verified ``Identity`` lives only in ``st.session_state``; its expiry is re-checked on every
rerun and in every live fragment. With no key configured the dashboard runs in open local mode, with a
banner saying so.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import streamlit as st

from components import runtime
from components.session import IDENTITY_KEY, Identity, current_identity
from services.access.acting import bind_actor
from services.access.pages import PAGES
from services.access.tokens import AuthConfig, is_expired, verify_token
from services.errors import REASON_TITLES, AuthError, Forbidden, Reason
from services.safe_text import plain_label

log = logging.getLogger(__name__)

TOKEN_PARAM = "token"
REFUSAL_KEY = "auth.refusal"
HEADER_CHECKED_KEY = "auth.header_checked"
FORM_TOKEN_KEY = "auth.form_token"
SIGN_IN_PATH = "sign-in"
REASON_ICONS: dict[Reason, str] = {"not_signed_in": ":material/login:", "expired": ":material/timer_off:",
                                   "forbidden": ":material/block:", "invalid": ":material/gpp_bad:"}


def _refuse(reason: Reason, message: str) -> None:
    st.session_state.pop(IDENTITY_KEY, None)
    st.session_state[REFUSAL_KEY] = (reason, message)


def _sign_in(token: str, config: AuthConfig, source: str) -> Identity | None:
    try:
        verified = verify_token(token, config, source=source)
    except AuthError as exc:
        _refuse(exc.reason, exc.message)
        return None
    identity = Identity(subject=verified.subject, role=verified.role, expires_at=verified.expires_at, source=source)
    st.session_state[IDENTITY_KEY] = identity
    st.session_state.pop(REFUSAL_KEY, None)
    return identity


def _submit_form(config: AuthConfig) -> None:
    token = str(st.session_state.get(FORM_TOKEN_KEY) or "")
    st.session_state[FORM_TOKEN_KEY] = ""
    _sign_in(token, config, "form")


def _sign_out() -> None:
    identity = st.session_state.pop(IDENTITY_KEY, None)
    if isinstance(identity, Identity):
        log.info("signed out: sub=%r", identity.subject[:80])
    st.session_state[REFUSAL_KEY] = ("not_signed_in", "You signed out.")


def _until(expires_at: float | None) -> str:
    if expires_at is None:
        return ""
    return datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _resolve(config: AuthConfig) -> Identity | None:
    """The signed-in identity for this run, or None (the refusal to show is in session state)."""
    link_token = st.query_params.get(TOKEN_PARAM)
    if link_token is not None:
        del st.query_params[TOKEN_PARAM]  # out of the address bar (and of screenshots) at once
        return _sign_in(link_token, config, "link")
    identity = st.session_state.get(IDENTITY_KEY)
    if isinstance(identity, Identity) and not identity.open_mode:
        if not is_expired(identity.expires_at):
            return identity
        _expire(identity)
    elif identity is not None:
        st.session_state.pop(IDENTITY_KEY, None)  # never carry an open-mode or foreign object into a keyed mode
    if not st.session_state.get(HEADER_CHECKED_KEY):
        # Headers are those of the request that opened the session; they are read once.
        st.session_state[HEADER_CHECKED_KEY] = True
        header = st.context.headers.get("Authorization") or ""
        if header.lower().startswith("bearer "):
            return _sign_in(header, config, "header")
    return None


def render_sign_in(config: AuthConfig) -> None:
    """The page shown instead of the dashboard: why, and a form to paste a token."""
    reason, message = st.session_state.get(REFUSAL_KEY) or (
        "not_signed_in", "This dashboard needs an access token.")
    st.title("Sign in", anchor=False)
    if reason == "not_signed_in":
        st.info(f"**{REASON_TITLES[reason]}.** {message}", icon=REASON_ICONS[reason])
    else:
        st.error(f"**{REASON_TITLES[reason]}.** {plain_label(message, 400)}", icon=REASON_ICONS[reason])
    with st.form("auth.sign_in", border=True, enter_to_submit=True):
        st.text_input("Access token", key=FORM_TOKEN_KEY, type="password", placeholder="eyJhbGciOi…",
                      help="The token an admin gave you. It is checked on the server and never shown again.")
        st.form_submit_button("Sign in", type="primary", icon=":material/login:", on_click=_submit_form,
                              args=(config,))
    if config.can_mint:
        st.caption("No token? An admin can mint one: `python -m services.access mint --sub NAME --role viewer "
                   "--ttl 12h`. Wall screens can open `/?token=…` once; the token is removed from the address.")
    else:
        st.caption("Tokens come from your identity provider (this dashboard only holds the public key). "
                   "Wall screens can open `/?token=…` once; the token is removed from the address.")


def wall_screen() -> bool:
    """The kiosk view (``?kiosk=1``) has no sidebar; nothing of ours may add one."""
    return st.query_params.get("kiosk") == "1"


def _expire(identity: Identity) -> None:
    log.info("session expired: sub=%r (token valid until %s)", identity.subject[:80], _until(identity.expires_at))
    again = ("Reload the page to sign in again through your company sign-in." if identity.source == "header"
             else "Sign in again with a fresh token.")
    _refuse("expired", f"Your session expired at {_until(identity.expires_at)}. {again}")


def enter_fragment() -> None:
    """Call first in every auto-refreshing ``st.fragment``: fragment reruns skip the router and its gate.

    An expired session is ended and the whole app re-runs, which shows the "Session expired" page; a live
    one is bound as the person acting on this thread (a gateway token needs it).
    """
    identity = st.session_state.get(IDENTITY_KEY)
    if isinstance(identity, Identity) and not identity.open_mode and is_expired(identity.expires_at):
        _expire(identity)
        st.rerun(scope="app")
    try:
        current = current_identity()
    except Forbidden:  # signed out meanwhile: nothing here; the next full run shows the sign-in page
        st.stop()
    bind_actor(current.subject, current.role)


def _sign_in_navigation(config: AuthConfig) -> None:
    """A navigation of sign-in pages only, at every page's address: it replaces the session's earlier one, so no
    page link survives a sign-out or expiry; and as a page's identity is its address, signing in lands on the
    page that was asked for."""

    def page_at(url_path: str, default: bool) -> st.Page:
        return st.Page(lambda: render_sign_in(config), title="Sign in", icon=":material/login:",
                       url_path=url_path, default=default)

    pages = [page_at(SIGN_IN_PATH, True), *(page_at(spec.url_path, False) for spec in PAGES)]
    st.navigation(pages, position="hidden").run()


def _render_identity(identity: Identity) -> None:
    if wall_screen():
        return
    with st.sidebar:
        until = f" · until {_until(identity.expires_at)}" if identity.expires_at else ""
        st.caption(f":material/person: **{plain_label(identity.subject, 60)}** · {identity.role}{until}")
        if identity.source != "header":
            st.button("Sign out", key="auth.sign_out", icon=":material/logout:", on_click=_sign_out)


def _render_open_mode_banner() -> None:
    if wall_screen():
        return
    st.sidebar.markdown(
        ":orange-background[:material/lock_open: **Open local mode**]  \nNo sign-in key is configured, so "
        "everyone who reaches this address is an admin. Served on this machine (loopback) only."
    )


def gate() -> Identity:
    """Resolve this session's identity; render the sign-in page and ``st.stop()`` when nobody may proceed."""
    config = runtime.startup().auth
    if config is None:
        if TOKEN_PARAM in st.query_params:
            del st.query_params[TOKEN_PARAM]  # nothing to check it against; still keep it off the screen
        identity = current_identity()
        _render_open_mode_banner()
    else:
        resolved = _resolve(config)
        if resolved is None:
            _sign_in_navigation(config)
            st.stop()
        identity = resolved
        _render_identity(identity)
    bind_actor(identity.subject, identity.role)
    return identity
