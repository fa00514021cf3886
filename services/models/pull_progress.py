"""A pull's progress as Ollama streams it, kept O(1) in the number of progress lines: the latest (total,
completed) per layer digest, the current status and a short bounded history of phase lines; and the
names a pull accepts (registry allowlist, canonical form).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.config import Backend
from services.ollama.client import OllamaClient
from services.ollama.ndjson import NDJSONStream
from services.ollama.wire import validate_model_name

log = logging.getLogger(__name__)

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")
MAX_ACTIVE_JOBS = 4
MAX_LAYERS = 64
KEEP_FINISHED_IN_MEMORY = 50
STATUS_HISTORY = 12
RATE_WINDOW_S = 0.5
RATE_SMOOTHING = 0.3
PERSIST_EVERY_S = 2.0
DEFAULT_REGISTRY = "registry.ollama.ai"
ALLOWED_REGISTRIES = (DEFAULT_REGISTRY, "hf.co")  # pulling from any host is a poisoning/SSRF primitive
UI_REFRESH_S = 0.75  # how often a page re-reads a job: a fixed timer, never once per progress line


def registry_of(model: str) -> str:
    """The registry host a name pulls from (Ollama reads ``host/namespace/model``; two parts are a namespace).

    >>> registry_of("llama3.2:1b"), registry_of("team/m"), registry_of("hf.co/org/repo:Q4_K_M")
    ('registry.ollama.ai', 'registry.ollama.ai', 'hf.co')
    """
    parts = model.split("/")
    return parts[0].lower() if len(parts) >= 3 else DEFAULT_REGISTRY


def canonical_name(model: str) -> str:
    """The name Ollama stores (tag defaults to ``latest``, case-insensitive), for deduplication.

    >>> canonical_name("Llama3.2"), canonical_name("qwen2.5:0.5b")
    ('llama3.2:latest', 'qwen2.5:0.5b')
    """
    name = validate_model_name(model)
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name.lower()


@dataclass(frozen=True)
class LayerProgress:
    digest: str
    total: int
    completed: int

    @property
    def short_digest(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    @property
    def fraction(self) -> float:
        return min(self.completed / self.total, 1.0) if self.total else 0.0


class PullProgress:
    """Aggregates a pull's progress lines: latest value per digest, current status, bounded history."""

    __slots__ = ("_last_sample", "_layers", "_rate", "completed", "history", "lines", "status", "total")

    def __init__(self) -> None:
        self._layers: dict[str, list[int]] = {}
        self.total = 0
        self.completed = 0
        self.status = ""
        self.history: deque[str] = deque(maxlen=STATUS_HISTORY)
        self.lines = 0
        self._rate = 0.0
        self._last_sample: tuple[float, int] | None = None

    def update(self, line: Mapping[str, Any], now: float | None = None) -> None:
        """Fold one progress line in; constant work and memory per line."""
        self.lines += 1
        status = str(line.get("status") or "")[:200]
        digest = line.get("digest")
        if isinstance(digest, str) and digest and "total" in line:
            layer = self._layers.get(digest)
            if layer is None and len(self._layers) < MAX_LAYERS:
                layer = self._layers[digest] = [0, 0]
            if layer is not None:
                total = max(int(line.get("total") or 0), 0)
                completed = min(max(int(line.get("completed") or 0), 0), total) if total else 0
                self.total += total - layer[0]
                self.completed += completed - layer[1]
                layer[0], layer[1] = total, completed
            if not self.history or self.history[-1] != "pulling layers":
                self.history.append("pulling layers")
        elif status and (not self.history or self.history[-1] != status):
            self.history.append(status)
        if status:
            self.status = status
        self._sample(time.monotonic() if now is None else now)

    def _sample(self, now: float) -> None:
        if self._last_sample is None:
            self._last_sample = (now, self.completed)
            return
        then, done_then = self._last_sample
        elapsed = now - then
        if elapsed < RATE_WINDOW_S:
            return
        instant = max(self.completed - done_then, 0) / elapsed
        self._rate = instant if self._rate == 0 else RATE_SMOOTHING * instant + (1 - RATE_SMOOTHING) * self._rate
        self._last_sample = (now, self.completed)

    @property
    def rate(self) -> float:
        """Bytes per second, smoothed over half-second windows."""
        return self._rate

    @property
    def eta_s(self) -> float | None:
        remaining = self.total - self.completed
        if remaining <= 0:
            return 0.0 if self.total else None
        return remaining / self._rate if self._rate > 0 else None

    def layers(self) -> list[LayerProgress]:
        return [LayerProgress(d, t, c) for d, (t, c) in self._layers.items()]


@dataclass(frozen=True)
class PullSnapshot:
    """What a page shows about one job: an immutable copy, safe to hand to any session."""

    id: str
    backend: str
    model: str
    state: str
    error: str
    requested_by: str
    created_at: float
    finished_at: float | None
    total: int
    completed: int
    status: str
    rate: float = 0.0
    eta_s: float | None = None
    layers: tuple[LayerProgress, ...] = ()
    history: tuple[str, ...] = ()
    lines: int = 0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def retryable(self) -> bool:
        return self.state in ("failed", "cancelled", "interrupted")

    @property
    def fraction(self) -> float:
        return min(self.completed / self.total, 1.0) if self.total else 0.0


@dataclass
class PullJob:
    """A live job inside the manager; only the manager's threads mutate it."""

    id: str
    backend: Backend
    model: str
    key: tuple[str, str]
    requested_by: str
    created_at: float
    state: str = "queued"
    error: str = ""
    finished_at: float | None = None
    progress: PullProgress = field(default_factory=PullProgress)
    stream: NDJSONStream | None = None
    cancel_requested: bool = False
    handing_over: bool = False  # the process stops: end without a final state, another process continues
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> PullSnapshot:
        with self.lock:
            p = self.progress
            return PullSnapshot(
                id=self.id, backend=self.backend.name, model=self.model, state=self.state, error=self.error,
                requested_by=self.requested_by, created_at=self.created_at, finished_at=self.finished_at,
                total=p.total, completed=p.completed, status=p.status, rate=p.rate, eta_s=p.eta_s,
                layers=tuple(p.layers()), history=tuple(p.history), lines=p.lines,
            )


ClientFactory = Callable[[Backend], OllamaClient]


