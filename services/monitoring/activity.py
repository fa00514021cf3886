"""The fleet's recent activity as a few numbers, from the process's own ``ai_*`` metrics, without Prometheus.

The wall screen's top row shows requests per minute, the error ratio, p95 latency, median time to first
token and tokens generated per second over the last few minutes. Prometheus computes these from
scraped counters; the dashboard computes the same from its registry: ``ActivityWindow`` keeps cumulative
snapshots (a daemon thread takes one every ``sample_every_s``) and a figure is the difference between
now and the newest snapshot at least ``window_s`` old, quantiles interpolated inside histogram buckets
the way ``histogram_quantile`` does. So a refresh costs one registry read, whoever watches.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters at one instant (summed over models)."""

    at: float
    requests: float = 0.0
    errors: float = 0.0
    completion_tokens: float = 0.0
    duration_buckets: Mapping[float, float] = field(default_factory=dict)  # upper bound -> cumulative count
    ttft_buckets: Mapping[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Activity:
    """The figures over ``span_s`` (shorter than the window while the process is young)."""

    span_s: float
    requests: float
    per_minute: float
    error_ratio: float | None  # None without requests
    p95_latency_s: float | None
    median_ttft_s: float | None
    tokens_per_s: float


def read_snapshot(registry: CollectorRegistry, at: float | None = None) -> Snapshot:
    """One pass over the registry's ``ai_*`` samples."""
    requests = errors = tokens = 0.0
    duration: dict[float, float] = {}
    ttft: dict[float, float] = {}
    for metric in registry.collect():
        if not metric.name.startswith("ai_"):
            continue
        for s in metric.samples:
            if s.name == "ai_requests_total":
                requests += s.value
                if s.labels.get("status") == "error":
                    errors += s.value
            elif s.name == "ai_tokens_total" and s.labels.get("kind") == "completion":
                tokens += s.value
            elif s.name in ("ai_request_duration_seconds_bucket", "ai_time_to_first_token_seconds_bucket"):
                target = duration if s.name.startswith("ai_request") else ttft
                bound = float(s.labels["le"])
                target[bound] = target.get(bound, 0.0) + s.value
    return Snapshot(time.time() if at is None else at, requests, errors, tokens, duration, ttft)


def bucket_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """``histogram_quantile`` on cumulative bucket counts: linear inside the bucket, the highest finite
    bound when the rank falls in ``+Inf``; None without observations.

    >>> bucket_quantile(0.95, {1.0: 0, 5.0: 0, 10.0: 6, math.inf: 6})
    9.75
    >>> bucket_quantile(0.5, {0.1: 0, 0.25: 10, math.inf: 10})
    0.175
    >>> bucket_quantile(0.5, {1.0: 0, math.inf: 4})
    1.0
    >>> bucket_quantile(0.5, {1.0: 0, math.inf: 0}) is None
    True
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return None


def _delta(new: Mapping[float, float], old: Mapping[float, float]) -> dict[float, float]:
    return {bound: max(count - old.get(bound, 0.0), 0.0) for bound, count in new.items()}


def activity_between(old: Snapshot, new: Snapshot) -> Activity:
    """The figures between two snapshots (counters that went backwards count as a restart from zero)."""
    span = max(new.at - old.at, 1e-9)
    restarted = new.requests < old.requests
    base = Snapshot(old.at) if restarted else old
    requests = new.requests - base.requests
    errors = new.errors - base.errors
    return Activity(
        span_s=span, requests=requests, per_minute=requests / span * 60.0,
        error_ratio=errors / requests if requests > 0 else None,
        p95_latency_s=bucket_quantile(0.95, _delta(new.duration_buckets, base.duration_buckets)),
        median_ttft_s=bucket_quantile(0.5, _delta(new.ttft_buckets, base.ttft_buckets)),
        tokens_per_s=max(new.completion_tokens - base.completion_tokens, 0.0) / span,
    )


class ActivityWindow:
    """Snapshots of a registry over a sliding window; ``current()`` is safe from any session."""

    def __init__(self, registry: CollectorRegistry, *, window_s: float = 300.0, sample_every_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.sample_every_s = sample_every_s
        self._registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshots: deque[Snapshot] = deque(maxlen=int(window_s / sample_every_s) + 4)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sample()

    def sample(self) -> Snapshot:
        snapshot = read_snapshot(self._registry, self._clock())
        with self._lock:
            self._snapshots.append(snapshot)
        return snapshot

    def current(self) -> Activity:
        """Now against the newest snapshot at least a window old (the oldest kept, while younger)."""
        now = read_snapshot(self._registry, self._clock())
        cutoff = now.at - self.window_s
        with self._lock:
            kept = list(self._snapshots)
        older = [s for s in kept if s.at <= cutoff]
        base = older[-1] if older else kept[0]
        return activity_between(base, now)

    def start(self) -> ActivityWindow:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="activity-window", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.sample_every_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
