"""Clients for the configured backends, with what each kind needs to be let in.

The one place where the access package's per-request gateway tokens are wired into an Ollama client (the
client itself knows no person): Ollama Cloud's key is the client's own business, a gateway backend gets
``gateway_auth_headers`` for whoever is acting. Timeouts come from the settings.
"""

from __future__ import annotations

import threading
from typing import Any

from services.access.acting import ActorResolver
from services.access.gateway import gateway_auth_headers
from services.config import Backend, Settings
from services.ollama.client import OllamaClient


def connect(backend: Backend, settings: Settings | None = None, *, actor: ActorResolver | None = None,
            **overrides: Any) -> OllamaClient:
    """A client for ``backend`` with the timeouts from ``settings``; ``actor`` finds the person acting on a
    gateway when no ContextVar is bound (a browser session's fragment rerun)."""
    if settings is not None:
        overrides.setdefault("connect_timeout_s", settings.connect_timeout_s)
        overrides.setdefault("load_timeout_s", settings.load_timeout_s)
        overrides.setdefault("stall_timeout_s", settings.stall_timeout_s)
        overrides.setdefault("page_timeout_s", settings.page_timeout_s)
    if backend.kind == "gateway":
        overrides.setdefault("auth_headers", gateway_auth_headers(backend, actor=actor))
    return OllamaClient(backend, **overrides)


class ClientPool:
    """One client per backend, made on first use, for process-wide workers (pull jobs, batches) that run on
    their own threads: they act through ``acting_as`` for the person who started the job."""

    def __init__(self, settings: Settings, *, actor: ActorResolver | None = None) -> None:
        self._settings = settings
        self._actor = actor
        self._clients: dict[str, OllamaClient] = {}
        self._lock = threading.Lock()

    def get(self, backend: Backend | str) -> OllamaClient:
        """The client of ``backend`` (a Backend, or a configured backend's name)."""
        if isinstance(backend, str):
            backend = self._settings.backend(backend)
        with self._lock:
            client = self._clients.get(backend.name)
            if client is None or client.backend != backend:
                client = self._clients[backend.name] = connect(backend, self._settings, actor=self._actor)
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
