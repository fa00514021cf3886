"""Backend status shown on every page: reachable or not, and what to do about it."""

from __future__ import annotations

import streamlit as st

from components.session import BackendHealth
from services.config import Backend
from services.safe_text import plain_label


def render_unreachable(backend: Backend, health: BackendHealth) -> None:
    """The clear 'not reachable' state, with what to do; never a traceback."""
    st.error(
        f"**{plain_label(health.headline, 200)}** (backend {plain_label(backend.name)}): "
        f"{plain_label(health.reason, 200)}.\n\n"
        "What to do: start Ollama on that host (`ollama serve`), or point `OLLAMA_HOST` / "
        "`DASHBOARD_BACKENDS_FILE` at a running one, or pick another backend in the sidebar.",
        icon=":material/cloud_off:",
    )


def render_sidebar_status(backend: Backend, health: BackendHealth) -> None:
    if health.reachable:
        st.sidebar.caption(f":green[●] `{backend.url}` · Ollama {plain_label(health.version)}")
    else:
        st.sidebar.caption(f":red[●] `{backend.url}` · **not reachable**")
