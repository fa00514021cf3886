"""Health probing of every configured backend, owned by the dashboard process (one prober, all sessions).

Each round probes all backends at once (a small thread pool), each against its own deadline
(``Settings.probe_timeout_s``), so a dead or slow host never delays the others: a round takes about one
timeout, not one per backend. A probe measures ``/api/version``, ``/api/tags`` and ``/api/ps`` latency,
reads the loaded models and their VRAM, and (every ``canary_interval_s``, when ``canary_model`` is set)
runs a tiny generation for time to first token and tokens/s. It classifies the backend:

    offline   the liveness call failed (refused, timed out, error status)
    degraded  it answers, but a call failed, was slower than ``slow_response_ms`` or the canary failed
    online    everything answered in time

Results go to the process's Prometheus registry (``ollama_up`` and friends, served by the exporter),
to the SQLite history (``services.monitoring.history``) and to an in-memory snapshot the wall screen reads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ALL_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

import httpx
from prometheus_client import Enum, Gauge

from services.access.gateway import gateway_auth_headers
from services.config import Backend, Settings
from services.errors import DashboardError, ResponseError, user_message
from services.metrics import REGISTRY
from services.ollama.client import OllamaClient
from services.ollama.wire import GenerationStats, LoadedModel

logger = logging.getLogger(__name__)

Status = Literal["online", "degraded", "offline"]
STATUSES: tuple[Status, ...] = ("online", "degraded", "offline")
PROBE_HEADER = "X-Dashboard-Probe"
CANARY_PROMPT = "Reply with the single word OK."

# Defined once at import (one module object per process), so Streamlit reruns never register twice.
OLLAMA_UP = Gauge("ollama_up", "1 when the backend answered its liveness probe, else 0.", ["backend"],
                  registry=REGISTRY)
OLLAMA_STATE = Enum("ollama_backend_state", "Classification of the last probe.", ["backend"],
                    states=list(STATUSES), registry=REGISTRY)
PROBE_LATENCY = Gauge("ollama_probe_latency_seconds", "Latency of the last probe call, by endpoint.",
                      ["backend", "endpoint"], registry=REGISTRY)
LOADED_MODELS = Gauge("ollama_loaded_models", "Models resident in memory (/api/ps).", ["backend"],
                      registry=REGISTRY)
INSTALLED_MODELS = Gauge("ollama_installed_models", "Models installed (/api/tags).", ["backend"],
                         registry=REGISTRY)
MODEL_VRAM = Gauge("ollama_model_vram_bytes", "VRAM used by one loaded model (size_vram).", ["backend", "model"],
                   registry=REGISTRY)
MODEL_SIZE = Gauge("ollama_model_memory_bytes", "Total memory used by one loaded model (size).",
                   ["backend", "model"], registry=REGISTRY)
VERSION_INFO = Gauge("ollama_version_info", "Always 1; the version label is what Ollama reported.",
                     ["backend", "version"], registry=REGISTRY)
LAST_SUCCESS = Gauge("ollama_probe_last_success_timestamp_seconds", "When the backend last answered.",
                     ["backend"], registry=REGISTRY)
CANARY_TTFT = Gauge("ollama_canary_time_to_first_token_seconds", "Time to first token of the last canary.",
                    ["backend", "model"], registry=REGISTRY)
CANARY_TPS = Gauge("ollama_canary_tokens_per_second", "Generation speed of the last canary.",
                   ["backend", "model"], registry=REGISTRY)
CANARY_UP = Gauge("ollama_canary_up", "1 when the last canary generation streamed a first token, 0 when it failed.",
                  ["backend", "model"], registry=REGISTRY)


@dataclass(frozen=True)
class LoadedModelInfo:
    """What the tiles show of one resident model."""

    name: str
    size: int
    size_vram: int
    processor: str
    unload_in_s: float | None  # math.inf for keep-alive forever; None if unknown

    @classmethod
    def from_loaded(cls, model: LoadedModel, now: datetime) -> LoadedModelInfo:
        return cls(model.name, model.size, model.size_vram, model.processor, model.seconds_until_unload(now))


@dataclass(frozen=True)
class ProbeResult:
    """One probe of one backend."""

    backend: str
    url: str
    at: float
    status: Status
    up: bool
    latency_ms: float | None = None  # the slowest call of the probe
    version: str = ""
    version_ms: float | None = None
    tags_ms: float | None = None
    ps_ms: float | None = None
    installed_models: int | None = None
    loaded: tuple[LoadedModelInfo, ...] = ()
    error: str = ""
    reasons: tuple[str, ...] = ()
    canary_model: str = ""
    canary_ttft_ms: float | None = None
    canary_tps: float | None = None

    @property
    def vram_bytes(self) -> int:
        return sum(m.size_vram for m in self.loaded)


@dataclass(frozen=True)
class Thresholds:
    slow_ms: float = 5000.0
    timeout_s: float = 10.0


class _ProbeClient(OllamaClient):
    """The shared client with one twist: each call's timeout is what is left of the probe's deadline."""

    def __init__(self, backend: Backend, timeout_s: float, *, load_timeout_s: float | None = None) -> None:
        load = load_timeout_s or timeout_s
        super().__init__(backend, connect_timeout_s=timeout_s, load_timeout_s=load, stall_timeout_s=load,
                         auth_headers=self._probe_headers)

    def _probe_headers(self) -> Mapping[str, str]:
        if self.backend.kind == "gateway":
            # The prober acts for nobody: a service subject, a fresh short-lived token per request.
            return {**gateway_auth_headers(self.backend, service="dashboard-prober")(), PROBE_HEADER: "1"}
        return {**self._default_auth(), PROBE_HEADER: "1"}

    def budget(self, seconds: float) -> None:
        self.page_timeout_s = max(seconds, 0.05)
        self._page_timeout = httpx.Timeout(self.page_timeout_s)


def _timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    value = call()
    return value, (time.perf_counter() - started) * 1000.0


def probe_backend(backend: Backend, client: _ProbeClient, thresholds: Thresholds,
                  canary_model: str = "", canary_client: OllamaClient | None = None) -> ProbeResult:
    """Probe one backend within ``thresholds.timeout_s``; never raises for a backend's fault."""
    started = time.perf_counter()
    deadline = started + thresholds.timeout_s
    at = time.time()
    reasons: list[str] = []

    def remaining() -> float:
        return deadline - time.perf_counter()

    version, version_ms = "", None
    # A gateway proxies only /ai/*: its liveness call is the model list.
    try:
        if backend.kind != "gateway":
            client.budget(remaining())
            value, version_ms = _timed(client.version)
            version = str(value)
        client.budget(remaining())
        tags, tags_ms = _timed(client.tags)
    except DashboardError as exc:
        return ProbeResult(backend.name, backend.url, at, "offline", False, version=version, version_ms=version_ms,
                           error=_short(exc), reasons=(_short(exc),))
    installed = len(tags)  # type: ignore[arg-type]
    ps_ms: float | None = None
    loaded: tuple[LoadedModelInfo, ...] = ()
    if backend.kind != "gateway":
        try:
            client.budget(remaining())
            models, ps_ms = _timed(client.ps)
            now = datetime.now(UTC)
            loaded = tuple(LoadedModelInfo.from_loaded(m, now) for m in models)  # type: ignore[attr-defined]
        except DashboardError as exc:
            reasons.append(f"/api/ps failed: {_short(exc)}")
    timings = [t for t in (version_ms, tags_ms, ps_ms) if t is not None]
    latency = max(timings) if timings else None
    if latency is not None and latency > thresholds.slow_ms:
        reasons.append(f"slow: {latency:,.0f} ms (threshold {thresholds.slow_ms:,.0f} ms)")
    result = ProbeResult(backend.name, backend.url, at, "degraded" if reasons else "online", True,
                         latency_ms=latency, version=version, version_ms=version_ms, tags_ms=tags_ms, ps_ms=ps_ms,
                         installed_models=installed, loaded=loaded, reasons=tuple(reasons))
    if canary_model and canary_client is not None:
        result = _with_canary(result, canary_client, canary_model, thresholds)
    return result


def _with_canary(result: ProbeResult, client: OllamaClient, model: str, thresholds: Thresholds) -> ProbeResult:
    """A tiny generation: time to first token and tokens/s, the figures users feel."""
    started = time.perf_counter()
    first: float | None = None
    final: dict | None = None
    try:
        stream = client.generate(model, CANARY_PROMPT, options={"num_predict": 8, "temperature": 0})
        for line in stream:
            if first is None and (line.get("response") or line.get("thinking") or line.get("done")):
                first = time.perf_counter() - started
            if line.get("done"):
                final = line
    except DashboardError as exc:
        reasons = (*result.reasons, f"canary on {model} failed: {_short(exc)}")
        return replace(result, status="degraded", reasons=reasons, canary_model=model)
    ttft_ms = first * 1000.0 if first is not None else None
    tps = GenerationStats.from_final(final or {}).tokens_per_second
    reasons = result.reasons
    if ttft_ms is not None and ttft_ms > thresholds.slow_ms:
        reasons = (*reasons, f"canary first token after {ttft_ms:,.0f} ms")
    return replace(result, canary_model=model, canary_ttft_ms=ttft_ms, canary_tps=tps, reasons=reasons,
                   status="degraded" if reasons else result.status)


def _short(exc: BaseException) -> str:
    if isinstance(exc, ResponseError):
        return f"HTTP {exc.status_code}: {exc.message}"[:300] if exc.status_code > 0 else exc.message[:300]
    message = getattr(exc, "message", "") or user_message(exc)
    return f"{type(exc).__name__}: {message}"[:300]


def publish(result: ProbeResult, previous: ProbeResult | None) -> None:
    """Mirror one result into the Prometheus registry, removing label sets that no longer exist."""
    name = result.backend
    OLLAMA_UP.labels(backend=name).set(1 if result.up else 0)
    OLLAMA_STATE.labels(backend=name).state(result.status)
    for endpoint, value in (("version", result.version_ms), ("tags", result.tags_ms), ("ps", result.ps_ms)):
        if value is not None:
            PROBE_LATENCY.labels(backend=name, endpoint=endpoint).set(value / 1000.0)
    if result.up:
        LAST_SUCCESS.labels(backend=name).set(result.at)
        LOADED_MODELS.labels(backend=name).set(len(result.loaded))
        if result.installed_models is not None:
            INSTALLED_MODELS.labels(backend=name).set(result.installed_models)
    current = {m.name for m in result.loaded} if result.up else set()
    old = {m.name for m in previous.loaded} if previous is not None else set()
    for model in old - current:
        for gauge in (MODEL_VRAM, MODEL_SIZE):
            _remove(gauge, name, model)
    if not result.up:
        LOADED_MODELS.labels(backend=name).set(0)
    for model in result.loaded if result.up else ():
        MODEL_VRAM.labels(backend=name, model=model.name).set(model.size_vram)
        MODEL_SIZE.labels(backend=name, model=model.name).set(model.size)
    if result.version and (previous is None or previous.version != result.version):
        if previous is not None and previous.version:
            _remove(VERSION_INFO, name, previous.version)
        VERSION_INFO.labels(backend=name, version=result.version).set(1)
    if result.canary_model and result.canary_ttft_ms is not None:
        CANARY_TTFT.labels(backend=name, model=result.canary_model).set(result.canary_ttft_ms / 1000.0)
    if result.canary_model and result.canary_tps is not None:
        CANARY_TPS.labels(backend=name, model=result.canary_model).set(result.canary_tps)
    if result.canary_model:  # only rounds that ran a canary: between canaries the last verdict stands
        CANARY_UP.labels(backend=name, model=result.canary_model).set(1 if result.canary_ttft_ms is not None else 0)


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)


@dataclass
class RoundReport:
    """How one round went: for the page's freshness clock and the fleet benchmark."""

    started: float
    duration_s: float
    results: dict[str, ProbeResult] = field(default_factory=dict)


class Prober:
    """Probes every backend every ``interval_s`` on a daemon thread; ``latest()`` is what sessions read."""

    def __init__(self, settings: Settings, *, on_round: Callable[[RoundReport], None] | None = None,
                 max_workers: int = 16) -> None:
        self.settings = settings
        self.backends = settings.backends
        self.interval_s = settings.probe_interval_s
        self.thresholds = Thresholds(slow_ms=settings.slow_response_ms, timeout_s=settings.probe_timeout_s)
        self._on_round = on_round
        self._clients = {b.name: _ProbeClient(b, settings.probe_timeout_s) for b in self.backends}
        self._canary_clients: dict[str, OllamaClient] = {}
        if settings.canary_model:
            timeout = settings.canary_timeout_s
            self._canary_clients = {
                b.name: _ProbeClient(b, min(timeout, settings.probe_timeout_s), load_timeout_s=timeout)
                for b in self.backends}
        self._next_canary = 0.0
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(self.backends))),
                                        thread_name_prefix="probe")
        self._lock = threading.Lock()
        self._round_done = threading.Condition(self._lock)
        self.rounds = 0
        self._latest: dict[str, ProbeResult] = {}
        self._last_round: RoundReport | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- reading (any session) ---------------------------------------------------------------------
    def latest(self) -> dict[str, ProbeResult]:
        with self._lock:
            return dict(self._latest)

    def last_round(self) -> RoundReport | None:
        with self._lock:
            return self._last_round

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_for_round(self, backends: int = 1, *, after: int = 0, timeout_s: float = 10.0) -> bool:
        """Block until a round later than round number ``after`` has results for ``backends`` backends."""
        with self._round_done:
            return self._round_done.wait_for(
                lambda: self.rounds > after and len(self._latest) >= backends, timeout=timeout_s)

    # ---- probing -------------------------------------------------------------------------------
    def run_round(self) -> RoundReport:
        """Probe every backend concurrently; returns when all answered or the deadline passed."""
        started = time.perf_counter()
        wall = time.time()
        canary = bool(self.settings.canary_model) and wall >= self._next_canary
        if canary:
            self._next_canary = wall + self.settings.canary_interval_s
        budget = self.thresholds.timeout_s + (self.settings.canary_timeout_s if canary else 0.0)
        futures: dict[Future[ProbeResult], Backend] = {}
        for backend in self.backends:
            futures[self._pool.submit(
                probe_backend, backend, self._clients[backend.name], self.thresholds,
                self.settings.canary_model if canary else "", self._canary_clients.get(backend.name),
            )] = backend
        # The margin covers scheduling; each call already stops at its own deadline.
        done, _ = wait(futures, timeout=budget + 1.0, return_when=ALL_COMPLETED)
        results: dict[str, ProbeResult] = {}
        for future, backend in futures.items():
            if future in done and future.exception() is None:
                results[backend.name] = future.result()
            else:
                reason = (f"no answer within {budget:.0f} s" if future not in done
                          else f"probe failed: {future.exception()!r}")
                results[backend.name] = ProbeResult(backend.name, backend.url, wall, "offline", False,
                                                    error=reason, reasons=(reason,))
        report = RoundReport(started=wall, duration_s=time.perf_counter() - started, results=results)
        with self._round_done:
            previous = self._latest
            self._latest = results
            self._last_round = report
            self.rounds += 1
            self._round_done.notify_all()
        for name, result in results.items():
            publish(result, previous.get(name))
        if self._on_round is not None:
            try:
                self._on_round(report)
            except Exception:
                logger.exception("Storing a probe round failed; the next round retries.")
        return report

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.run_round()
            except RuntimeError as exc:
                if "shutdown" in str(exc):  # the interpreter is exiting and closed the thread pools
                    return
                logger.exception("A probe round failed; the prober carries on.")
            except Exception:
                logger.exception("A probe round failed; the prober carries on.")
            self._wake.wait(max(0.0, self.interval_s - (time.monotonic() - began)))
            self._wake.clear()

    def start(self) -> Prober:
        if not self.running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="prober", daemon=True)
            self._thread.start()
        return self

    def probe_now(self) -> None:
        """Ask the loop for a round at once (after a change the operator wants to see)."""
        self._wake.set()

    def stop(self, timeout: float = 0.0) -> None:
        """Stop the loop; by default without waiting (a round in flight ends on its own deadline)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and timeout > 0:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in (*self._clients.values(), *self._canary_clients.values()):
            client.close()
