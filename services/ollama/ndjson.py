"""An open NDJSON response from Ollama, and the single place where httpx's exceptions become the dashboard's.

Iterate an ``NDJSONStream`` for parsed lines: split lines are reassembled, blank lines skipped, every line is
checked for an in-band ``error``, and a stream that ends without its final line or is cut mid-line raises
``StreamInterrupted``, never passes for a complete answer. ``abort()`` closes the connection from any
thread at once (the Stop button).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

from services.errors import (
    BackendError,
    BackendTimeout,
    Busy,
    InBandError,
    ModelNotFound,
    StreamInterrupted,
    TransportError,
    Unreachable,
    error_for_status,
)


def inband_error(message: str, backend_url: str) -> BackendError:
    lowered = message.lower()
    if "not found" in lowered or "file does not exist" in lowered:
        return ModelNotFound(message, -1, backend_url=backend_url)
    if "busy" in lowered or "overloaded" in lowered:
        return Busy(message, -1, backend_url=backend_url)
    return InBandError(message, -1, backend_url=backend_url)


def error_text(response: httpx.Response) -> str:
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
                        response.status_code, error_text(response), backend_url=self._backend_url
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
                        raise inband_error(str(parsed["error"]), self._backend_url)
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


