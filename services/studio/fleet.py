"""A batch over several backends: each backend's lane (its slots, its health, its throughput) and the plan
made before a start (which backends have the model, with which weights).

A lane's workers take rows from the job's one queue, so a fast host takes more. A lane whose backend fails
(offline, 503, cut streams) is paused with jittered exponential backoff; when the pause ends, one worker
probes while the others wait, so a dead host sees a trickle of requests, not a storm; the first success
reopens every slot. A failure counts against the row only when its backend was answering others at the time
(``Lane.fail`` says which): a host going down never burns the rows' retries, and all hosts down pauses the job.
"""

from __future__ import annotations

import contextvars
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from services.config import Backend
from services.errors import Busy, DashboardError, Unreachable, user_message
from services.ollama.client import OllamaClient
from services.studio.batch_store import LaneSpec, LaneStats

RATE_WINDOW_S = 60.0
PLAN_WORKERS = 8


class Lane:
    """One backend's part of a running job. Thread-safe; workers block in ``admit`` while it is paused."""

    def __init__(self, spec: LaneSpec, *, backoff_base_s: float, backoff_max_s: float) -> None:
        self.spec = spec
        self.name = spec.name
        self.base_s, self.max_s = backoff_base_s, backoff_max_s
        self.stop = threading.Event()  # set when the job is cancelled or this backend was removed
        self._cond = threading.Condition()
        self.state = "running"  # running | paused | probing | removed
        self.failures = 0  # consecutive
        self.paused_until = 0.0
        self.error = ""
        self._probe: int | None = None
        self.closing = False  # the process stops: send nothing new, let the requests in flight finish
        self.in_flight = 0
        self.idle = 0  # workers waiting for a row
        self.done = 0
        self.handed_back = 0
        self._finished_at: deque[float] = deque(maxlen=1000)
        self.started = time.monotonic()

    # ---- admission ------------------------------------------------------------------------------------
    def admit(self, worker: int) -> bool:
        """Wait until this worker may send a request here; False when the lane stopped (cancel or removal)."""
        with self._cond:
            while True:
                if self.stop.is_set() or self.closing or self.state == "removed":
                    return False
                if self.state == "running" or (self.state == "probing" and self._probe == worker):
                    return True
                now = time.monotonic()
                if self.state == "paused" and now >= self.paused_until:
                    self.state, self._probe = "probing", worker  # this worker probes; the others keep waiting
                    return True
                wait = self.paused_until - now if self.state == "paused" else 0.25
                self._cond.wait(min(max(wait, 0.01), 0.25))

    def succeed(self) -> None:
        with self._cond:
            self.failures, self.error = 0, ""
            if self.state in ("paused", "probing"):
                self.state, self._probe = "running", None
            self.done += 1
            self._finished_at.append(time.monotonic())
            self._cond.notify_all()

    def finished_failed_row(self) -> None:
        """A row that failed on its merits (checks, a bad request): the backend itself answered."""
        self.succeed()

    def fail(self, exc: BaseException) -> bool:
        """Pause after a backend failure; True when the failure counts against the row (the backend was
        answering until now, and the error is not one a healthy host gives to every request: 503, refused)."""
        with self._cond:
            was_healthy = self.failures == 0 and self.state == "running"
            self.failures += 1
            self.handed_back += 1
            ceiling = min(self.max_s, self.base_s * 2 ** (self.failures - 1))
            self.paused_until = max(self.paused_until, time.monotonic() + ceiling * random.uniform(0.5, 1.0))
            self.state, self._probe = "paused", None
            self.error = user_message(exc)
            self._cond.notify_all()
        return was_healthy and not isinstance(exc, Busy | Unreachable)

    def drain(self) -> None:
        with self._cond:
            self.closing = True
            self._cond.notify_all()

    def close(self) -> None:
        """The run is over: wake every waiting worker so that it ends."""
        with self._cond:
            self.stop.set()
            self._cond.notify_all()

    def remove(self, reason: str) -> None:
        with self._cond:
            self.state, self.error = "removed", reason
            self.stop.set()
            self._cond.notify_all()

    # ---- reading --------------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.state in ("running", "probing")

    def rate(self) -> float | None:
        now = time.monotonic()
        with self._cond:
            recent = sum(1 for t in self._finished_at if t >= now - RATE_WINDOW_S)
            done = self.done
        elapsed = now - self.started
        if not done or elapsed <= 0:
            return None
        return recent / RATE_WINDOW_S if elapsed > RATE_WINDOW_S else done / elapsed

    def stats(self) -> LaneStats:
        retry = max(self.paused_until - time.monotonic(), 0.0) if self.state == "paused" else None
        return LaneStats(name=self.name, state=self.state, slots=self.spec.slots, in_flight=self.in_flight,
                         done=self.done, handed_back=self.handed_back, rows_per_s=self.rate(), error=self.error,
                         retry_in_s=retry, overflow=self.spec.overflow)


def pause_reason(lanes: Sequence[Lane]) -> str:
    """Why no row can be sent right now, or "" while at least one backend takes rows."""
    if not lanes or any(lane.available for lane in lanes):
        return ""
    live = [lane for lane in lanes if lane.state != "removed"]
    if not live:
        return "every backend of this batch was removed from the configuration"
    soonest = min(max(lane.paused_until - time.monotonic(), 0.0) for lane in live)
    causes = "; ".join(f"{lane.name}: {lane.error}" for lane in live)
    return (f"paused: {'the backend is' if len(live) == 1 else f'all {len(live)} backends are'} failing "
            f"({causes}); next try in {soonest:.0f} s; no row is failed meanwhile")


# ---- the plan before a start ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanEntry:
    name: str
    kind: str
    slots: int
    overflow: bool
    has_model: bool = False
    digest: str = ""
    error: str = ""  # the backend did not answer the listing

    @property
    def short_digest(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class FleetPlan:
    """Which of the chosen backends can run ``model``, and whether they hold the same weights under that name."""

    model: str
    entries: tuple[PlanEntry, ...]
    by_digest: dict[str, list[str]] = field(default_factory=dict)

    @property
    def usable(self) -> list[PlanEntry]:
        return [e for e in self.entries if e.has_model]

    @property
    def mismatch(self) -> bool:
        return len(self.by_digest) > 1

    def mismatch_text(self) -> str:
        """What a person reads before deciding: which backends hold which weights under one model name."""
        groups = "; ".join(f"{digest.removeprefix('sha256:')[:12]} on {', '.join(names)}"
                           for digest, names in sorted(self.by_digest.items(), key=lambda kv: -len(kv[1])))
        return (f"{self.model} is not the same model everywhere: {groups}. Other weights give other answers, so "
                "one file would mix them.")

    def lanes(self, names: Sequence[str] | None = None) -> list[LaneSpec]:
        """The lanes for a start, from the usable backends (all of them, or those named)."""
        chosen = [e for e in self.usable if names is None or e.name in names]
        return [LaneSpec(e.name, e.slots, e.overflow, e.digest) for e in chosen]

    def majority(self) -> list[str]:
        """The backends holding the most common weights (the safe choice when they differ)."""
        if not self.by_digest:
            return [e.name for e in self.usable]
        return max(self.by_digest.values(), key=len)


def plan_fleet(model: str, backends: Sequence[Backend], client_for: Callable[[Backend], OllamaClient]) -> FleetPlan:
    """Ask every backend for its installed models at once (each with the client's short page timeout)."""

    def look(backend: Backend) -> PlanEntry:
        overflow = backend.kind == "ollama-cloud"
        try:
            installed = client_for(backend).tags()
        except DashboardError as exc:
            return PlanEntry(backend.name, backend.kind, backend.slots, overflow, error=user_message(exc))
        match = next((m for m in installed if m.name == model or m.name == f"{model}:latest"), None)
        return PlanEntry(backend.name, backend.kind, backend.slots, overflow, has_model=match is not None,
                         digest=match.digest if match else "")

    if not backends:
        return FleetPlan(model, ())
    # Each listing runs in a copy of the caller's context: the person acting (a gateway token) goes along.
    calls = [(contextvars.copy_context(), backend) for backend in backends]
    with ThreadPoolExecutor(min(len(backends), PLAN_WORKERS)) as pool:
        entries = tuple(pool.map(lambda call: call[0].run(look, call[1]), calls))
    by_digest: dict[str, list[str]] = {}
    for entry in entries:
        if entry.has_model and entry.digest:
            by_digest.setdefault(entry.digest, []).append(entry.name)
    return FleetPlan(model, entries, by_digest)
