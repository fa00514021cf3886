"""Entry point and router: page config, the shared sidebar (backend picker), navigation. Nothing else."""

from __future__ import annotations

import logging

import streamlit as st

from components import monitoring, session
from components.auth import gate
from components.status import render_sidebar_status, render_unreachable
from services.errors import DashboardError, user_message
from services.roles import Role, allows

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
# httpx logs every request at INFO: on a fleet probed every few seconds that drowns the useful lines.
logging.getLogger("httpx").setLevel(logging.WARNING)

st.set_page_config(page_title="Ollama operator dashboard", page_icon=":material/smart_toy:", layout="wide")

try:
    settings = session.get_settings()
except DashboardError as exc:
    st.error(f"The dashboard's configuration is invalid: {user_message(exc)}", icon=":material/settings:")
    st.stop()

monitoring.ensure_started()  # process-wide prober, probe history and /metrics exporter (once per process)

# Sign-in before anything else (backend names, probes): the sign-in page and st.stop() when refused.
gate()

# The wall screen (/monitoring?kiosk=1): no sidebar, no menus, no banner; its tiles show every backend.
kiosk = st.query_params.get("kiosk") == "1"
if not kiosk:
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
    ("pages/monitoring.py", "Monitoring", ":material/monitor_heart:", "monitoring", "viewer"),
    ("pages/models.py", "Models", ":material/deployed_code:", "models", "operator"),
    ("pages/descriptions.py", "Product studio", ":material/storefront:", "descriptions", "operator"),
    ("pages/compare.py", "Compare models", ":material/compare:", "compare", "operator"),
    ("pages/audit.py", "Audit log", ":material/policy:", "audit", "admin"),
]
identity = session.current_identity()
pages = [
    st.Page(path, title=title, icon=icon, url_path=url_path)
    for path, title, icon, url_path, needed in PAGES
    if allows(identity.role, needed)
]


def _landing() -> None:
    """``/`` sends people to the first page they may use, so every page has its own address."""
    if not pages:
        st.info(f"Signed in as {identity.role}: no page is available to this role yet.", icon=":material/block:")
        return
    st.switch_page(pages[0])


st.navigation([st.Page(_landing, title="Home", url_path="home", default=True, visibility="hidden"), *pages],
              position="hidden" if kiosk else "sidebar").run()
