"""Server-side pull jobs: owned by a dashboard process, shared by every browser session and every process.

A pull of a 40 GB model outlives any page view, so it runs on a daemon thread of a process-wide
``PullManager`` (built once by the composition root, ``components.runtime``). Sessions only read snapshots. Each
job's record lives in the job store (the SQLite file, or PostgreSQL for several processes), so a refresh, a second
browser, another dashboard process or the wall screen sees the same job.

A running pull is held by a lease (``services.leases``) that a heartbeat renews. A process that stops cleanly
hands its pulls over (lease released, state kept): the next process, or this one at its next start, continues
them at once, and Ollama resumes from the layers it already has. A process that dies is taken over once its lease
expires. Nothing is marked *interrupted* unless it truly cannot go on (its backend left the configuration).

Progress is O(1) in the number of progress lines (``services.models.pull_progress``): nothing grows
with the line count.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from services.access.audit import AuditLog
from services.config import Backend
from services.db import Store
from services.errors import (
    DashboardError,
    InvalidInput,
    ModelNotFound,
    StoreUnavailable,
    StreamInterrupted,
    user_message,
)
from services.leases import Leases, new_holder
from services.models.pull_progress import (
    ACTIVE_STATES,
    ALLOWED_REGISTRIES,
    FINAL_STATES,
    KEEP_FINISHED_IN_MEMORY,
    MAX_ACTIVE_JOBS,
    PERSIST_EVERY_S,
    ClientFactory,
    PullJob,
    PullSnapshot,
    canonical_name,
    registry_of,
)
from services.ollama.wire import validate_model_name

log = logging.getLogger(__name__)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pull_jobs (
        id TEXT PRIMARY KEY,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        requested_by TEXT NOT NULL DEFAULT '',
        created_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        completed_bytes BIGINT NOT NULL DEFAULT 0,
        total_bytes BIGINT NOT NULL DEFAULT 0,
        last_status TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS pull_jobs_created ON pull_jobs (created_at)",
)
_ADDED = {"pull_jobs": {"lease_owner": "TEXT NOT NULL DEFAULT ''",
                        "lease_until": "DOUBLE PRECISION NOT NULL DEFAULT 0"}}



class PullManager:
    """Starts, deduplicates, cancels and records pull jobs for the whole dashboard process."""

    def __init__(self, db: Store, client_for: ClientFactory, backends: Sequence[Backend],
                 audit: AuditLog | None = None, *, max_active: int = MAX_ACTIVE_JOBS,
                 allowed_registries: Sequence[str] = ALLOWED_REGISTRIES, lease_ttl_s: float = 30.0,
                 tick_s: float | None = None) -> None:
        self._db = db
        self._client_for = client_for
        self._backends = {b.name: b for b in backends}
        self._audit = audit
        self._max_active = max_active
        self._registries = tuple(r.lower() for r in allowed_registries)
        self._lock = threading.Lock()
        self._jobs: dict[str, PullJob] = {}
        self._active: dict[tuple[str, str], PullJob] = {}
        db.ensure_schema(_SCHEMA, _ADDED)
        self.leases = Leases(db, "pull_jobs", new_holder(), lease_ttl_s)
        self._tick_s = tick_s if tick_s is not None else max(lease_ttl_s / 3, 0.05)
        self._stopping = threading.Event()
        self._heart = threading.Thread(target=self._beat, name="pull-heartbeat", daemon=True)
        self.take_over()  # pulls a previous process left running continue now, not at the first beat
        self._heart.start()

    # ---- actions ---------------------------------------------------------------------------------
    def start(self, backend: Backend, model: str, who: str) -> tuple[PullSnapshot, bool]:
        """Start a pull, or join the one already running for this model on this backend.

        Returns the job's snapshot and whether a new job was started. Raises ``InvalidInput`` for a bad
        name (before any request) or when too many pulls are already running.
        """
        name = validate_model_name(model)
        registry = registry_of(name)
        if registry not in self._registries:
            raise InvalidInput(f"Pulling from {registry} is not allowed; allowed registries: "
                               f"{', '.join(self._registries)}.")
        key = (backend.name, canonical_name(name))
        elsewhere = self._active_elsewhere(key)
        if elsewhere is not None:
            return elsewhere, False  # another dashboard process pulls it: join that job
        with self._lock:
            existing = self._active.get(key)
            if existing is not None:
                return existing.snapshot(), False
            if len(self._active) >= self._max_active:
                raise InvalidInput(f"{len(self._active)} pulls are already running; wait for one to finish "
                                   "or cancel one.")
            job = PullJob(id=uuid.uuid4().hex[:12], backend=backend, model=name, key=key, requested_by=who,
                          created_at=time.time())
            self._jobs[job.id] = job
            self._active[key] = job
            self._db.execute(
                "INSERT INTO pull_jobs (id, backend, model, state, requested_by, created_at, lease_owner, lease_until)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, {self._db.now_sql} + ?)",
                (job.id, backend.name, name, job.state, who, job.created_at, self.leases.holder, self.leases.ttl_s),
            )
            job.thread = threading.Thread(target=self._run, args=(job,), name=f"pull-{job.id}", daemon=True)
            job.thread.start()
        self._record(job, "started")
        return job.snapshot(), True

    def _active_elsewhere(self, key: tuple[str, str]) -> PullSnapshot | None:
        rows = self._db.execute(
            f"SELECT * FROM pull_jobs WHERE backend = ? AND state IN ('queued', 'running') AND lease_owner != ? "
            f"AND {self.leases.live_sql}", (key[0], self.leases.holder)).fetchall()
        for row in rows:
            if canonical_name(row["model"]) == key[1]:
                return _from_row(row)
        return None

    def cancel(self, job_id: str) -> bool:
        """Ask a running job to stop and close its connection now; False when it is not running."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.state not in ACTIVE_STATES:
            return False
        with job.lock:
            job.cancel_requested = True
            stream = job.stream
        if stream is not None:
            stream.abort()
        return True

    def retry(self, job_id: str, who: str) -> tuple[PullSnapshot, bool]:
        """Pull the same model on the same backend again (Ollama resumes the layers it already has)."""
        row = self._db.execute("SELECT backend, model, state FROM pull_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise InvalidInput("That pull job no longer exists.")
        backend = self._backends.get(row["backend"])
        if backend is None:
            raise InvalidInput(f"The backend {row['backend']!r} of that job is no longer configured.")
        return self.start(backend, row["model"], who)

    def wait(self, job_id: str, timeout_s: float | None = None) -> PullSnapshot | None:
        """Block until a job of this process ends (for tests and scripts)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return self.get(job_id)
        if job.thread is not None:
            job.thread.join(timeout_s)
        return job.snapshot()

    # ---- reading ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> PullSnapshot | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job.snapshot()
        row = self._db.execute("SELECT * FROM pull_jobs WHERE id = ?", (job_id,)).fetchone()
        return _from_row(row) if row is not None else None

    def jobs(self, *, backend: str | None = None, limit: int = 20) -> list[PullSnapshot]:
        """Active jobs first, then the most recent finished ones; live jobs come from memory."""
        sql = "SELECT * FROM pull_jobs"
        params: tuple[Any, ...] = ()
        if backend is not None:
            sql += " WHERE backend = ?"
            params = (backend,)
        rows = self._db.execute(sql + " ORDER BY created_at DESC LIMIT ?", (*params, limit)).fetchall()
        with self._lock:
            live = dict(self._jobs)
        out = [live[row["id"]].snapshot() if row["id"] in live else _from_row(row) for row in rows]
        out.sort(key=lambda s: (not s.active, -s.created_at))
        return out

    def active_count(self) -> int:
        with self._lock:
            return len(self._active)

    def shutdown(self, timeout_s: float = 5.0, *, release: bool = True) -> None:
        """Stop this process's pulls and hand them over: their state stays running and their leases are
        released, so the next process (or this one at its next start) continues them at once. ``release``
        False is a crash: the leases run out by themselves."""
        self._stopping.set()
        self._heart.join(timeout_s)
        with self._lock:
            jobs = list(self._active.values())
        for job in jobs:
            with job.lock:
                job.handing_over = True
                stream = job.stream
            if stream is not None:
                stream.abort()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout_s)
        if release and jobs:
            try:
                self.leases.release([job.id for job in jobs])
            except StoreUnavailable:
                log.warning("could not release pull leases at shutdown; they expire in %.0f s", self.leases.ttl_s)

    # ---- leases: the heartbeat, and pulls left by a process that went away ------------------------------
    def _beat(self) -> None:
        while not self._stopping.wait(self._tick_s):
            try:
                with self._lock:
                    ids = [job.id for job in self._active.values()]
                if ids:
                    self.leases.renew(ids, ACTIVE_STATES)
                self.take_over()
            except StoreUnavailable as exc:
                log.warning("pull heartbeat: %s", exc)
            except Exception:
                log.exception("pull heartbeat failed")

    def take_over(self) -> list[str]:
        """Continue the pulls whose process went away (their lease expired); returns their ids."""
        rows = self._db.execute(f"SELECT * FROM pull_jobs WHERE state IN ('queued', 'running') AND NOT "
                                f"({self.leases.live_sql})").fetchall()
        taken = []
        for row in rows:
            with self._db.transaction() as tx:
                if not self.leases.take(tx, row["id"], ACTIVE_STATES):
                    continue  # another process was quicker
            backend = self._backends.get(row["backend"])
            key = (row["backend"], canonical_name(row["model"]))
            with self._lock:
                duplicate = key in self._active
            if backend is None or duplicate:
                why = (f"its backend {row['backend']!r} is no longer configured" if backend is None
                       else "another pull of the same model runs here")
                self._db.execute("UPDATE pull_jobs SET state = 'interrupted', finished_at = ?, error = ?, "
                                 "lease_until = 0 WHERE id = ?",
                                 (time.time(), f"the dashboard process running this pull stopped and {why}",
                                  row["id"]))
                continue
            job = PullJob(id=row["id"], backend=backend, model=row["model"], key=key,
                          requested_by=row["requested_by"], created_at=row["created_at"])
            with self._lock:
                self._jobs[job.id] = job
                self._active[key] = job
                job.thread = threading.Thread(target=self._run, args=(job,), name=f"pull-{job.id}", daemon=True)
                job.thread.start()
            self._record(job, "resumed after its dashboard process stopped")
            taken.append(job.id)
        return taken

    # ---- the worker ------------------------------------------------------------------------------
    def _run(self, job: PullJob) -> None:
        state, error = "failed", ""
        last_persist = 0.0
        try:
            stream = self._client_for(job.backend).pull(job.model)
            with job.lock:
                job.stream = stream
                job.state = "running"
                cancelled = job.cancel_requested
            self._persist(job)
            if cancelled:
                stream.abort()
            succeeded = False
            for line in stream:
                with job.lock:
                    job.progress.update(line)
                if line.get("status") == "success":
                    succeeded = True
                    break  # a pull has no ``done: true`` line; ``success`` is its last word
                now = time.monotonic()
                if now - last_persist >= PERSIST_EVERY_S:
                    last_persist = now
                    self._persist(job)
            if job.cancel_requested:
                state, error = "cancelled", "cancelled by an operator"
            elif succeeded:
                state = "succeeded"
            else:
                error = "the stream ended before Ollama reported success"
        except DashboardError as exc:
            if job.cancel_requested:
                state, error = "cancelled", "cancelled by an operator"
            else:
                error = pull_failure_message(exc, job.model)
        except Exception:  # the job thread must always end with a recorded state, never hang "running"
            log.exception("pull job %s crashed", job.id)
            error = "an unexpected error stopped the pull; the details are in the dashboard's log"
        if job.handing_over and state != "succeeded":
            self._persist(job)  # the progress so far; the state stays running for the next process
            return
        with self._lock:
            with job.lock:
                job.state, job.error, job.finished_at = state, error, time.time()
                job.stream = None
            self._active.pop(job.key, None)
            finished = [j for j in self._jobs.values() if j.state in FINAL_STATES]
            for old in finished[:-KEEP_FINISHED_IN_MEMORY]:  # the record stays in SQLite
                del self._jobs[old.id]
        self._persist(job)
        self._record(job, state if not error else f"{state}: {error}")

    def _persist(self, job: PullJob) -> None:
        snap = job.snapshot()
        try:
            self._db.execute(  # fenced: a process that lost the lease does not overwrite the new holder's record
                "UPDATE pull_jobs SET state=?, error=?, finished_at=?, completed_bytes=?, total_bytes=?, "
                "last_status=? WHERE id=? AND lease_owner=?",
                (snap.state, snap.error, snap.finished_at, snap.completed, snap.total, snap.status, snap.id,
                 self.leases.holder),
            )
        except Exception:  # a locked or vanished DB file must not kill the pull itself
            log.exception("could not persist pull job %s", job.id)

    def _record(self, job: PullJob, outcome: str) -> None:
        if self._audit is None:
            return
        try:
            self._audit.record(who=job.requested_by, backend=job.backend.name, model=job.model, action="pull",
                               outcome=outcome, detail=f"job {job.id}")
        except Exception:
            log.exception("could not write the audit record of pull job %s", job.id)


def pull_failure_message(exc: DashboardError, model: str) -> str:
    """Why a pull failed, worded for a pull (the generic wording talks about replies)."""
    where = getattr(exc, "backend_url", "") or "the backend"
    detail = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, StreamInterrupted):
        return (f"The connection to {where} was lost during the pull ({detail}). Retry to resume: Ollama keeps "
                "the layers it already downloaded.")
    if isinstance(exc, ModelNotFound):
        return f"Ollama could not pull '{model}': {detail}. Check the name and tag on ollama.com/library."
    return user_message(exc)


def _from_row(row: Mapping[str, Any]) -> PullSnapshot:
    return PullSnapshot(
        id=row["id"], backend=row["backend"], model=row["model"], state=row["state"], error=row["error"],
        requested_by=row["requested_by"], created_at=row["created_at"], finished_at=row["finished_at"],
        total=row["total_bytes"], completed=row["completed_bytes"], status=row["last_status"],
    )
