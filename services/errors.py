"""The dashboard's one exception tree: every exception class it defines lives here.

Every call to a backend ends in one of these, never in an ``httpx`` or ``json`` exception, so pages
catch ``DashboardError`` and show ``user_message(exc)``; no traceback reaches a user.

    DashboardError
    ├── InvalidInput              refused before any work (bad model name, over-long prompt, upload over its limits)
    ├── ConfigError               the configuration is unusable: the dashboard refuses to start with it
    ├── AuthError                 a sign-in token was refused (``reason``: not signed in, expired, forbidden, invalid)
    ├── Forbidden                 the signed-in role does not allow this action
    ├── OutputRejected            a model answered, but the answer failed a task's checks
    ├── Cancelled                 work stopped because someone asked
    ├── QueryFailed               a Prometheus panel's query gave no data (the message is what the panel shows)
    ├── StoreUnavailable          the job database did not answer (restarting, unreachable, locked): retry later
    ├── StreamFailed              a stream failed after some output: ``cause`` says why, ``partial`` keeps what came
    └── BackendError              something went wrong talking to a backend
        ├── TransportError        no usable HTTP response
        │   ├── Unreachable       connection refused, DNS failure, TLS failure
        │   ├── BackendTimeout    connect timed out, the host accepted and never answered, or the stream stalled
        │   └── StreamInterrupted the stream ended without ``done: true`` or was cut mid-line
        └── ResponseError         the backend answered with an error (``status_code``; -1 when in-band)
            ├── BadRequest        400: invalid options, unsupported capability, ...
            ├── Unauthorized      401 / 403: missing or refused credentials
            ├── ModelNotFound     404 for a model, or a pull of a name that does not exist
            ├── Busy              429 / 503: queue full or rate limited; safe to retry later
            ├── ServerError       other 5xx: runner crash, out of memory, ...
            └── InBandError       ``{"error": ...}`` line inside a 200 stream, after output began
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = [
    "REASON_TITLES",
    "AuthError",
    "BackendError",
    "BackendTimeout",
    "BadRequest",
    "Busy",
    "Cancelled",
    "ConfigError",
    "DashboardError",
    "Forbidden",
    "InBandError",
    "InvalidInput",
    "ModelNotFound",
    "OutputRejected",
    "QueryFailed",
    "Reason",
    "ResponseError",
    "ServerError",
    "StoreUnavailable",
    "StreamFailed",
    "StreamInterrupted",
    "TransportError",
    "Unauthorized",
    "Unreachable",
    "error_for_status",
    "user_message",
]


class DashboardError(Exception):
    """Base of every error the dashboard raises on purpose."""


class InvalidInput(DashboardError):
    """Input refused before any request was made."""


class ConfigError(DashboardError):
    """The configuration (keys, backends, files the app needs) is unusable; the dashboard must not start."""


Reason = Literal["not_signed_in", "expired", "forbidden", "invalid"]
REASON_TITLES: dict[Reason, str] = {
    "not_signed_in": "Not signed in",
    "expired": "Session expired",
    "forbidden": "Not allowed",
    "invalid": "Invalid token",
}


class AuthError(DashboardError):
    """A token was refused. ``reason`` picks the page shown; ``message`` is for the person."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message

    @property
    def title(self) -> str:
        return REASON_TITLES[self.reason]


class Forbidden(DashboardError):
    """The signed-in person's role does not allow this action."""


class OutputRejected(DashboardError):
    """The model answered, but the answer failed a check; the message says which, ``feedback`` what to tell the
    model on a retry (empty: retry with the same prompt)."""

    def __init__(self, message: str, feedback: str = "") -> None:
        super().__init__(message)
        self.feedback = feedback


class Cancelled(DashboardError):
    """The work was cancelled before it finished."""


class QueryFailed(DashboardError):
    """A panel's query did not produce data; the message is what the panel shows."""


class StoreUnavailable(DashboardError):
    """The job database (SQLite file or PostgreSQL) could not be used just now: it is restarting, unreachable or
    locked by another process. Work in progress keeps its result and writes it once the database is back."""


class StreamFailed(DashboardError):
    """A stream failed after some output: ``cause`` is the backend error, ``partial`` what had arrived."""

    def __init__(self, cause: BackendError, partial: Any) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.partial = partial


class BackendError(DashboardError):
    """A failure talking to a backend; ``backend_url`` says which one."""

    def __init__(self, message: str, *, backend_url: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.backend_url = backend_url


class TransportError(BackendError):
    """No usable HTTP response."""


class Unreachable(TransportError):
    """The backend could not be connected to."""


class BackendTimeout(TransportError):
    """The backend took too long: to connect, to answer, or between two stream lines."""


class StreamInterrupted(TransportError):
    """A stream ended before its ``done: true`` line; what arrived is partial, never complete."""


class ResponseError(BackendError):
    """The backend answered with an error status or an in-band error line."""

    def __init__(self, message: str, status_code: int, *, backend_url: str = "") -> None:
        super().__init__(message, backend_url=backend_url)
        self.status_code = status_code


class BadRequest(ResponseError):
    """400: the request was refused as invalid."""


class Unauthorized(ResponseError):
    """401 or 403."""


class ModelNotFound(ResponseError):
    """The model is not installed on the backend, or does not exist in the registry."""


class Busy(ResponseError):
    """429 or 503: the backend is overloaded; retry later with backoff."""


class ServerError(ResponseError):
    """Any other 5xx."""


class InBandError(ResponseError):
    """An ``{"error": ...}`` line inside a stream whose HTTP status was already 200."""


def error_for_status(status_code: int, message: str, *, backend_url: str = "") -> ResponseError:
    """Map an HTTP status and the backend's message to the matching exception.

    >>> type(error_for_status(404, "model 'x' not found")).__name__
    'ModelNotFound'
    >>> type(error_for_status(503, "server busy")).__name__
    'Busy'
    >>> type(error_for_status(500, "pull model manifest: file does not exist")).__name__
    'ModelNotFound'
    >>> type(error_for_status(404, "404 page not found")).__name__
    'ResponseError'
    """
    lowered = message.lower()
    cls: type[ResponseError]
    if status_code == 400:
        cls = BadRequest
    elif status_code in (401, 403):
        cls = Unauthorized
    elif status_code == 404 and "page not found" not in lowered:
        cls = ModelNotFound
    elif status_code in (429, 503):
        cls = Busy
    elif status_code >= 500 and "file does not exist" in lowered:
        # A failed non-streamed pull of an unknown name is a 500, not a 404.
        cls = ModelNotFound
    elif status_code >= 500:
        cls = ServerError
    else:
        cls = ResponseError
    return cls(message, status_code, backend_url=backend_url)


def user_message(exc: BaseException) -> str:
    """One clear sentence for a person, with what to do next. Never a traceback."""
    where = getattr(exc, "backend_url", "") or "the backend"
    detail = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
    if isinstance(exc, StreamFailed):
        return user_message(exc.cause)
    if isinstance(exc, InvalidInput | ConfigError | Forbidden | OutputRejected | Cancelled | QueryFailed
                  | StoreUnavailable):
        return str(exc)
    if isinstance(exc, AuthError):
        return f"{exc.title}: {exc.message}"
    if isinstance(exc, Unreachable):
        return (
            f"Ollama is not reachable at {where}. Check that it is running (`ollama serve`) and that "
            "OLLAMA_HOST or the backends file points at it."
        )
    if isinstance(exc, BackendTimeout):
        return f"{where} is not answering ({detail}). It may be loading a large model, overloaded or stuck."
    if isinstance(exc, StreamInterrupted):
        return f"The reply from {where} was cut off before it finished ({detail}). What arrived is kept."
    if isinstance(exc, ModelNotFound):
        return f"Model not found on {where}: {detail}. Pick another model or pull it on the Models page."
    if isinstance(exc, Busy):
        return f"{where} is busy ({detail}). Try again in a few seconds."
    if isinstance(exc, Unauthorized):
        return f"{where} refused the credentials ({detail}). Check the API key or gateway secret."
    if isinstance(exc, BadRequest):
        return f"{where} refused the request: {detail}"
    if isinstance(exc, InBandError):
        return f"The model failed while answering: {detail}"
    if isinstance(exc, ResponseError):
        return f"{where} answered with an error ({exc.status_code}): {detail}"
    if isinstance(exc, DashboardError):
        return detail
    return "Something unexpected went wrong; the details are in the server log."
