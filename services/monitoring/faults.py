"""Human words for a backend's fault, for the wall screen: "connection refused", not "[Errno 111] ...".

The prober keeps the raw cause (``ProbeResult.error`` and ``reasons``, shown on the operator page and
stored in the history); the wall is read from across a room by people who will not debug it, so it gets
a few words that say what kind of trouble it is. Unknown causes fall back to a neutral phrase, never to
the raw text.
"""

from __future__ import annotations

import re

# (pattern in the raw cause, words, the same in a word or two for the smallest wall tiles);
# the first match wins, so the specific ones come first.
_TRANSPORT: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), words, short) for p, words, short in (
        (r"certificate|CERTIFICATE_VERIFY_FAILED|\bSSL\b|\bTLS\b|handshake", "certificate error", "certificate"),
        (r"Errno 111|connection refused|ECONNREFUSED", "connection refused", "refused"),
        (r"Name or service not known|nodename nor servname|name resolution|getaddrinfo|Errno -[235]\b|"
         r"No address associated", "host name not found", "name unknown"),
        (r"No route to host|Network is unreachable|Errno 11[03]\b|Errno 101\b", "network unreachable",
         "no route"),
        (r"Connection reset|connection dropped|Errno 104|Server disconnected|RemoteProtocolError",
         "connection dropped", "dropped"),
        (r"timed out|timeout|BackendTimeout|no answer within|not answering", "timed out", "timed out"),
    ))
_STATUS = re.compile(r"HTTP (\d{3})")
_SLOW = re.compile(r"slow: ([\d,.]+) ms")
_CANARY_SLOW = re.compile(r"canary first token after ([\d,.]+) ms")


def _seconds(ms_text: str) -> str:
    seconds = float(ms_text.replace(",", "")) / 1000.0
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def _status_words(code: int) -> str:
    if code in (401, 403):
        return f"credentials refused (HTTP {code})"
    if code == 404:
        return "not an Ollama API (HTTP 404)"
    if code in (429, 503):
        return f"overloaded (HTTP {code})"
    if code >= 500:
        return f"server error (HTTP {code})"
    return f"refused (HTTP {code})"


def fault_words(cause: str, timeout_s: float, *, short: bool = False) -> str:
    """A transport or status failure in a few words (``short``: one or two, for the smallest tiles).

    >>> fault_words("Unreachable: cannot connect: [Errno 111] Connection refused", 10)
    'connection refused'
    >>> fault_words("BackendTimeout: read timed out", 10)
    'timed out after 10 s'
    >>> fault_words("Unreachable: cannot connect: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", 10)
    'certificate error'
    >>> fault_words("HTTP 503: server busy", 10)
    'overloaded (HTTP 503)'
    >>> fault_words("Unreachable: cannot connect: [Errno -2] Name or service not known", 10)
    'host name not found'
    >>> fault_words("something nobody expected", 10)
    'not answering'
    >>> fault_words("Unreachable: cannot connect: [Errno 111] Connection refused", 10, short=True)
    'refused'
    """
    status = _STATUS.search(cause)
    if status:
        return f"HTTP {status.group(1)}" if short else _status_words(int(status.group(1)))
    for pattern, words, brief in _TRANSPORT:
        if pattern.search(cause):
            if short:
                return brief
            return f"timed out after {timeout_s:g} s" if words == "timed out" else words
    return "no answer" if short else "not answering"


def reason_words(reason: str, timeout_s: float, *, short: bool = False) -> str:
    """Why a backend is degraded (or offline), in a few words (``short``: one or two).

    >>> reason_words("slow: 6,240 ms (threshold 5,000 ms)", 10)
    'slow: 6.2 s'
    >>> reason_words("canary on llama3.2:1b failed: HTTP 404: model 'llama3.2:1b' not found", 10)
    'canary failed: model not installed'
    >>> reason_words("canary first token after 7,900 ms", 10)
    'canary slow: 7.9 s'
    >>> reason_words("/api/ps failed: BackendTimeout: read timed out", 10)
    'loaded-model list failed: timed out after 10 s'
    >>> reason_words("slow: 6,240 ms (threshold 5,000 ms)", 10, short=True)
    'slow 6.2 s'
    >>> reason_words("canary on m:1b failed: HTTP 500: boom", 10, short=True)
    'canary failed'
    """
    slow = _SLOW.search(reason)
    if slow:
        return f"slow{'' if short else ':'} {_seconds(slow.group(1))}"
    canary_slow = _CANARY_SLOW.search(reason)
    if canary_slow:
        return "canary slow" if short else f"canary slow: {_seconds(canary_slow.group(1))}"
    if short:
        return "canary failed" if reason.startswith("canary on ") else (
            "ps failed" if reason.startswith("/api/ps failed") else fault_words(reason, timeout_s, short=True))
    if reason.startswith("canary on "):
        cause = reason.partition(" failed: ")[2]
        if "HTTP 404" in cause:  # the version and model list answered: it is the canary's model that is missing
            return "canary failed: model not installed"
        return f"canary failed: {fault_words(cause, timeout_s)}"
    if reason.startswith("/api/ps failed: "):
        return f"loaded-model list failed: {fault_words(reason.removeprefix('/api/ps failed: '), timeout_s)}"
    return fault_words(reason, timeout_s)
