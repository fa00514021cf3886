"""The threads of one running batch job: a feeder paging pending row numbers into one small bounded queue, and
for each backend (``services.studio.fleet.Lane``) exactly ``slots`` workers that each hold at most one request,
acting for the job's owner.

Workers of every backend pull from the same queue, so a fast host takes more rows. A backend failure gives
the row back: it goes to the front of the queue, to be taken by another backend first, and its lane pauses.
``outstanding`` counts rows fed and not yet written, so the run ends exactly when every row is written, once.
A row costs one write, its outcome (the lease makes this process the job's only runner and the queue gives a row
to one worker). A database that stops answering (restarted under the job) holds the workers on their results
until it is back.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from services.access.acting import acting_as
from services.errors import DashboardError, StoreUnavailable, user_message
from services.ollama.client import OllamaClient
from services.ollama.ndjson import NDJSONStream
from services.studio.batch_store import PAGE_SIZE, JobInfo, LaneStats
from services.studio.engine import run_task
from services.studio.fleet import Lane, pause_reason
from services.studio.taxonomy import Taxonomy

log = logging.getLogger(__name__)
T = TypeVar("T")

RATE_WINDOW_S = 60.0  # the ETA follows the rate of the last minute of this run (or since it started)
LAST_ANSWER_CHARS = 240  # how much of a failed row's last answer its error keeps
STORE_RETRY_MAX_S = 5.0


class RowStore(Protocol):
    """What a runner needs from the manager that owns the job's rows (``services.studio.batch.BatchManager``)."""

    backoff_base_s: float
    backoff_max_s: float
    max_transport_attempts: int
    client_for: Callable[[str], OllamaClient]

    def _pending_after(self, job_id: str, last: int, limit: int) -> list[tuple[int, dict[str, Any]]]: ...
    def _release(self, job_id: str, idx: int, attempts: int) -> None: ...
    def _store(self, job_id: str, idx: int, status: str, output: str, error: str, attempts: int,
               duration_s: float, tokens: int | None, template_ref: str, repairs: str = "",
               backend: str = "") -> bool: ...
    def _log_failure(self, job_id: str, idx: int, exc: BaseException) -> None: ...
    def taxonomy_for(self, job: JobInfo) -> Taxonomy | None: ...
    def _runner_ended(self, runner: JobRunner) -> None: ...


def failure_text(error: str, raw: str) -> str:
    """A failed row's error, with the start of the model's last answer so a reader sees what was refused."""
    if not raw.strip():
        return error
    snippet = " ".join(raw.split())
    snippet = snippet if len(snippet) <= LAST_ANSWER_CHARS else snippet[: LAST_ANSWER_CHARS - 1] + "…"
    return f"{error} · last answer: «{snippet}»"


class JobRunner:
    """The threads of one running job, over its lanes."""

    def __init__(self, manager: RowStore, job: JobInfo) -> None:
        self.manager = manager
        self.job = job
        self.lanes = [Lane(spec, backoff_base_s=manager.backoff_base_s, backoff_max_s=manager.backoff_max_s)
                      for spec in job.lanes]
        self.cancelled = threading.Event()
        self.lost = False  # another process holds the job now: end without writing its state
        self.draining = False
        self.started = time.monotonic()
        self.completed = 0
        self._finished_at: deque[float] = deque(maxlen=2000)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._streams: dict[str, set[NDJSONStream]] = {lane.name: set() for lane in self.lanes}
        self._queue: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue(
            maxsize=max(sum(s.slots for s in job.lanes) * 2, 4))
        self._handback: deque[tuple[int, dict[str, Any], set[str]]] = deque()
        self._strikes: dict[int, int] = {}
        self._outstanding = 0
        self._fed = threading.Event()
        self.store_problem = ""
        self.threads: list[threading.Thread] = []
        self.stop_reason = ""

    # ---- life cycle -----------------------------------------------------------------------------------
    def _as_owner(self, target: Callable[..., None], *args: Any) -> Callable[[], None]:
        """Run ``target`` on behalf of the job's owner: gateway backends mint their tokens for that person,
        also after a restart, when no browser session exists."""

        def run() -> None:
            with acting_as(self.job.owner, "operator"):
                target(*args)

        return run

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._feed, name=f"batch-{self.job.id}-feed", daemon=True)]
        for lane in self.lanes:
            self.threads += [threading.Thread(target=self._as_owner(self._work, lane, i), daemon=True,
                                              name=f"batch-{self.job.id}-{lane.name}-{i}")
                             for i in range(lane.spec.slots)]
        for thread in self.threads:
            thread.start()
        threading.Thread(target=self._finish, name=f"batch-{self.job.id}-end", daemon=True).start()

    def cancel(self) -> None:
        self.cancelled.set()
        for lane in self.lanes:
            lane.stop.set()
        with self._lock:
            streams = [s for group in self._streams.values() for s in group]
        for stream in streams:
            stream.abort()

    def drain(self) -> None:
        """A clean stop: take no new row, let the rows in flight be written (``abandon`` then stops the rest)."""
        self.draining = True
        for lane in self.lanes:
            lane.drain()

    def abandon(self) -> None:
        """Another process took the job over (our lease expired): stop without writing anything more."""
        self.lost = True
        self.cancel()

    def remove_lane(self, name: str, reason: str) -> None:
        """The backend left the configuration: its rows in flight go back to the queue for the others."""
        lane = next((lane for lane in self.lanes if lane.name == name), None)
        if lane is None or lane.state == "removed":
            return
        lane.remove(reason)
        with self._lock:
            streams = list(self._streams[name])
        for stream in streams:
            stream.abort()
        if all(lane.state == "removed" for lane in self.lanes):
            causes = "; ".join(f"{lane.name}: {lane.error}" for lane in self.lanes)
            self.stop_reason = f"no backend of this batch is configured any more ({causes})"
            self.cancel()

    # ---- reading --------------------------------------------------------------------------------------
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

    def paused(self) -> str:
        if self.store_problem:
            return f"waiting for the database: {self.store_problem}"
        return pause_reason(self.lanes)

    def lane_stats(self) -> list[LaneStats]:
        return [lane.stats() for lane in self.lanes]

    # ---- the database, through passing outages -------------------------------------------------------
    def _persist(self, action: Callable[[], T]) -> T | None:
        """Run a store call, waiting out a database that is away (None when the job was stopped meanwhile)."""
        delay = 0.1
        while True:
            try:
                value = action()
            except StoreUnavailable as exc:
                self.store_problem = str(exc)
                if self.cancelled.wait(delay):
                    return None
                delay = min(delay * 2, STORE_RETRY_MAX_S)
                continue
            self.store_problem = ""
            return value

    # ---- threads ---------------------------------------------------------------------------------------
    def _feed(self) -> None:
        last = -1
        try:
            while not self.cancelled.is_set():
                page = self._persist(lambda after=last: self.manager._pending_after(self.job.id, after, PAGE_SIZE))
                if not page:
                    break
                for item in page:
                    with self._lock:
                        self._outstanding += 1
                    while True:
                        if self.cancelled.is_set():
                            return
                        try:
                            self._queue.put(item, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    last = item[0]
        finally:
            self._fed.set()
            self._check_finished()

    def _done_with(self, idx: int) -> None:
        with self._lock:
            self._outstanding -= 1
            self._strikes.pop(idx, None)
        self._check_finished()

    def _check_finished(self) -> None:
        """Every row written: release the workers still waiting on a paused backend."""
        if self._finished():
            for lane in self.lanes:
                lane.close()

    def _finished(self) -> bool:
        with self._lock:
            return self._fed.is_set() and self._outstanding <= 0

    def _take(self, lane: Lane) -> tuple[int, dict[str, Any]] | None:
        """A row given back by another backend first, then the queue; None when there is none right now."""
        with self._lock:
            live = {other.name for other in self.lanes if other.state != "removed"}
            for position, (idx, data, avoid) in enumerate(self._handback):
                if lane.name not in avoid or live <= avoid:
                    del self._handback[position]
                    return idx, data
        if lane.spec.overflow and any(other.available and other.in_flight < other.spec.slots
                                      for other in self.lanes if not other.spec.overflow):
            time.sleep(0.05)  # an overflow backend waits while another backend has a free slot
            return None
        lane.idle += 1
        try:
            return self._queue.get(timeout=0.1)
        except queue.Empty:
            return None
        finally:
            lane.idle -= 1

    def _register(self, lane: Lane, stream: NDJSONStream | None, holder: list[NDJSONStream | None]) -> None:
        with self._lock:
            if holder[0] is not None:
                self._streams[lane.name].discard(holder[0])
            holder[0] = stream
            if stream is not None:
                self._streams[lane.name].add(stream)
        if stream is not None and lane.stop.is_set():
            stream.abort()

    def _give_back(self, idx: int, data: dict[str, Any], lane: Lane) -> None:
        with self._lock:
            self._handback.appendleft((idx, data, {lane.name}))

    def _work(self, lane: Lane, worker: int) -> None:
        holder: list[NDJSONStream | None] = [None]
        try:
            taxonomy = self.manager.taxonomy_for(self.job)
        except DashboardError as exc:  # e.g. the data directory's taxonomy file was removed since
            self.stop_reason = user_message(exc)
            self.cancel()
            return
        while not self.cancelled.is_set() and not self._finished():
            if not lane.admit(worker):
                return
            taken = self._take(lane)
            if taken is None:
                continue
            idx, data = taken
            if self.draining:  # taken just as the process stops: it stays pending for the next one
                self._done_with(idx)
                return
            try:
                client = self.manager.client_for(lane.name)
            except DashboardError as exc:  # the backend was removed from the configuration
                self._give_back(idx, data, lane)
                self.remove_lane(lane.name, user_message(exc))
                return
            self._run_row(lane, client, idx, data, holder, taxonomy)

    def _run_row(self, lane: Lane, client: OllamaClient, idx: int, data: dict[str, Any],
                 holder: list[NDJSONStream | None], taxonomy: Taxonomy | None) -> None:
        inputs = {name: data.get(column, "") for name, column in self.job.mapping.items() if column}
        with self._lock:
            self.in_flight += 1
            lane.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            result = run_task(client, self.job.template, self.job.model, inputs, self.job.params,
                              cancelled=lane.stop, hand_back=True, taxonomy=taxonomy,
                              register=lambda s, h=holder: self._register(lane, s, h))
        except Exception as exc:  # a bug must fail the row, never kill the worker silently
            self.manager._log_failure(self.job.id, idx, exc)
            self._persist(lambda: self.manager._store(self.job.id, idx, "failed", "", "internal error: see the "
                                                      "server log", 0, 0.0, None, self.job.template.ref))
            self._done_with(idx)
            return
        finally:
            with self._lock:
                self.in_flight -= 1
                lane.in_flight -= 1
        if result.cancelled:
            self._persist(lambda: self.manager._release(self.job.id, idx, result.attempts))
            if self.cancelled.is_set():
                self._done_with(idx)
            else:  # only this backend stopped (removed): another one takes the row
                self._give_back(idx, data, lane)
            return
        if result.handed_back is not None:
            counts = lane.fail(result.handed_back)
            with self._lock:
                strikes = self._strikes[idx] = self._strikes.get(idx, 0) + (1 if counts else 0)
            if strikes < self.manager.max_transport_attempts:
                self._persist(lambda: self.manager._release(self.job.id, idx, result.attempts))
                self._give_back(idx, data, lane)
                return
            result.error = f"gave up after {strikes} failed attempts on working backends: {result.error}"
        else:
            lane.succeed()
        tokens = result.stats.get("eval_count") if result.stats else None
        error = "" if result.ok else failure_text(result.error, result.raw)
        repairs = json.dumps(result.repairs, ensure_ascii=False) if result.repairs else ""
        self._persist(lambda: self.manager._store(
            self.job.id, idx, "done" if result.ok else "failed", result.output, error, result.attempts,
            result.duration_s, tokens, result.template_ref, repairs, lane.name))
        self._done_with(idx)
        with self._lock:
            self.completed += 1
            self._finished_at.append(time.monotonic())

    def workers_done(self, timeout_s: float) -> bool:
        """Wait for the worker threads (not the feeder) to end; False on timeout."""
        deadline = time.monotonic() + timeout_s
        for thread in self.threads[1:]:
            thread.join(max(deadline - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in self.threads[1:])

    def _finish(self) -> None:
        for thread in self.threads:
            thread.join()
        self.manager._runner_ended(self)
