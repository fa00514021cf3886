"""One httpx client for Ollama's native API, with explicit timeouts and one error chokepoint.

Every request goes through ``OllamaClient._send``; every failure leaves it as a ``services.errors``
exception. Three read budgets: the page path (tags, ps, show, version) gets a short one so a host that
accepts and never answers is reported within seconds; a generation may wait for a cold model load before
its first byte; once a stream has started, a gap longer than the stall timeout is a stalled backend.
The client knows no person: credentials come from ``auth_headers``, injected where clients are built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from services.config import Backend
from services.errors import (
    BackendTimeout,
    InvalidInput,
    TransportError,
    error_for_status,
)
from services.ollama.ndjson import NDJSONStream, error_text, translate_transport_error
from services.ollama.wire import InstalledModel, LoadedModel, normalize_keep_alive, validate_model_name

GATEWAY_PATHS = {"/api/chat": "/ai/chat", "/api/generate": "/ai/generate", "/api/tags": "/ai/models"}
GATEWAY_MODEL_PATH = "/ai/models/"  # GET /ai/models/:model stands in for POST /api/show


AuthHeaders = Callable[[], Mapping[str, str]]


class OllamaClient:
    """The native API of one backend. Thread-safe; shared by every session (no per-user state)."""

    def __init__(
        self,
        backend: Backend,
        *,
        connect_timeout_s: float = 5.0,
        load_timeout_s: float = 600.0,
        stall_timeout_s: float | None = 120.0,
        page_timeout_s: float = 5.0,
        auth_headers: AuthHeaders | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.backend = backend
        self.base_url = backend.url.rstrip("/")
        self._stall_timeout_s = stall_timeout_s
        self._auth_headers = auth_headers or self._default_auth
        # Read covers a cold model load (headers come only after it); connect fails fast on a dead host.
        self._timeout = httpx.Timeout(connect=connect_timeout_s, read=load_timeout_s, write=60.0,
                                      pool=connect_timeout_s)
        # The page path (tags, ps, show, version): a host that accepts and never answers is reported in seconds.
        self.page_timeout_s = page_timeout_s
        self._page_timeout = httpx.Timeout(connect=min(connect_timeout_s, page_timeout_s), read=page_timeout_s,
                                           write=page_timeout_s, pool=page_timeout_s)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=self._timeout,
            follow_redirects=False,
            verify=backend.verify_tls,
            transport=transport,
            headers={"User-Agent": "ollama-operator-dashboard/0.1"},
        )

    def _default_auth(self) -> Mapping[str, str]:
        if self.backend.kind == "ollama-cloud" and self.backend.api_key:
            return {"Authorization": f"Bearer {self.backend.api_key}"}
        return {}

    def close(self) -> None:
        self._http.close()

    def _path(self, path: str) -> str:
        if self.backend.kind != "gateway" or path.startswith(GATEWAY_MODEL_PATH):
            return path
        mapped = GATEWAY_PATHS.get(path)
        if mapped is None:
            raise InvalidInput(f"{path} is not available through the gateway backend {self.backend.name}.")
        return mapped

    # The chokepoint: every non-streamed request.
    def _send(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, page: bool = False
    ) -> httpx.Response:
        try:
            response = self._http.request(
                method,
                self._path(path),
                json=body,
                headers=dict(self._auth_headers()),
                timeout=self._page_timeout if page else self._timeout,
            )
        except httpx.TimeoutException as exc:
            if page and not isinstance(exc, httpx.ConnectTimeout):
                raise BackendTimeout(f"no answer within {self.page_timeout_s:g} s",
                                     backend_url=self.base_url) from None
            raise translate_transport_error(exc, self.base_url) from None
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, self.base_url) from None
        if response.is_redirect:
            raise TransportError(
                f"refused a redirect to {response.headers.get('location', '?')}", backend_url=self.base_url
            )
        if response.status_code >= 400:
            raise error_for_status(response.status_code, error_text(response), backend_url=self.base_url)
        return response

    def _json(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
              page: bool = False) -> dict[str, Any]:
        response = self._send(method, path, body, page=page)
        if not response.content.strip():
            return {}
        try:
            parsed = response.json()
        except ValueError:
            raise TransportError(f"{path} answered with something that is not JSON",
                                 backend_url=self.base_url) from None
        if not isinstance(parsed, dict):
            raise TransportError(f"{path} answered with unexpected JSON", backend_url=self.base_url)
        return parsed

    def stream(
        self, path: str, body: Mapping[str, Any], *, is_final: Callable[[Mapping[str, Any]], bool] | None = None
    ) -> NDJSONStream:
        """Open a streaming POST lazily: nothing is sent until the stream is iterated.

        The auth headers are computed now, on the caller's thread: the stream is opened later on a reader
        thread, where the caller's ContextVars (who is acting, for a gateway token) are not set.
        """
        payload = {**body, "stream": True}
        mapped = self._path(path)
        headers = dict(self._auth_headers())

        def opener() -> Any:
            return self._http.stream("POST", mapped, json=payload, headers=headers)

        stall = self._stall_timeout_s if path != "/api/pull" else max(self._stall_timeout_s or 0, 300.0)
        if is_final is None:
            return NDJSONStream(opener, self.base_url, stall)
        return NDJSONStream(opener, self.base_url, stall, is_final)

    # ---- read-only endpoints -------------------------------------------------------------------
    def version(self) -> str:
        if self.backend.kind == "gateway":
            # The gateway has no version endpoint; listing models proves it answers and accepts our token.
            self._json("GET", "/api/tags", page=True)
            return "gateway"
        return str(self._json("GET", "/api/version", page=True).get("version", ""))

    def tags(self) -> list[InstalledModel]:
        models = self._json("GET", "/api/tags", page=True).get("models") or []
        return [InstalledModel.from_api(m) for m in models if isinstance(m, Mapping)]

    def ps(self) -> list[LoadedModel]:
        models = self._json("GET", "/api/ps", page=True).get("models") or []
        return [LoadedModel.from_api(m) for m in models if isinstance(m, Mapping)]

    def show(self, model: str) -> dict[str, Any]:
        name = validate_model_name(model)
        if self.backend.kind == "gateway":
            return self._json("GET", GATEWAY_MODEL_PATH + quote(name, safe=":"), page=True)
        return self._json("POST", "/api/show", {"model": name}, page=True)

    # ---- generation ----------------------------------------------------------------------------
    def chat(
        self,
        model: str,
        messages: list[Mapping[str, Any]],
        *,
        options: Mapping[str, Any] | None = None,
        think: bool | str | None = None,
        format: str | Mapping[str, Any] | None = None,
        keep_alive: str | int | None = None,
    ) -> NDJSONStream:
        body: dict[str, Any] = {"model": validate_model_name(model), "messages": list(messages)}
        if options:
            body["options"] = dict(options)
        if think is not None:
            body["think"] = think
        if format is not None:
            body["format"] = format
        if keep_alive is not None:
            body["keep_alive"] = normalize_keep_alive(keep_alive)
        return self.stream("/api/chat", body)

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        keep_alive: str | int | None = None,
    ) -> NDJSONStream:
        body: dict[str, Any] = {"model": validate_model_name(model), "prompt": prompt}
        if system:
            body["system"] = system
        if options:
            body["options"] = dict(options)
        if format is not None:
            body["format"] = format
        if keep_alive is not None:
            body["keep_alive"] = normalize_keep_alive(keep_alive)
        return self.stream("/api/generate", body)

    def embed(self, model: str, inputs: list[str]) -> list[list[float]]:
        result = self._json("POST", "/api/embed", {"model": validate_model_name(model), "input": inputs})
        return [list(vector) for vector in result.get("embeddings") or []]

    # ---- model management ----------------------------------------------------------------------
    def load(self, model: str, keep_alive: str | int = "5m") -> dict[str, Any]:
        """Warm a model up with the empty-request mechanism; returns once it is loaded."""
        body = {"model": validate_model_name(model), "keep_alive": normalize_keep_alive(keep_alive),
                "stream": False}
        return self._json("POST", "/api/generate", body)

    def unload(self, model: str) -> dict[str, Any]:
        body = {"model": validate_model_name(model), "keep_alive": 0, "stream": False}
        return self._json("POST", "/api/generate", body)

    def pull(self, model: str) -> NDJSONStream:
        # A pull ends with {"status": "success"}, not done: true.
        return self.stream("/api/pull", {"model": validate_model_name(model), "insecure": False},
                           is_final=lambda line: line.get("status") == "success")

    def delete(self, model: str) -> None:
        self._send("DELETE", "/api/delete", {"model": validate_model_name(model)})

    def create(
        self,
        model: str,
        *,
        from_model: str,
        system: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        template: str | None = None,
    ) -> NDJSONStream:
        """Create ``model`` from an installed one with a system prompt and parameters (``ollama create``).

        Streams free-text statuses ("using existing layer sha256:…", "writing manifest") and ends with
        ``{"status": "success"}``. Ollama replaces a model of the same name without asking: callers ask first.
        """
        body: dict[str, Any] = {"model": validate_model_name(model), "from": validate_model_name(from_model)}
        if system is not None:
            body["system"] = system
        if parameters:
            body["parameters"] = dict(parameters)
        if template is not None:
            body["template"] = template
        return self.stream("/api/create", body, is_final=lambda line: line.get("status") == "success")

    def copy(self, source: str, destination: str) -> None:
        self._send("POST", "/api/copy", {"source": validate_model_name(source),
                                         "destination": validate_model_name(destination)})


