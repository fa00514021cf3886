"""Streamlit glue: what is shared by the process (cached) and what belongs to one browser session.

Shared, via ``st.cache_resource``: settings and one client per backend (clients hold no per-user state).
Per session, via ``st.session_state``: the chosen backend, the conversation, widget values.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from services.auth import key_configured
from services.config import Backend, Settings, load_settings
from services.errors import BackendTimeout, DashboardError, Unreachable, user_message
from services.ollama import InstalledModel, OllamaClient, make_client
from services.roles import Forbidden, Role, require

BACKEND_KEY = "backend"
IDENTITY_KEY = "identity"


@dataclass(frozen=True)
class Identity:
    """Who this browser session is. Open local mode (no JWT key configured) is a local admin."""

    subject: str
    role: Role
    open_mode: bool = False
    expires_at: float | None = None  # the token's exp (epoch seconds), re-checked on every rerun
    source: str = ""  # how the token arrived: header, form or link


def current_identity() -> Identity:
    identity = st.session_state.get(IDENTITY_KEY)
    if isinstance(identity, Identity):
        return identity
    if key_configured():
        # Sign-in is required: nobody is an admin by default (fail closed even if the gate was skipped).
        raise Forbidden("Not signed in: sign in with an access token first.")
    return Identity(subject="local", role="admin", open_mode=True)


def require_role(needed: Role, action: str) -> Identity:
    """Server-side check before an action; raises ``Forbidden`` (a DashboardError) when not allowed."""
    identity = current_identity()
    require(identity.role, needed, action)
    return identity


@st.cache_resource(show_spinner=False)
def get_settings() -> Settings:
    return load_settings()


@st.cache_resource(show_spinner=False, max_entries=64)
def _client_for(backend: Backend, connect_s: float, load_s: float, stall_s: float) -> OllamaClient:
    return make_client(backend, connect_timeout_s=connect_s, load_timeout_s=load_s, stall_timeout_s=stall_s)


def get_client(backend: Backend) -> OllamaClient:
    settings = get_settings()
    return _client_for(backend, settings.connect_timeout_s, settings.load_timeout_s, settings.stall_timeout_s)


def current_backend() -> Backend:
    """The backend this browser session chose (the first configured one by default)."""
    settings = get_settings()
    names = [b.name for b in settings.backends]
    chosen = st.session_state.get(BACKEND_KEY)
    if chosen not in names:
        chosen = names[0]
        st.session_state[BACKEND_KEY] = chosen
    return settings.backend(chosen)


@dataclass(frozen=True)
class BackendHealth:
    reachable: bool
    version: str = ""
    message: str = ""
    reason: str = ""
    headline: str = ""


@st.cache_data(ttl=5, show_spinner=False, max_entries=64)
def backend_health(backend: Backend) -> BackendHealth:
    """A quick version probe, cached for a few seconds so every rerun does not hit the backend."""
    try:
        return BackendHealth(reachable=True, version=get_client(backend).version())
    except DashboardError as exc:
        down = isinstance(exc, Unreachable | BackendTimeout)
        headline = f"Ollama is not reachable at {backend.url}" if down else f"{backend.url} refused the health check"
        return BackendHealth(reachable=False, message=user_message(exc), reason=getattr(exc, "message", str(exc)),
                             headline=headline)


@st.cache_data(ttl=10, show_spinner=False, max_entries=64)
def installed_models(backend: Backend) -> list[InstalledModel]:
    return get_client(backend).tags()


def refresh_backend_caches() -> None:
    backend_health.clear()
    installed_models.clear()
