"""The batch engine: one task over every row of a supplier file, as a server-side job spread over several
backends, queued fairly, held by a lease, surviving restarts and a second dashboard process.

A job and its rows live in the job store (``services.db``: the SQLite file, or PostgreSQL for several
processes): one row per product with its status (pending, running, done, failed), output, error, attempts,
the repairs applied, the backend that answered and timings; the job keeps counters that change with its rows,
so progress never scans the file. ``start`` queues a job; the scheduler (``services.studio.scheduler``) runs
at most ``max_running`` jobs at once across every process, fairly between people. A running job belongs to
one process through a lease renewed every ``tick_s``; a process that stops cleanly releases it (the next one
continues at once), one that dies is taken over once the lease expires. Rows in flight when a process went
away go back to pending: finished rows are never sent again.

Each job's runner (``services.studio.runner``) has one lane per backend with that backend's slots; a backend
that fails is paused with backoff and its rows go to the others; every backend down pauses the job, which
says why and burns no retries. ``cancel`` stops a job at once (rows back to pending; ``resume`` continues),
``retry_failed`` re-runs only the failed rows.

The same engine runs headless from ``python -m services.studio`` (``services.studio.cli``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from services.config import DEFAULT_SLOTS, Backend
from services.db import Store
from services.errors import InvalidInput, StoreUnavailable
from services.leases import Leases, new_holder
from services.ollama.client import OllamaClient
from services.ollama.wire import validate_model_name
from services.studio import batch_read
from services.studio.batch_store import (
    ADDED_COLUMNS,
    INDEXES,
    MAX_CONCURRENCY,
    SCHEMA,
    LaneSpec,
)
from services.studio.runner import JobRunner
from services.studio.scheduler import SCHEMA as SCHEDULER_SCHEMA
from services.studio.scheduler import Scheduler
from services.studio.tabular import Table, require_columns
from services.studio.tasks import BATCH_TASKS, TASK_FIELDS, TaskParams
from services.studio.taxonomy_store import TaxonomyStore
from services.studio.templates import Template

log = logging.getLogger(__name__)


class BatchManager(batch_read.BatchReader):
    """Process-wide owner of this process's batch runners; sessions and the CLI only call its methods.

    ``adopt`` False (the command line) runs only the jobs started here and never takes over others'.
    """

    def __init__(self, db: Store, client_for: Callable[[str], OllamaClient],
                 on_failure: Callable[[str, int, BaseException], None] | None = None, *,
                 backends: Sequence[Backend] = (), max_running: int = 2, lease_ttl_s: float = 30.0,
                 tick_s: float = 1.0, adopt: bool = True, backoff_base_s: float = 0.5, backoff_max_s: float = 8.0,
                 max_transport_attempts: int = 4, taxonomies: TaxonomyStore | None = None) -> None:
        self.db = db
        self.taxonomies = taxonomies or TaxonomyStore(None)  # the dashboard and the CLI pass the data directory's
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.max_transport_attempts = max_transport_attempts
        self.client_for = client_for
        self.backends = {b.name: b for b in backends}
        self.adopt = adopt
        self.tick_s = tick_s
        self._on_failure = on_failure
        self._runners: dict[str, JobRunner] = {}
        self._lock = threading.Lock()
        self.leases = Leases(db, "batch_jobs", new_holder(), lease_ttl_s)
        self.scheduler = Scheduler(db, self.leases, max_running=max_running)
        db.ensure_schema((*SCHEMA, *SCHEDULER_SCHEMA), ADDED_COLUMNS)
        db.ensure_schema(INDEXES)  # on the columns just added to an older database
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._heart: threading.Thread | None = None

    # ---- creating and controlling jobs -------------------------------------------------------------
    def lanes_for(self, names: Sequence[str], slots: int | None = None) -> list[LaneSpec]:
        """Lanes for backend names: each backend's configured slots (or ``slots`` for all); Ollama Cloud is
        overflow when it runs beside local backends."""
        if not names:
            raise InvalidInput("Choose at least one backend.")
        if len(set(names)) != len(names):
            raise InvalidInput("A backend is listed twice.")
        several = len(names) > 1
        lanes = []
        for name in names:
            backend = self.backends.get(name)
            count = slots or (backend.slots if backend else DEFAULT_SLOTS)
            lanes.append(LaneSpec(name, count, overflow=several and backend is not None
                                  and backend.kind == "ollama-cloud"))
        return lanes

    def create_job(self, table: Table, *, template: Template, model: str, params: TaskParams,
                   mapping: dict[str, str | None], owner: str, backend: str | None = None,
                   lanes: Sequence[LaneSpec] | None = None, concurrency: int | None = None) -> str:
        """Validate everything, then write the job and all its rows in one transaction (all or nothing).

        ``lanes`` are the backends with their slots; ``backend`` and ``concurrency`` are the one-backend form
        (``concurrency`` also overrides every lane's slots)."""
        if template.task not in BATCH_TASKS:
            raise InvalidInput(f"The task {template.task!r} cannot run as a batch.")
        validate_model_name(model)
        params.validate()
        if concurrency is not None and not 1 <= concurrency <= MAX_CONCURRENCY:
            raise InvalidInput(f"Concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency}.")
        if lanes is None:
            if not backend:
                raise InvalidInput("Choose a backend.")
            lanes = self.lanes_for([backend], concurrency)
        elif concurrency is not None:
            lanes = [LaneSpec(lane.name, concurrency, lane.overflow, lane.digest) for lane in lanes]
        if not lanes:
            raise InvalidInput("No backend can run this batch: none of the chosen ones has the model.")
        for lane in lanes:
            if not 1 <= lane.slots <= MAX_CONCURRENCY:
                raise InvalidInput(f"Slots must be between 1 and {MAX_CONCURRENCY}, not {lane.slots} ({lane.name}).")
        if template.task == "classification":
            self.taxonomies.info(params.taxonomy)  # refused now, not on every row, when it does not exist
        fields = TASK_FIELDS[template.task]
        require_columns(table, mapping, [f.name for f in fields if f.required], {f.name: f.label for f in fields})
        clean_mapping = {f.name: mapping[f.name] for f in fields if mapping.get(f.name)}
        for name, column in clean_mapping.items():
            if column not in table.columns:
                raise InvalidInput(f"The column {column!r} mapped to {name!r} is not in the file.")
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        columns = table.columns
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO batch_jobs (id, created_at, updated_at, owner, source_name, task, template_json, model,"
                " backend, params_json, mapping_json, columns_json, concurrency, state, total, backends_json, counted)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'created', ?, ?, 1)",
                (job_id, now, now, owner, table.source_name[:200], template.task, json.dumps(template.as_dict()),
                 model, lanes[0].name, json.dumps(params.as_dict()), json.dumps(clean_mapping), json.dumps(columns),
                 sum(lane.slots for lane in lanes), len(table), json.dumps([lane.as_dict() for lane in lanes])),
            )
            self.db.insert_many(tx, "batch_rows", ("job_id", "idx", "data_json", "status"), (
                (job_id, i, json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False), "pending")
                for i, row in enumerate(table.frame.itertuples(index=False, name=None))))
        return job_id

    def start(self, job_id: str) -> None:
        """Queue the job (it starts at once when fewer than ``max_running`` run); the command line's manager
        runs its own job at once instead."""
        job = self.job(job_id)
        with self._lock:
            runner = self._runners.get(job_id)
        if runner is not None:
            if not runner.cancelled.is_set():
                return
            self._join(runner, 10.0)  # a cancelled run still letting go of its rows
        if not self.adopt:
            if self.scheduler.start_now(job_id):
                self._launch(job_id)
            return
        if job.state == "running" and self.is_running(job_id):
            return
        now = time.time()
        self.db.execute("UPDATE batch_jobs SET state = 'queued', queued_at = ?, message = '', updated_at = ? "
                        "WHERE id = ? AND state != 'queued' AND NOT (state = 'running' AND "
                        f"{self.leases.live_sql})", (now, now, job_id))
        self.dispatch()

    def cancel(self, job_id: str) -> None:
        """Stop now, whichever process runs it (that process sees the state at its next heartbeat)."""
        self.job(job_id)
        self.db.execute("UPDATE batch_jobs SET state = 'cancelled', message = ?, updated_at = ? WHERE id = ? AND "
                        "state IN ('created', 'queued', 'running')",
                        ("Cancelled; unfinished rows stay pending (Resume continues).", time.time(), job_id))
        with self._lock:
            runner = self._runners.get(job_id)
        if runner is not None:
            runner.cancel()

    def retry_failed(self, job_id: str) -> int:
        """Put failed rows back to pending and run them; finished rows are untouched."""
        self.job(job_id)
        if self.is_active(job_id):
            raise InvalidInput("The batch is still running or queued; wait for it to finish or cancel it first.")
        # Attempts are kept: a row's count is every request ever sent for it (honest requests per row).
        with self.db.transaction() as tx:
            count = tx.execute("UPDATE batch_rows SET status = 'pending', error = '', backend = '' "
                               "WHERE job_id = ? AND status = 'failed'", (job_id,)).rowcount
            tx.execute("UPDATE batch_jobs SET failed_count = failed_count - ? WHERE id = ?", (count, job_id))
        if count or self.progress(job_id).pending:
            self.start(job_id)
        return count

    def resume(self, job_id: str) -> None:
        self.start(job_id)

    def resume_interrupted(self) -> list[str]:
        """At start-up: take over the jobs whose process went away (expired leases), start queued ones."""
        return [s.job_id for s in self.dispatch() if s.adopted]

    def wait(self, job_id: str, timeout_s: float | None = None) -> bool:
        """Block until the job is neither queued nor running (for tests and the command line)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.is_active(job_id):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def shutdown(self, timeout_s: float = 5.0, *, release: bool = True) -> None:
        """Stop every runner without changing job states and release the leases, so that the next process
        (or this one at its next start) continues at once: no new row is sent, the rows in flight get up to
        ``timeout_s`` to be written, the rest go back to pending. ``release`` False is a crash: nothing is
        waited for and the leases run out by themselves."""
        self._stopping.set()
        self._wake.set()
        if self._heart is not None:
            self._heart.join(timeout_s)
        with self._lock:
            runners = list(self._runners.values())
        if release:
            for runner in runners:
                runner.drain()
            deadline = time.monotonic() + timeout_s
            for runner in runners:
                runner.workers_done(max(deadline - time.monotonic(), 0.0))
        for runner in runners:
            runner.abandon()
        for runner in runners:
            self._join(runner, timeout_s)
        if release and runners:
            try:
                self.leases.release([r.job.id for r in runners])
            except StoreUnavailable:
                log.warning("could not release batch leases at shutdown; they expire in %.0f s", self.leases.ttl_s)

    def max_in_flight(self, job_id: str) -> int:
        with self._lock:
            runner = self._runners.get(job_id)
        return runner.max_in_flight if runner else 0

    # ---- the heartbeat: leases, the queue, backends leaving --------------------------------------------
    def dispatch(self) -> list[Any]:
        """Start what this process may start now (queued jobs, jobs left by a process that went away)."""
        if self._stopping.is_set():
            return []
        starts = self.scheduler.dispatch(adopt=self.adopt)
        for start in starts:
            if start.adopted:
                log.info("batch %s: taken over after its process stopped; continuing", start.job_id)
            self._launch(start.job_id)
        self._ensure_heart()
        return starts

    def _launch(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._runners:
                return
            runner = JobRunner(self, self.job(job_id))
            self._runners[job_id] = runner
        runner.start()
        self._ensure_heart()

    def _ensure_heart(self) -> None:
        with self._lock:
            if self._heart is None and not self._stopping.is_set():
                self._heart = threading.Thread(target=self._beat, name="batch-heartbeat", daemon=True)
                self._heart.start()

    def _beat(self) -> None:
        last_error = ""
        while not self._stopping.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.heartbeat()
            except Exception as exc:  # logged once per distinct failure: a database away for minutes is one line
                if str(exc) != last_error:
                    if isinstance(exc, StoreUnavailable):
                        log.warning("batch heartbeat: %s", exc)
                    else:
                        log.exception("batch heartbeat failed")
                last_error = str(exc)
            else:
                last_error = ""

    def heartbeat(self) -> None:
        """Renew this process's leases (with each run's live figures), stop runs cancelled elsewhere or lost
        to another process, drop backends that left the configuration, then dispatch."""
        with self._lock:
            runners = dict(self._runners)
        live = {job_id: json.dumps(self._live(runner)) for job_id, runner in runners.items()
                if not runner.cancelled.is_set()}
        held = self.leases.renew(live, ("running",), extra=live) if live else set()
        for job_id in set(live) - held:
            row = self.db.execute("SELECT state, lease_owner FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
            runner = runners[job_id]
            if row is not None and row["lease_owner"] == self.leases.holder and row["state"] == "cancelled":
                runner.cancel()  # cancelled from another process
            else:
                log.warning("batch %s: another process holds it now; this one stops its run", job_id)
                runner.abandon()
        for runner in runners.values():
            for lane in runner.lanes:
                if lane.state == "removed":
                    continue
                try:
                    self.client_for(lane.name)
                except InvalidInput as exc:
                    runner.remove_lane(lane.name, str(exc))
        self.dispatch()

    @staticmethod
    def _live(runner: JobRunner) -> dict[str, Any]:
        return {"rate": runner.rate(), "elapsed": time.monotonic() - runner.started, "paused": runner.paused(),
                "in_flight": runner.in_flight,
                "lanes": [vars(stats) for stats in runner.lane_stats()], "at": time.time()}

    def _join(self, runner: JobRunner, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._runners.get(runner.job.id) is not runner:
                    return
            time.sleep(0.02)

    # ---- internals (called by runners) ---------------------------------------------------------------
    @property
    def _fence(self) -> str:
        return "EXISTS (SELECT 1 FROM batch_jobs WHERE id = ? AND lease_owner = ?)"

    def _pending_after(self, job_id: str, last: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The next page of pending rows with their data. A row is not marked as taken: the job's lease makes
        this process its only runner and the runner's queue gives each row to one worker, so a row costs one
        write (its outcome), and a row in flight when a process dies is simply still pending."""
        rows = self.db.execute("SELECT idx, data_json FROM batch_rows WHERE job_id = ? AND status = 'pending' AND "
                               "idx > ? ORDER BY idx LIMIT ?", (job_id, last, limit)).fetchall()
        return [(r["idx"], json.loads(r["data_json"])) for r in rows]

    def _release(self, job_id: str, idx: int, attempts: int) -> None:
        """A row given back unfinished (cancelled, its backend failed): it stays pending, its requests count."""
        if not attempts:
            return
        with self.db.transaction() as tx:
            cursor = tx.execute(
                f"UPDATE batch_rows SET attempts = attempts + ? WHERE job_id = ? AND idx = ? AND status = 'pending' "
                f"AND {self._fence}", (attempts, job_id, idx, job_id, self.leases.holder))
            if cursor.rowcount:
                tx.execute("UPDATE batch_jobs SET attempts_count = attempts_count + ? WHERE id = ?", (attempts, job_id))

    def _store(self, job_id: str, idx: int, status: str, output: str, error: str, attempts: int,
               duration_s: float, tokens: int | None, template_ref: str, repairs: str = "",
               backend: str = "") -> bool:
        """Write a row's outcome and count it, once: only a row still pending, under our lease, is written."""
        with self.db.transaction() as tx:
            cursor = tx.execute(
                "UPDATE batch_rows SET status = ?, output = ?, error = ?, attempts = attempts + ?, duration_s = ?,"
                " tokens = ?, template_ref = ?, repairs = ?, backend = ?, updated_at = ? WHERE job_id = ? AND idx = ?"
                f" AND status IN ('pending', 'running') AND {self._fence}",
                (status, output, error[:1000], attempts, duration_s, tokens, template_ref, repairs[:2000], backend,
                 time.time(), job_id, idx, job_id, self.leases.holder))
            if not cursor.rowcount:
                return False
            done, failed = (1, 0) if status == "done" else (0, 1)
            tx.execute(
                "UPDATE batch_jobs SET done_count = done_count + ?, failed_count"
                " = failed_count + ?, repaired_count = repaired_count + ?, attempts_count = attempts_count + ?, "
                "done_seconds = done_seconds + ? WHERE id = ?",
                (done, failed, 1 if done and repairs else 0, attempts, duration_s if done else 0.0, job_id))
        return True

    def _log_failure(self, job_id: str, idx: int, exc: BaseException) -> None:
        if self._on_failure is not None:
            self._on_failure(job_id, idx, exc)

    def _runner_ended(self, runner: JobRunner) -> None:
        """Record how the run ended, then forget the runner (so ``wait`` returns with the state already set)."""
        job_id = runner.job.id
        try:
            if runner.lost:
                pass  # shut down (the lease is released by ``shutdown``) or taken over: nothing to write
            elif runner.stop_reason:
                self._finish_state(job_id, "cancelled", f"Stopped: {runner.stop_reason}")
            elif not runner.cancelled.is_set():
                counts = self.progress(job_id)
                message = f"{counts.done} done, {counts.failed} failed" + (
                    f", {counts.pending} not run" if counts.pending else "")
                self._finish_state(job_id, "finished", message)
            else:
                self.db.execute("UPDATE batch_jobs SET lease_until = 0, live_json = '' WHERE id = ? AND "
                                "lease_owner = ?", (job_id, self.leases.holder))
        except StoreUnavailable as exc:
            log.warning("batch %s ended while the database was away (%s); its lease will expire", job_id, exc)
        with self._lock:
            if self._runners.get(job_id) is runner:
                del self._runners[job_id]
        self._wake.set()  # a place is free: the next queued job starts now, not at the next tick

    def _finish_state(self, job_id: str, state: str, message: str) -> None:
        self.db.execute("UPDATE batch_jobs SET state = ?, message = ?, updated_at = ?, lease_until = 0, "
                        "live_json = '' WHERE id = ? AND lease_owner = ? AND state = 'running'",
                        (state, message, time.time(), job_id, self.leases.holder))
