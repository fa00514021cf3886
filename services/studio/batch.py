"""The batch engine: one task over every row of a supplier file, as a server-side job that survives restarts.

A job and its rows live in SQLite (``services.db``): one row per product with its status (pending,
running, done, failed), output, error, attempts, the repairs applied and timings. A running job is a feeder thread that
pages pending row numbers out of SQLite into a small bounded queue, and exactly ``concurrency`` worker
threads that each hold at most one request, so the backend never sees more requests in flight than
configured and memory does not grow with the file. Transient failures go through one ``BackoffGate``
per job (no retry storms); a row that still fails is marked failed with its reason and the batch goes on.

After a restart, ``BatchManager.resume_interrupted()`` puts rows that were in flight back to pending and
continues: finished rows are never sent again. ``cancel`` stops a job at once (in-flight streams are
aborted; their rows go back to pending, so ``resume`` can continue later); ``retry_failed`` re-runs only
the failed rows.

The same engine runs headless from ``python -m services.studio`` (``services.studio.cli``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from services.db import Database
from services.errors import InvalidInput
from services.ollama.client import OllamaClient
from services.ollama.wire import validate_model_name
from services.studio.batch_store import (
    MAX_CONCURRENCY,
    SCHEMA,
    JobInfo,
    Progress,
    job_from_row,
    key_columns,
    migrate,
    repairs_text,
    result_column_names,
    row_outcome,
)
from services.studio.runner import JobRunner
from services.studio.tabular import Table, require_columns
from services.studio.tasks import BATCH_TASKS, TASK_FIELDS, TaskParams
from services.studio.taxonomy import Taxonomy
from services.studio.taxonomy_store import TaxonomyStore, category_columns, category_values
from services.studio.templates import Template


class BatchManager:
    """Process-wide owner of every batch job; sessions and the CLI only call its methods."""

    def __init__(self, db: Database, client_for: Callable[[str], OllamaClient],
                 on_failure: Callable[[str, int, BaseException], None] | None = None, *,
                 backoff_base_s: float = 0.5, backoff_max_s: float = 8.0, max_transport_attempts: int = 4,
                 taxonomies: TaxonomyStore | None = None) -> None:
        self.db = db
        self.taxonomies = taxonomies or TaxonomyStore(None)  # the dashboard and the CLI pass the data directory's
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self.max_transport_attempts = max_transport_attempts
        self.client_for = client_for
        self._on_failure = on_failure
        self._runners: dict[str, JobRunner] = {}
        self._lock = threading.Lock()
        conn = db.connection()
        conn.executescript(SCHEMA)
        migrate(conn)

    # ---- creating and controlling jobs -------------------------------------------------------------
    def create_job(self, table: Table, *, template: Template, model: str, backend: str, params: TaskParams,
                   mapping: dict[str, str | None], concurrency: int, owner: str) -> str:
        """Validate everything, then write the job and all its rows in one transaction (all or nothing)."""
        if template.task not in BATCH_TASKS:
            raise InvalidInput(f"The task {template.task!r} cannot run as a batch.")
        validate_model_name(model)
        params.validate()
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise InvalidInput(f"Concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency}.")
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
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO batch_jobs (id, created_at, updated_at, owner, source_name, task, template_json, model,"
                " backend, params_json, mapping_json, columns_json, concurrency, state, total)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'created', ?)",
                (job_id, now, now, owner, table.source_name[:200], template.task, json.dumps(template.as_dict()),
                 model, backend, json.dumps(params.as_dict()), json.dumps(clean_mapping), json.dumps(columns),
                 concurrency, len(table)),
            )
            conn.executemany(
                "INSERT INTO batch_rows (job_id, idx, data_json, status) VALUES (?, ?, ?, 'pending')",
                ((job_id, i, json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False))
                 for i, row in enumerate(table.frame.itertuples(index=False, name=None))),
            )
        return job_id

    def start(self, job_id: str) -> None:
        self.job(job_id)
        with self._lock:
            if job_id in self._runners:
                return
            self._set_state(job_id, "running", "")
            runner = JobRunner(self, self.job(job_id))
            self._runners[job_id] = runner
        runner.start()

    def cancel(self, job_id: str) -> None:
        self.job(job_id)
        with self._lock:
            runner = self._runners.get(job_id)
            self._set_state(job_id, "cancelled", "Cancelled; unfinished rows stay pending (Resume continues).")
        if runner is not None:
            runner.cancel()

    def retry_failed(self, job_id: str) -> int:
        """Put failed rows back to pending and run them; finished rows are untouched."""
        self.job(job_id)
        if self.is_running(job_id):
            raise InvalidInput("The batch is still running; wait for it to finish or cancel it first.")
        # Attempts are kept: a row's count is every request ever sent for it (honest requests per row).
        cursor = self.db.execute(
            "UPDATE batch_rows SET status='pending', error='' WHERE job_id=? AND status='failed'", (job_id,))
        count = cursor.rowcount
        if count or self.progress(job_id).pending:
            self.start(job_id)
        return count

    def resume(self, job_id: str) -> None:
        self.job(job_id)
        self.db.execute("UPDATE batch_rows SET status='pending' WHERE job_id=? AND status='running'", (job_id,))
        self.start(job_id)

    def resume_interrupted(self) -> list[str]:
        """After a restart: continue every job that was running when the process stopped."""
        # Command-line jobs belong to their own process; the dashboard does not adopt them.
        rows = self.db.execute("SELECT id FROM batch_jobs WHERE state='running' AND owner != 'cli'").fetchall()
        resumed = []
        for row in rows:
            if not self.is_running(row["id"]):
                self.resume(row["id"])
                resumed.append(row["id"])
        return resumed

    def is_running(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._runners

    def wait(self, job_id: str, timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.is_running(job_id):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop every runner without changing job states, as a process exit would (resume picks them up)."""
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.cancel()
        for runner in runners:
            for thread in runner.threads:
                thread.join(timeout_s)

    def max_in_flight(self, job_id: str) -> int:
        with self._lock:
            runner = self._runners.get(job_id)
        return runner.max_in_flight if runner else 0

    # ---- reading -----------------------------------------------------------------------------------
    def job(self, job_id: str) -> JobInfo:
        row = self.db.execute("SELECT * FROM batch_jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise InvalidInput(f"No batch job {job_id!r}.")
        return job_from_row(row)

    def jobs(self, limit: int = 20) -> list[JobInfo]:
        rows = self.db.execute("SELECT * FROM batch_jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [job_from_row(r) for r in rows]

    def progress(self, job_id: str) -> Progress:
        job = self.job(job_id)
        counts = dict.fromkeys(("pending", "running", "done", "failed"), 0)
        repaired = 0
        for row in self.db.execute("SELECT status, repairs != '' AS fixed, COUNT(*) AS n FROM batch_rows"
                                   " WHERE job_id=? GROUP BY status, fixed", (job_id,)):
            counts[row["status"]] += row["n"]
            repaired += row["n"] if row["status"] == "done" and row["fixed"] else 0
        with self._lock:
            runner = self._runners.get(job_id)
        rate = eta = elapsed = None
        if runner is not None:
            rate = runner.rate()
            elapsed = time.monotonic() - runner.started
            remaining = counts["pending"] + counts["running"]
            eta = remaining / rate if rate else None
        return Progress(total=job.total, state=job.state, rows_per_s=rate, eta_s=eta, elapsed_s=elapsed,
                        repaired=repaired, **counts)

    def attempts(self, job_id: str) -> int:
        """Every request sent for this job's rows so far (retries included)."""
        row = self.db.execute("SELECT COALESCE(SUM(attempts), 0) AS n FROM batch_rows WHERE job_id=?",
                              (job_id,)).fetchone()
        return int(row["n"])

    def average_row_seconds(self, task: str, model: str) -> float | None:
        """Mean wall time of recent successful rows for this task and model, for the page's estimate."""
        row = self.db.execute(
            "SELECT AVG(d) AS avg FROM (SELECT r.duration_s AS d FROM batch_rows r JOIN batch_jobs j ON j.id = r.job_id"
            " WHERE j.task=? AND j.model=? AND r.status='done' AND r.duration_s IS NOT NULL"
            " ORDER BY r.updated_at DESC LIMIT 500)", (task, model)).fetchone()
        return float(row["avg"]) if row and row["avg"] is not None else None

    def rows(self, job_id: str, *, status: str | None = None, limit: int = 200, offset: int = 0) -> pd.DataFrame:
        """A page of per-row results for the page (bounded; never the whole file): the row number, the
        product's own key columns, then status, output, attempts, repairs and the full error."""
        job = self.job(job_id)
        keys = key_columns(job)
        sql = ("SELECT idx, data_json, status, output, error, attempts, repairs, duration_s FROM batch_rows "
               "WHERE job_id=?")
        args: list[Any] = [job_id]
        if status:
            sql += " AND status=?"
            args.append(status)
        sql += " ORDER BY idx LIMIT ? OFFSET ?"
        args += [limit, offset]
        records = []
        for r in self.db.execute(sql, tuple(args)).fetchall():
            data = json.loads(r["data_json"])
            records.append({"row": r["idx"] + 1, **{f"key:{k}": str(data.get(k, "")) for k in keys},
                            "status": row_outcome(r["status"], r["repairs"]) if r["status"] in ("done", "failed")
                            else r["status"], "output": r["output"] if r["status"] == "done" else "",
                            "attempts": r["attempts"], "repairs": repairs_text(r["repairs"]), "error": r["error"],
                            "duration_s": r["duration_s"]})
        columns = ["row", *(f"key:{k}" for k in keys), "status", "output", "attempts", "repairs", "error",
                   "duration_s"]
        return pd.DataFrame(records, columns=columns)

    def taxonomy_for(self, job: JobInfo) -> Taxonomy | None:
        """A classification job's taxonomy (the one its parameters name), None for the other tasks."""
        return self.taxonomies.get(job.params.taxonomy) if job.task == "classification" else None

    def iter_results(self, job_id: str, page: int = 2000) -> Iterator[list[Any]]:
        """Every input column, then the result columns, row by row in the file's order (a classification's
        category id, depth and taxonomy after them, and ``google_product_category`` in Google's taxonomy)."""
        job = self.job(job_id)
        taxonomy = self.taxonomy_for(job)
        last = -1
        while True:
            batch = self.db.execute(
                "SELECT idx, data_json, status, output, error, attempts, repairs, duration_s, template_ref"
                " FROM batch_rows WHERE job_id=? AND idx>? ORDER BY idx LIMIT ?", (job_id, last, page)).fetchall()
            if not batch:
                return
            for row in batch:
                data = json.loads(row["data_json"])
                output = row["output"] if row["status"] == "done" else ""
                yield [*(data.get(c, "") for c in job.columns), row_outcome(row["status"], row["repairs"]),
                       output, row["error"], row["attempts"],
                       repairs_text(row["repairs"]), row["template_ref"] or job.template.ref, job.model,
                       round(row["duration_s"], 2) if row["duration_s"] is not None else "",
                       *(category_values(taxonomy, output) if taxonomy is not None else ())]
                last = row["idx"]

    def results_frame(self, job_id: str) -> pd.DataFrame:
        job = self.job(job_id)
        taxonomy = self.taxonomy_for(job)
        names = result_column_names(job.columns, category_columns(taxonomy) if taxonomy is not None else ())
        return pd.DataFrame(list(self.iter_results(job_id)), columns=[*job.columns, *names])

    # ---- internals (called by runners) ---------------------------------------------------------------
    def _set_state(self, job_id: str, state: str, message: str) -> None:
        self.db.execute("UPDATE batch_jobs SET state=?, message=?, updated_at=? WHERE id=?",
                        (state, message, time.time(), job_id))

    def _pending_after(self, job_id: str, last: int, limit: int) -> list[int]:
        rows = self.db.execute("SELECT idx FROM batch_rows WHERE job_id=? AND status='pending' AND idx>?"
                               " ORDER BY idx LIMIT ?", (job_id, last, limit)).fetchall()
        return [r["idx"] for r in rows]

    def _claim(self, job_id: str, idx: int) -> dict[str, Any] | None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT data_json FROM batch_rows WHERE job_id=? AND idx=? AND status='pending'",
                               (job_id, idx)).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE batch_rows SET status='running', updated_at=? WHERE job_id=? AND idx=?",
                         (time.time(), job_id, idx))
        return json.loads(row["data_json"])

    def _release(self, job_id: str, idx: int) -> None:
        self.db.execute("UPDATE batch_rows SET status='pending' WHERE job_id=? AND idx=? AND status='running'",
                        (job_id, idx))

    def _store(self, job_id: str, idx: int, status: str, output: str, error: str, attempts: int,
               duration_s: float, tokens: int | None, template_ref: str, repairs: str = "") -> None:
        self.db.execute(
            "UPDATE batch_rows SET status=?, output=?, error=?, attempts=attempts+?, duration_s=?, tokens=?,"
            " template_ref=?, repairs=?, updated_at=? WHERE job_id=? AND idx=?",
            (status, output, error[:1000], attempts, duration_s, tokens, template_ref, repairs[:2000], time.time(),
             job_id, idx))

    def _log_failure(self, job_id: str, idx: int, exc: BaseException) -> None:
        if self._on_failure is not None:
            self._on_failure(job_id, idx, exc)

    def _runner_ended(self, runner: JobRunner) -> None:
        """Record how the run ended, then forget the runner (so ``wait`` returns with the state already set)."""
        job_id = runner.job.id
        if runner.stop_reason:
            self._set_state(job_id, "cancelled", f"Stopped: {runner.stop_reason}")
        elif not runner.cancelled.is_set():
            # Not cancelled (that state is already set) nor shut down (state stays running, to resume).
            counts = self.progress(job_id)
            message = f"{counts.done} done, {counts.failed} failed" + (
                f", {counts.pending} not run" if counts.pending else "")
            self._set_state(job_id, "finished", message)
        with self._lock:
            if self._runners.get(job_id) is runner:
                del self._runners[job_id]


