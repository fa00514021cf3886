"""The threads of one running batch job: a feeder paging pending row numbers into a small bounded queue, and
exactly ``concurrency`` workers that each hold at most one request, acting for the job's owner.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from services.access.acting import acting_as
from services.errors import DashboardError, user_message
from services.ollama.client import OllamaClient
from services.ollama.ndjson import NDJSONStream
from services.studio.batch_store import PAGE_SIZE, JobInfo
from services.studio.engine import BackoffGate, run_task
from services.studio.taxonomy import Taxonomy


class RowStore(Protocol):
    """What a runner needs from the manager that owns the job's rows (``services.studio.batch.BatchManager``)."""

    backoff_base_s: float
    backoff_max_s: float
    max_transport_attempts: int
    client_for: Callable[[str], OllamaClient]

    def _pending_after(self, job_id: str, last: int, limit: int) -> list[int]: ...
    def _claim(self, job_id: str, idx: int) -> dict[str, Any] | None: ...
    def _release(self, job_id: str, idx: int) -> None: ...
    def _store(self, job_id: str, idx: int, status: str, output: str, error: str, attempts: int,
               duration_s: float, tokens: int | None, template_ref: str, repairs: str = "") -> None: ...
    def _log_failure(self, job_id: str, idx: int, exc: BaseException) -> None: ...
    def taxonomy_for(self, job: JobInfo) -> Taxonomy | None: ...
    def _runner_ended(self, runner: JobRunner) -> None: ...

RATE_WINDOW_S = 60.0  # the ETA follows the rate of the last minute of this run (or since it started)
LAST_ANSWER_CHARS = 240  # how much of a failed row's last answer its error keeps


def failure_text(error: str, raw: str) -> str:
    """A failed row's error, with the start of the model's last answer so a reader sees what was refused."""
    if not raw.strip():
        return error
    snippet = " ".join(raw.split())
    snippet = snippet if len(snippet) <= LAST_ANSWER_CHARS else snippet[: LAST_ANSWER_CHARS - 1] + "…"
    return f"{error} · last answer: «{snippet}»"


class JobRunner:
    """The threads of one running job."""

    def __init__(self, manager: RowStore, job: JobInfo) -> None:
        self.manager = manager
        self.job = job
        self.cancelled = threading.Event()
        self.gate = BackoffGate(base_s=manager.backoff_base_s, max_s=manager.backoff_max_s)
        self.started = time.monotonic()
        self.completed = 0
        self._finished_at: deque[float] = deque(maxlen=500)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._streams: set[NDJSONStream] = set()
        self._queue: queue.Queue[int] = queue.Queue(maxsize=max(job.concurrency * 2, 4))
        self._fed = threading.Event()
        self.threads: list[threading.Thread] = []
        self.stop_reason = ""

    def _as_owner(self, target: Callable[[], None]) -> Callable[[], None]:
        """Run ``target`` on behalf of the job's owner: gateway backends mint their tokens for that person,
        also after a restart, when no browser session exists."""

        def run() -> None:
            with acting_as(self.job.owner, "operator"):
                target()

        return run

    def start(self) -> None:
        feeder = threading.Thread(target=self._feed, name=f"batch-{self.job.id}-feed", daemon=True)
        self.threads = [feeder] + [
            threading.Thread(target=self._as_owner(self._work), name=f"batch-{self.job.id}-w{i}", daemon=True)
            for i in range(self.job.concurrency)
        ]
        for thread in self.threads:
            thread.start()
        threading.Thread(target=self._finish, name=f"batch-{self.job.id}-end", daemon=True).start()

    def rate(self) -> float | None:
        """Rows per second of this run only (a Retry failed run is measured on its own rows): over the last
        ``RATE_WINDOW_S`` seconds once the run is that old, else since it started; None before a first row."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._finished_at if t >= now - RATE_WINDOW_S]
            done = self.completed
        elapsed = now - self.started
        if not done or elapsed <= 0:
            return None
        if elapsed > RATE_WINDOW_S and recent:
            return len(recent) / RATE_WINDOW_S
        return done / elapsed

    def cancel(self) -> None:
        self.cancelled.set()
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.abort()

    def _feed(self) -> None:
        last = -1
        try:
            while not self.cancelled.is_set():
                ids = self.manager._pending_after(self.job.id, last, PAGE_SIZE)
                if not ids:
                    break
                for idx in ids:
                    while not self.cancelled.is_set():
                        try:
                            self._queue.put(idx, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    last = idx
        finally:
            self._fed.set()

    def _register(self, stream: NDJSONStream | None, holder: list[NDJSONStream | None]) -> None:
        with self._lock:
            if holder[0] is not None:
                self._streams.discard(holder[0])
            holder[0] = stream
            if stream is not None:
                self._streams.add(stream)
        if stream is not None and self.cancelled.is_set():
            stream.abort()

    def _work(self) -> None:
        try:
            client = self.manager.client_for(self.job.backend)
        except DashboardError as exc:  # e.g. the backend was removed from the configuration since
            self.stop_reason = user_message(exc)
            self.cancel()
            return
        holder: list[NDJSONStream | None] = [None]
        try:
            taxonomy = self.manager.taxonomy_for(self.job)
        except DashboardError as exc:  # e.g. the data directory's taxonomy file was removed since
            self.stop_reason = user_message(exc)
            self.cancel()
            return
        while True:
            try:
                idx = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self.cancelled.is_set() or (self._fed.is_set() and self._queue.empty()):
                    return  # cancelled, or everything handed out (no put happens after _fed) and taken
                continue
            if self.cancelled.is_set():
                continue
            data = self.manager._claim(self.job.id, idx)
            if data is None:
                continue
            inputs = {name: data.get(column, "") for name, column in self.job.mapping.items() if column}
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                result = run_task(client, self.job.template, self.job.model, inputs, self.job.params,
                                  gate=self.gate, cancelled=self.cancelled,
                                  max_transport_attempts=self.manager.max_transport_attempts,
                                  register=lambda s, h=holder: self._register(s, h), taxonomy=taxonomy)
            except Exception as exc:  # a bug must fail the row, never kill the worker silently
                self.manager._log_failure(self.job.id, idx, exc)
                self.manager._store(self.job.id, idx, "failed", "", "internal error: see the server log", 0, 0.0,
                                    None, self.job.template.ref)
                continue
            finally:
                with self._lock:
                    self.in_flight -= 1
            if result.cancelled:
                self.manager._release(self.job.id, idx)
                continue
            tokens = result.stats.get("eval_count") if result.stats else None
            error = "" if result.ok else failure_text(result.error, result.raw)
            repairs = json.dumps(result.repairs, ensure_ascii=False) if result.repairs else ""
            self.manager._store(self.job.id, idx, "done" if result.ok else "failed", result.output, error,
                                result.attempts, result.duration_s, tokens, result.template_ref, repairs)
            with self._lock:
                self.completed += 1
                self._finished_at.append(time.monotonic())

    def _finish(self) -> None:
        for thread in self.threads:
            thread.join()
        self.manager._runner_ended(self)


