"""Entry point and router: page config, the shared sidebar (backend picker), navigation. Nothing else."""

from __future__ import annotations

import logging

import streamlit as st

from components import session
from components.status import render_sidebar_status, render_unreachable
from services.errors import DashboardError, user_message
from services.roles import Role, allows

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

st.set_page_config(page_title="Ollama operator dashboard", page_icon=":material/smart_toy:", layout="wide")

try:
    settings = session.get_settings()
except DashboardError as exc:
    st.error(f"The dashboard's configuration is invalid: {user_message(exc)}", icon=":material/settings:")
    st.stop()

backend_names = [b.name for b in settings.backends]
with st.sidebar:
    st.selectbox(
        "Backend",
        backend_names,
        key=session.BACKEND_KEY,
        help="Which Ollama host this browser works against. Configured by an admin, per session.",
        disabled=len(backend_names) == 1,
    )
backend = session.current_backend()
health = session.backend_health(backend)
render_sidebar_status(backend, health)
if not health.reachable:
    render_unreachable(backend, health)

# Every page with the least role that may open it; the navigation lists only what this role may use.
PAGES: list[tuple[str, str, str, str, Role]] = [
    ("pages/chat.py", "Chat", ":material/chat:", "chat", "operator"),
]
identity = session.current_identity()
pages = [
    st.Page(path, title=title, icon=icon, url_path=url_path)
    for path, title, icon, url_path, needed in PAGES
    if allows(identity.role, needed)
]


def _landing() -> None:
    """``/`` sends people to the first page they may use, so every page has its own address."""
    st.switch_page(pages[0])


st.navigation([st.Page(_landing, title="Home", url_path="home", default=True, visibility="hidden"), *pages]).run()
