"""What Ollama sends and accepts, typed: model names, keep-alive values, ``/api/tags`` and ``/api/ps`` entries,
a stream line, and the final line's counters (nanoseconds, zero counters omitted by Ollama)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.errors import (
    InvalidInput,
)

NS_PER_S = 1_000_000_000
MAX_MODEL_NAME = 256
_NAME_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
MODEL_NAME_RE = re.compile(
    rf"^(?:[A-Za-z0-9.-]+(?::\d{{1,5}})?/)?(?:{_NAME_PART}/)*{_NAME_PART}(?::[A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})?$"
)
GO_DURATION_RE = re.compile(r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


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


