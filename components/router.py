"""The router: page config, the startup check, the sign-in gate, the shared sidebar and the navigation, built
from the page registry; and ``enter_page``, the first line of every page file.

However Streamlit was started, a page runs only behind the gate. Through ``app.py`` the router runs first
and the page's ``enter_page`` only checks the page's least role. Streamlit also discovers ``pages/`` by
itself until some session calls ``st.navigation`` (its v1 multipage mode): a first visit straight to
``/descriptions`` on a fresh ``streamlit run app.py`` would run that file alone. ``enter_page`` notices it
was not routed and runs the router instead, whose ``st.navigation`` (the public call that ends v1 mode for
the process) runs the asked page behind the gate; then it stops the unrouted run.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

import streamlit as st

from components import runtime, session
from components.auth import gate, wall_screen
from components.session import Identity
from components.status import render_sidebar_status, render_unreachable
from services.access.acting import bind_actor
from services.access.pages import page_spec, pages_for
from services.config import Backend
from services.errors import ConfigError, Forbidden
from services.resources import APP_ROOT, FAVICON_FILE
from services.safe_text import plain_label

log = logging.getLogger(__name__)

# True while the router runs a page: set around ``st.navigation(...).run()`` on the script's thread.
_ROUTED: ContextVar[bool] = ContextVar("dashboard_routed", default=False)


def run() -> None:
    """Everything ``app.py`` does on each script run, in order; the page runs last."""
    st.set_page_config(page_title="Ollama operator dashboard", page_icon=str(FAVICON_FILE), layout="wide")
    bind_actor(None, None)  # nobody acts until the gate says who
    try:
        check = runtime.startup()
    except ConfigError as exc:
        log.error("refusing to serve: %s", exc)
        st.error(f"**The dashboard's configuration is refused.** {plain_label(str(exc), 600)}",
                 icon=":material/settings:")
        st.stop()
    runtime.monitoring()  # already running when the server started it; AppTest has no server
    identity = gate()  # the sign-in page and st.stop() when nobody may proceed
    kiosk = wall_screen()
    if not kiosk:
        _render_sidebar(check.settings.backends)
    allowed = pages_for(identity.role)
    # Absolute paths: when Streamlit ran a page file on its own, relative ones would resolve against pages/.
    pages = [st.Page(str(APP_ROOT / spec.script), title=spec.title, icon=spec.icon, url_path=spec.url_path)
             for spec in allowed]

    def landing() -> None:
        """``/`` sends people to the first page they may use, so every page has its own address."""
        if not pages:
            st.info(f"Signed in as {identity.role}: no page is available to this role yet.", icon=":material/block:")
            return
        st.switch_page(pages[0])

    navigation = st.navigation(
        [st.Page(landing, title="Home", url_path="home", default=True, visibility="hidden"), *pages],
        position="hidden" if kiosk else "sidebar")
    token = _ROUTED.set(True)
    try:
        navigation.run()
    finally:
        _ROUTED.reset(token)


def _render_sidebar(backends: tuple[Backend, ...]) -> None:
    names = [b.name for b in backends]
    with st.sidebar:
        st.selectbox("Backend", names, key=session.BACKEND_KEY, disabled=len(names) == 1,
                     help="Which Ollama host this browser works against. Configured by an admin, per session.")
    backend = session.current_backend()
    health = session.backend_health(backend)
    render_sidebar_status(backend, health)
    if not health.reachable:
        render_unreachable(backend, health)


def enter_page(url_path: str) -> Identity:
    """The first line of every page: the gate, whatever way the page was reached; returns who is signed in."""
    if not _ROUTED.get():
        run()  # Streamlit ran this file on its own: the router runs it again, behind the gate
        st.stop()
    spec = page_spec(url_path)
    try:
        return session.require_role(spec.least_role, f"opening {spec.title}")
    except Forbidden as exc:
        st.error(str(exc), icon=":material/lock:")
        st.stop()
