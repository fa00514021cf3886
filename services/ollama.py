"""One httpx client for Ollama's native API, with explicit timeouts and one error chokepoint.

Every request goes through ``OllamaClient._send``; every failure leaves it as a ``services.errors``
exception. Streams are ``NDJSONStream`` objects: iterate them for parsed lines (split lines are
reassembled, every line is checked for an in-band ``error``, a stream that ends without ``done: true``
or is cut mid-line raises ``StreamInterrupted``), and call ``abort()`` from any thread to close the
connection at once (the Stop button).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from services.auth import gateway_auth_headers
from services.config import Backend
from services.errors import (
    BackendError,
    BackendTimeout,
    Busy,
    InBandError,
    InvalidInput,
    ModelNotFound,
    StreamInterrupted,
    TransportError,
    Unreachable,
    error_for_status,
)

NS_PER_S = 1_000_000_000
MAX_MODEL_NAME = 256
_NAME_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
MODEL_NAME_RE = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::\d{{1,5}})?/)?(?:{_NAME_PART}/)*{_NAME_PART}(?::[A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})?$"
)
GO_DURATION_RE = re.compile(r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
GATEWAY_PATHS = {"/api/chat": "/ai/chat", "/api/generate": "/ai/generate", "/api/tags": "/ai/models"}
GATEWAY_MODEL_PATH = "/ai/models/"  # GET /ai/models/:model stands in for POST /api/show


def validate_model_name(name: str) -> str:
    """Refuse names Ollama would refuse (or that could be abused), before any request.

    >>> validate_model_name("llama3.2:1b")
    'llama3.2:1b'
    >>> validate_model_name("registry.ollama.ai/library/qwen2.5:0.5b-instruct-q4_K_M")
    'registry.ollama.ai/library/qwen2.5:0.5b-instruct-q4_K_M'
    >>> validate_model_name("../etc/passwd")
    Traceback (most recent call last):
    ...
    services.errors.InvalidInput: '../etc/passwd' is not a valid model name (expected [namespace/]model[:tag]).
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("Choose a model first.")
    name = name.strip()
    if len(name) > MAX_MODEL_NAME:
        raise InvalidInput(f"Model name is too long ({len(name)} characters, at most {MAX_MODEL_NAME}).")
    if not MODEL_NAME_RE.match(name) or ".." in name:
        shown = name if name.isprintable() else repr(name)[1:-1]
        raise InvalidInput(f"'{shown}' is not a valid model name (expected [namespace/]model[:tag]).")
    return name


def normalize_keep_alive(value: str | int | float) -> str | int:
    """Keep-alive as Ollama accepts it: seconds as a number, or a Go duration string.

    >>> normalize_keep_alive("300")
    300
    >>> normalize_keep_alive("10m")
    '10m'
    >>> normalize_keep_alive(-1)
    -1
    >>> normalize_keep_alive("forever")
    -1
    """
    if isinstance(value, bool):
        raise InvalidInput("keep_alive must be a duration like 5m, a number of seconds, or 'forever'.")
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().lower()
    if text in ("forever", "-1"):
        return -1
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if GO_DURATION_RE.match(text):
        return text
    raise InvalidInput(f"keep_alive {value!r} is not a duration like 30s, 5m, 1h or a number of seconds.")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        # Nanosecond fractions: trim to microseconds.
        trimmed = re.sub(r"(\.\d{6})\d+", r"\1", value)
        try:
            return datetime.fromisoformat(trimmed)
        except ValueError:
            return None


@dataclass(frozen=True)
class InstalledModel:
    """One entry of ``/api/tags``."""

    name: str
    size: int
    digest: str
    modified_at: datetime | None
    family: str = ""
    parameter_size: str = ""
    quantization_level: str = ""
    format: str = ""
    capabilities: tuple[str, ...] = ()
    context_length: int | None = None
    remote_host: str = ""

    @property
    def short_digest(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> InstalledModel:
        details = raw.get("details") or {}
        return cls(
            name=str(raw.get("name") or raw.get("model") or ""),
            size=int(raw.get("size") or 0),
            digest=str(raw.get("digest") or ""),
            modified_at=_parse_time(raw.get("modified_at")),
            family=str(details.get("family") or ""),
            parameter_size=str(details.get("parameter_size") or ""),
            quantization_level=str(details.get("quantization_level") or ""),
            format=str(details.get("format") or ""),
            capabilities=tuple(raw.get("capabilities") or ()),
            context_length=details.get("context_length"),
            remote_host=str(raw.get("remote_host") or ""),
        )


FOREVER_AFTER_YEARS = 20


@dataclass(frozen=True)
class LoadedModel:
    """One entry of ``/api/ps``: a model resident in memory."""

    name: str
    size: int
    size_vram: int
    digest: str
    expires_at: datetime | None
    context_length: int | None = None
    parameter_size: str = ""
    quantization_level: str = ""

    @property
    def processor(self) -> str:
        """The CPU/GPU split exactly as the Ollama CLI prints it."""
        if self.size <= 0 or self.size_vram == 0:
            return "100% CPU"
        if self.size_vram >= self.size:
            return "100% GPU"
        cpu = round((self.size - self.size_vram) / self.size * 100)
        return f"{cpu}%/{100 - cpu}% CPU/GPU"

    def seconds_until_unload(self, now: datetime | None = None) -> float | None:
        """Seconds left; ``math.inf`` for keep-alive < 0; negative while stopping; None if unknown."""
        if self.expires_at is None:
            return None
        now = now or datetime.now(UTC)
        left = (self.expires_at - now).total_seconds()
        if left > FOREVER_AFTER_YEARS * 365 * 24 * 3600:
            return math.inf
        return left

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> LoadedModel:
        details = raw.get("details") or {}
        return cls(
            name=str(raw.get("name") or raw.get("model") or ""),
            size=int(raw.get("size") or 0),
            size_vram=int(raw.get("size_vram") or 0),
            digest=str(raw.get("digest") or ""),
            expires_at=_parse_time(raw.get("expires_at")),
            context_length=raw.get("context_length"),
            parameter_size=str(details.get("parameter_size") or ""),
            quantization_level=str(details.get("quantization_level") or ""),
        )


@dataclass(frozen=True)
class GenerationStats:
    """The final line's counters, as Ollama sent them (nanoseconds), plus the client-side TTFT."""

    eval_count: int = 0
    eval_duration_ns: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration_ns: int = 0
    load_duration_ns: int = 0
    total_duration_ns: int = 0
    done_reason: str = ""
    time_to_first_token_s: float | None = None
    wall_time_s: float | None = None

    COLD_LOAD_S = 0.5

    @classmethod
    def from_final(
        cls, final: Mapping[str, Any], *, ttft_s: float | None = None, wall_s: float | None = None
    ) -> GenerationStats:
        """Zero-valued counters are omitted by Ollama, so every field defaults to 0."""
        return cls(
            eval_count=int(final.get("eval_count") or 0),
            eval_duration_ns=int(final.get("eval_duration") or 0),
            prompt_eval_count=int(final.get("prompt_eval_count") or 0),
            prompt_eval_duration_ns=int(final.get("prompt_eval_duration") or 0),
            load_duration_ns=int(final.get("load_duration") or 0),
            total_duration_ns=int(final.get("total_duration") or 0),
            done_reason=str(final.get("done_reason") or ""),
            time_to_first_token_s=ttft_s,
            wall_time_s=wall_s,
        )

    @property
    def tokens_per_second(self) -> float | None:
        if not self.eval_count or not self.eval_duration_ns:
            return None
        return self.eval_count / self.eval_duration_ns * NS_PER_S

    @property
    def prompt_tokens_per_second(self) -> float | None:
        if not self.prompt_eval_count or not self.prompt_eval_duration_ns:
            return None
        return self.prompt_eval_count / self.prompt_eval_duration_ns * NS_PER_S

    @property
    def load_s(self) -> float:
        return self.load_duration_ns / NS_PER_S

    @property
    def total_s(self) -> float:
        return self.total_duration_ns / NS_PER_S

    @property
    def cold_start(self) -> bool:
        return self.load_s >= self.COLD_LOAD_S

    def as_dict(self) -> dict[str, Any]:
        return {
            "eval_count": self.eval_count,
            "eval_duration": self.eval_duration_ns,
            "prompt_eval_count": self.prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration_ns,
            "load_duration": self.load_duration_ns,
            "total_duration": self.total_duration_ns,
            "done_reason": self.done_reason,
            "time_to_first_token_s": self.time_to_first_token_s,
            "wall_time_s": self.wall_time_s,
            "tokens_per_second": self.tokens_per_second,
        }


@dataclass(frozen=True)
class ChatChunk:
    """One parsed line of a chat or generate stream."""

    content: str = ""
    thinking: str = ""
    done: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_line(cls, line: Mapping[str, Any]) -> ChatChunk:
        message = line.get("message")
        if isinstance(message, Mapping):
            content, thinking = message.get("content") or "", message.get("thinking") or ""
        else:
            content, thinking = line.get("response") or "", line.get("thinking") or ""
        return cls(content=str(content), thinking=str(thinking), done=bool(line.get("done")), raw=line)


def _inband_error(message: str, backend_url: str) -> BackendError:
    lowered = message.lower()
    if "not found" in lowered or "file does not exist" in lowered:
        return ModelNotFound(message, -1, backend_url=backend_url)
    if "busy" in lowered or "overloaded" in lowered:
        return Busy(message, -1, backend_url=backend_url)
    return InBandError(message, -1, backend_url=backend_url)


def _error_text(response: httpx.Response) -> str:
    body = response.text.strip()
    if not body:
        if response.status_code == 403:
            return "403 Forbidden with an empty body (a loopback Ollama refusing a foreign Host header?)"
        return f"HTTP {response.status_code}"
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:500]
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):  # OpenAI-shaped errors from gateways
            return str(error.get("message") or error)[:500]
        if error:
            return str(error)[:500]
    return body[:500]


class NDJSONStream:
    """An open NDJSON response: iterate for parsed lines; ``abort()`` closes it from any thread."""

    def __init__(
        self,
        opener: Callable[[], Any],
        backend_url: str,
        stall_timeout_s: float | None,
        is_final: Callable[[Mapping[str, Any]], bool] = lambda line: bool(line.get("done")),
    ) -> None:
        self._opener = opener
        self._is_final = is_final
        self._backend_url = backend_url
        self._stall_timeout_s = stall_timeout_s
        self._lock = threading.Lock()
        self._aborted = False
        self._response: httpx.Response | None = None
        self.finished = False

    @property
    def aborted(self) -> bool:
        return self._aborted

    def abort(self) -> None:
        """Close the connection now, waking a reader blocked on the socket."""
        with self._lock:
            self._aborted = True
            response = self._response
        if response is None:
            return
        network_stream = response.extensions.get("network_stream")
        sock = network_stream.get_extra_info("socket") if network_stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        saw_done = False
        try:
            with self._opener() as response:
                with self._lock:
                    self._response = response
                    if self._aborted:
                        return
                if response.is_redirect:
                    raise TransportError(f"refused a redirect to {response.headers.get('location', '?')}",
                                         backend_url=self._backend_url)
                if response.status_code >= 400:
                    response.read()
                    raise error_for_status(
                        response.status_code, _error_text(response), backend_url=self._backend_url
                    )
                if self._stall_timeout_s is not None:
                    # Headers arrive only after the model is loaded; from here on, a gap longer than
                    # the stall timeout between two lines is a stalled backend, not a slow load.
                    response.request.extensions.setdefault("timeout", {})["read"] = self._stall_timeout_s
                for line in response.iter_lines():
                    if self._aborted:
                        return
                    if not line.strip():
                        continue
                    try:
                        parsed = json.loads(line)
                    except ValueError:
                        raise StreamInterrupted(
                            "the stream was cut in the middle of a line", backend_url=self._backend_url
                        ) from None
                    if not isinstance(parsed, dict):
                        raise StreamInterrupted("the stream sent a line that is not an object",
                                                backend_url=self._backend_url)
                    if "error" in parsed:
                        raise _inband_error(str(parsed["error"]), self._backend_url)
                    if self._is_final(parsed):
                        saw_done = True
                    yield parsed
                    if saw_done:
                        break
        except httpx.HTTPError as exc:
            if self._aborted:
                return
            raise translate_transport_error(exc, self._backend_url, streaming=True) from None
        if not saw_done and not self._aborted:
            raise StreamInterrupted("the stream ended without its final line", backend_url=self._backend_url)
        self.finished = saw_done


def translate_transport_error(exc: httpx.HTTPError, backend_url: str, *, streaming: bool = False) -> BackendError:
    """The single place where httpx's exceptions become the dashboard's."""
    if isinstance(exc, httpx.ConnectTimeout):
        return Unreachable(f"connection timed out: {exc}", backend_url=backend_url)
    if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol):
        return Unreachable(f"cannot connect: {exc}", backend_url=backend_url)
    if isinstance(exc, httpx.ReadTimeout):
        what = "no data for too long while streaming" if streaming else "read timed out"
        return BackendTimeout(what, backend_url=backend_url)
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(str(exc) or exc.__class__.__name__, backend_url=backend_url)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        if streaming:
            return StreamInterrupted(f"connection closed mid-stream: {exc}", backend_url=backend_url)
        return Unreachable(f"connection dropped: {exc}", backend_url=backend_url)
    if isinstance(exc, httpx.TooManyRedirects):
        return TransportError("refused to follow redirects", backend_url=backend_url)
    return TransportError(f"{exc.__class__.__name__}: {exc}", backend_url=backend_url)


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
        self._quick_timeout = httpx.Timeout(connect=connect_timeout_s, read=max(connect_timeout_s, 10.0),
                                            write=10.0, pool=connect_timeout_s)
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
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, quick: bool = False
    ) -> httpx.Response:
        try:
            response = self._http.request(
                method,
                self._path(path),
                json=body,
                headers=dict(self._auth_headers()),
                timeout=self._quick_timeout if quick else self._timeout,
            )
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, self.base_url) from None
        if response.is_redirect:
            raise TransportError(
                f"refused a redirect to {response.headers.get('location', '?')}", backend_url=self.base_url
            )
        if response.status_code >= 400:
            raise error_for_status(response.status_code, _error_text(response), backend_url=self.base_url)
        return response

    def _json(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
              quick: bool = False) -> dict[str, Any]:
        response = self._send(method, path, body, quick=quick)
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
            self._json("GET", "/api/tags", quick=True)
            return "gateway"
        return str(self._json("GET", "/api/version", quick=True).get("version", ""))

    def tags(self) -> list[InstalledModel]:
        models = self._json("GET", "/api/tags", quick=True).get("models") or []
        return [InstalledModel.from_api(m) for m in models if isinstance(m, Mapping)]

    def ps(self) -> list[LoadedModel]:
        models = self._json("GET", "/api/ps", quick=True).get("models") or []
        return [LoadedModel.from_api(m) for m in models if isinstance(m, Mapping)]

    def show(self, model: str) -> dict[str, Any]:
        name = validate_model_name(model)
        if self.backend.kind == "gateway":
            return self._json("GET", GATEWAY_MODEL_PATH + quote(name, safe=":"), quick=True)
        return self._json("POST", "/api/show", {"model": name}, quick=True)

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

    def copy(self, source: str, destination: str) -> None:
        self._send("POST", "/api/copy", {"source": validate_model_name(source),
                                         "destination": validate_model_name(destination)})


def make_client(backend: Backend, settings: Any | None = None, **overrides: Any) -> OllamaClient:
    """A client with the timeouts from settings (``services.config.Settings``)."""
    if settings is not None:
        overrides.setdefault("connect_timeout_s", settings.connect_timeout_s)
        overrides.setdefault("load_timeout_s", settings.load_timeout_s)
        overrides.setdefault("stall_timeout_s", settings.stall_timeout_s)
    if backend.kind == "gateway":
        overrides.setdefault("auth_headers", gateway_auth_headers(backend))
    return OllamaClient(backend, **overrides)


class ClientPool:
    """One client per backend, made on first use, for process-wide workers (pull jobs, batches) that run
    on their own threads and so must not reach for Streamlit's caches."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self._clients: dict[str, OllamaClient] = {}
        self._lock = threading.Lock()

    def get(self, backend: Backend | str) -> OllamaClient:
        """The client of ``backend`` (a Backend, or a configured backend's name)."""
        if isinstance(backend, str):
            backend = self._settings.backend(backend)
        with self._lock:
            client = self._clients.get(backend.name)
            if client is None or client.backend != backend:
                client = self._clients[backend.name] = make_client(backend, self._settings)
            return client
