"""What belongs to one browser session: who it is, which backend it works against, and the page path's reads.

Per session, in ``st.session_state``: the identity (set by the sign-in gate), the chosen backend, widget
values. Shared and bounded, in ``st.cache_data``: the page path's reads of a backend (version, tags, ps),
each within the client's short page timeout. A backend found not answering is not asked again by the same
page: the reads after a failed health check fail at once with the same reason, so a host that accepts and
never answers costs one page timeout per page, not one per call.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from components import runtime
from services.access.acting import bind_actor
from services.access.roles import Role, require
from services.access.tokens import key_configured
from services.config import Backend, Settings
from services.errors import BackendTimeout, DashboardError, Forbidden, Unreachable, user_message
from services.ollama.client import OllamaClient
from services.ollama.wire import InstalledModel

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
    """Server-side check before an action; raises ``Forbidden`` (a DashboardError) when not allowed.

    It also binds the person as the one acting, for a gateway token minted on this thread (callbacks and
    fragment reruns run on threads where the router did not).
    """
    identity = current_identity()
    require(identity.role, needed, action)
    bind_actor(identity.subject, identity.role)
    return identity


def get_settings() -> Settings:
    return runtime.settings()


def get_client(backend: Backend) -> OllamaClient:
    return runtime.client(backend)


def current_backend() -> Backend:
    """The backend this browser session chose (the first configured one by default)."""
    settings = runtime.settings()
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
    down: str = ""  # "timeout" or "unreachable" when the backend is not answering at all


@st.cache_data(ttl=5, show_spinner=False, max_entries=64)
def backend_health(backend: Backend) -> BackendHealth:
    """A version probe within the page timeout, cached for a few seconds so every rerun does not wait on it."""
    try:
        return BackendHealth(reachable=True, version=runtime.client(backend).version())
    except DashboardError as exc:
        down = "timeout" if isinstance(exc, BackendTimeout) else "unreachable" if isinstance(exc, Unreachable) else ""
        headline = {"timeout": f"Ollama at {backend.url} is not answering",
                    "unreachable": f"Ollama is not reachable at {backend.url}"}.get(
                        down, f"{backend.url} refused the health check")
        return BackendHealth(reachable=False, message=user_message(exc), reason=getattr(exc, "message", str(exc)),
                             headline=headline, down=down)


def ensure_answering(backend: Backend) -> None:
    """Raise the health check's error at once when the backend is known not to answer right now."""
    health = backend_health(backend)
    if health.down == "timeout":
        raise BackendTimeout(health.reason, backend_url=backend.url)
    if health.down == "unreachable":
        raise Unreachable(health.reason, backend_url=backend.url)


@st.cache_data(ttl=10, show_spinner=False, max_entries=64)
def _installed_models(backend: Backend) -> list[InstalledModel]:
    return runtime.client(backend).tags()


def installed_models(backend: Backend) -> list[InstalledModel]:
    ensure_answering(backend)
    return _installed_models(backend)


def refresh_backend_caches() -> None:
    backend_health.clear()
    _installed_models.clear()
