"""Who this browser session is: the sign-in gate that ``app.py`` calls before building the navigation.

A token arrives from a reverse proxy's ``Authorization: Bearer`` header (read once, when the session
starts), from the sign-in form, or once as ``?token=`` for a wall screen (removed from the address bar at
once). The verified ``Identity`` lives only in ``st.session_state``; its expiry is re-checked on every
rerun. With no key configured the dashboard runs in open local mode, with a banner saying so.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from components.session import IDENTITY_KEY, Identity, current_identity
from services import auth
from services.auth import REASON_TITLES, AuthConfig, AuthConfigError, AuthError, Reason
from services.errors import DashboardError
from services.safe_text import plain_label

log = logging.getLogger(__name__)

TOKEN_PARAM = "token"
REFUSAL_KEY = "auth.refusal"
HEADER_CHECKED_KEY = "auth.header_checked"
FORM_TOKEN_KEY = "auth.form_token"
REASON_ICONS: dict[Reason, str] = {"not_signed_in": ":material/login:", "expired": ":material/timer_off:",
                                   "forbidden": ":material/block:", "invalid": ":material/gpp_bad:"}


@st.cache_resource(show_spinner=False)
def auth_config() -> AuthConfig | None:
    """The process's verification settings (no per-user data), logged once at startup."""
    config = auth.load_auth_config()
    if config is None:
        log.warning("OPEN LOCAL MODE: no DASHBOARD_JWT_SECRET or DASHBOARD_JWT_PUBLIC_KEY is set, so every "
                    "visitor is a local admin. Keep the dashboard bound to 127.0.0.1.")
    else:
        log.info("sign-in required: tokens verified with %s", config.description)
    return config


def _session_actor() -> tuple[str, str] | None:
    """The acting person for gateway tokens when no ContextVar is bound (fragment reruns, fresh threads)."""
    if get_script_run_ctx() is None:
        return None
    try:
        identity = current_identity()
    except DashboardError:
        return None
    return identity.subject, identity.role


auth.set_actor_fallback(_session_actor)


def _bind(identity: Identity) -> None:
    """Who acts for this script run: read by the gateway token minter (services never see the session)."""
    auth.acting_subject.set(identity.subject)
    auth.acting_role.set(identity.role)


def _refuse(reason: Reason, message: str) -> None:
    st.session_state.pop(IDENTITY_KEY, None)
    st.session_state[REFUSAL_KEY] = (reason, message)


def _sign_in(token: str, config: AuthConfig, source: str) -> Identity | None:
    try:
        verified = auth.verify_token(token, config, source=source)
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
        if not auth.is_expired(identity.expires_at):
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
        st.caption("No token? An admin can mint one: `python -m services.auth mint --sub NAME --role viewer "
                   "--ttl 12h`. Wall screens can open `/?token=…` once; the token is removed from the address.")
    else:
        st.caption("Tokens come from your identity provider (this dashboard only holds the public key). "
                   "Wall screens can open `/?token=…` once; the token is removed from the address.")


def _wall_screen() -> bool:
    """The kiosk view (``?kiosk=1``) has no sidebar; nothing of ours may add one."""
    return st.query_params.get("kiosk") == "1"


def _expire(identity: Identity) -> None:
    log.info("session expired: sub=%r (token valid until %s)", identity.subject[:80], _until(identity.expires_at))
    again = ("Reload the page to sign in again through your company sign-in." if identity.source == "header"
             else "Sign in again with a fresh token.")
    _refuse("expired", f"Your session expired at {_until(identity.expires_at)}. {again}")


def recheck_expiry() -> None:
    """Call first in an auto-refreshing ``st.fragment``: fragment reruns skip app.py and so the gate's check.

    An expired session is ended and the whole app re-runs, which shows the "Session expired" page.
    """
    identity = st.session_state.get(IDENTITY_KEY)
    if isinstance(identity, Identity) and not identity.open_mode and auth.is_expired(identity.expires_at):
        _expire(identity)
        st.rerun(scope="app")


def _asked_url_paths() -> list[str]:
    """The page addresses this run may be asking for: the one typed in the address bar, and those of the
    navigation the session had before (a rerun after a sign-out or expiry names its page by those)."""
    paths: list[str] = []
    ctx = get_script_run_ctx()
    try:
        manager = ctx.pages_manager  # type: ignore[union-attr]
        paths.append(manager.intended_page_name or "")
        paths.extend(str(info.get("url_pathname") or "") for info in manager.get_pages().values())
    except AttributeError:  # no script context, or a Streamlit without these internals: plain sign-in page
        return []
    return list(dict.fromkeys(p for p in paths if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", p) and p != "sign-in"))


def _sign_in_navigation(config: AuthConfig) -> Any:
    """A navigation of sign-in pages only. It replaces the session's earlier one, so no page link survives a
    sign-out or expiry; it answers every address asked for (no "page not found"), and, as a page's identity
    is its address, signing in lands on the page that was asked for."""

    def page_at(url_path: str, default: bool) -> Any:
        return st.Page(lambda: render_sign_in(config), title="Sign in", icon=":material/login:",
                       url_path=url_path, default=default)

    pages = [page_at("sign-in", True), *(page_at(path, False) for path in _asked_url_paths())]
    return st.navigation(pages, position="hidden")


def _render_identity(identity: Identity) -> None:
    if _wall_screen():
        return
    with st.sidebar:
        until = f" · until {_until(identity.expires_at)}" if identity.expires_at else ""
        st.caption(f":material/person: **{plain_label(identity.subject, 60)}** · {identity.role}{until}")
        if identity.source != "header":
            st.button("Sign out", key="auth.sign_out", icon=":material/logout:", on_click=_sign_out)


def _render_open_mode_banner() -> None:
    if _wall_screen():
        return
    st.sidebar.markdown(
        ":orange-background[:material/lock_open: **Open local mode**]  \nNo sign-in key is configured, so "
        "everyone who reaches this address is an admin. Served on this machine (loopback) only."
    )


def gate() -> Identity:
    """Resolve this session's identity; render the refusal page and ``st.stop()`` when nobody may proceed."""
    try:
        config = auth_config()
    except AuthConfigError as exc:
        log.error("sign-in configuration refused: %s", exc)
        st.error(f"**Sign-in is misconfigured.** {exc}", icon=":material/settings:")
        st.stop()
    if config is None:
        if TOKEN_PARAM in st.query_params:
            del st.query_params[TOKEN_PARAM]  # nothing to check it against; still keep it off the screen
        identity = current_identity()
        _bind(identity)
        _render_open_mode_banner()
        return identity
    identity = _resolve(config)
    if identity is None:
        _sign_in_navigation(config).run()
        st.stop()
    _bind(identity)
    _render_identity(identity)
    return identity
