"""Reading batch jobs: progress from the job's counters (never a scan of its rows), live figures from the local
runner or from the heartbeat of the process that runs it, bounded pages of rows, the results file row by row,
and what the wall screen shows (``BatchReader.board``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from services.errors import InvalidInput
from services.studio.batch_store import (
    ACTIVE_STATES,
    JobInfo,
    LaneStats,
    Progress,
    job_from_row,
    key_columns,
    live_from_json,
    repairs_text,
    result_column_names,
    row_outcome,
)
from services.studio.taxonomy import Taxonomy
from services.studio.taxonomy_store import TaxonomyStore, category_columns, category_values

if TYPE_CHECKING:
    from services.db import Store
    from services.leases import Leases
    from services.studio.runner import JobRunner
    from services.studio.scheduler import Scheduler

LIVE_STALE_S = 90.0  # a heartbeat snapshot older than this is not shown as live


@dataclass(frozen=True)
class BoardJob:
    """One queued or running batch for the wall screen and the page's queue list."""

    job: JobInfo
    progress: Progress


class BatchReader:
    """The reading half of ``BatchManager`` (the attributes below are set by it)."""

    db: Store
    taxonomies: TaxonomyStore
    leases: Leases
    scheduler: Scheduler
    _runners: dict[str, JobRunner]
    _lock: threading.Lock

    # ---- jobs -----------------------------------------------------------------------------------------
    def job(self, job_id: str) -> JobInfo:
        row = self.db.execute("SELECT * FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise InvalidInput(f"No batch job {job_id!r}.")
        return job_from_row(row)

    def jobs(self, limit: int = 20, *, owner: str | None = None) -> list[JobInfo]:
        if owner is None:
            rows = self.db.execute("SELECT * FROM batch_jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self.db.execute("SELECT * FROM batch_jobs WHERE owner = ? ORDER BY created_at DESC LIMIT ?",
                                   (owner, limit)).fetchall()
        return [job_from_row(r) for r in rows]

    def _local(self, job_id: str) -> JobRunner | None:
        with self._lock:
            return self._runners.get(job_id)

    def runs_here(self, job_id: str) -> bool:
        """This process runs the job now."""
        return self._local(job_id) is not None

    def is_running(self, job_id: str) -> bool:
        """Running here, or in another dashboard process that still holds its lease."""
        runner = self._local(job_id)
        if runner is not None and not runner.cancelled.is_set():
            return True
        row = self.db.execute(f"SELECT CASE WHEN state = 'running' AND {self.leases.live_sql} THEN 1 ELSE 0 END "
                              "AS live FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["live"])

    def is_active(self, job_id: str) -> bool:
        """Queued, or running anywhere (a runner of this process still letting go counts too)."""
        if self._local(job_id) is not None:
            return True
        row = self.db.execute(f"SELECT CASE WHEN state = 'queued' OR (state = 'running' AND {self.leases.live_sql})"
                              " THEN 1 ELSE 0 END AS active FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row["active"])

    # ---- progress -------------------------------------------------------------------------------------
    def progress(self, job_id: str) -> Progress:
        row = self.db.execute(f"SELECT *, CASE WHEN {self.leases.live_sql} THEN 1 ELSE 0 END AS live "
                              "FROM batch_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise InvalidInput(f"No batch job {job_id!r}.")
        if not row["counted"]:
            self._recount(job_id)
            return self.progress(job_id)
        return self._progress_of(row, self._local(job_id), None)

    def _progress_of(self, row: Any, runner: JobRunner | None, positions: dict[str, int] | None) -> Progress:
        done, failed = row["done_count"], row["failed_count"]
        total = row["total"]
        rate = eta = elapsed = None
        paused, lanes, running = "", (), 0
        if runner is not None and not runner.cancelled.is_set():
            rate, elapsed, running = runner.rate(), time.monotonic() - runner.started, runner.in_flight
            paused, lanes = runner.paused(), tuple(runner.lane_stats())
        elif row["state"] == "running" and row["live"]:
            live = live_from_json(row["live_json"])
            if live and time.time() - float(live.get("at", 0)) < LIVE_STALE_S:
                rate, elapsed, paused = live.get("rate"), live.get("elapsed"), str(live.get("paused", ""))
                running = int(live.get("in_flight", 0))
                lanes = tuple(LaneStats.from_dict(raw) for raw in live.get("lanes", []))
        running = min(running, max(total - done - failed, 0))
        pending = max(total - done - failed - running, 0)
        if rate:
            eta = (pending + running) / rate
        position = None
        if row["state"] == "queued":
            position = (positions if positions is not None else self.scheduler.queue_positions()).get(row["id"])
        return Progress(total=total, pending=pending, running=running, done=done, failed=failed, state=row["state"],
                        repaired=row["repaired_count"], rows_per_s=rate, eta_s=eta, elapsed_s=elapsed, paused=paused,
                        lanes=lanes, queue_position=position, attempts=row["attempts_count"])

    def _recount(self, job_id: str) -> None:
        """Counters for a job written before they existed: one scan, once."""
        with self.db.transaction() as tx:
            counts = {"done": 0, "failed": 0, "repaired": 0, "attempts": 0, "seconds": 0.0}
            for r in tx.execute("SELECT status, CASE WHEN repairs != '' THEN 1 ELSE 0 END AS fixed, COUNT(*) AS n, "
                                "COALESCE(SUM(attempts), 0) AS a, COALESCE(SUM(duration_s), 0) AS s FROM batch_rows "
                                "WHERE job_id = ? GROUP BY status, fixed", (job_id,)).fetchall():
                if r["status"] in ("done", "failed"):
                    counts[r["status"]] += int(r["n"])
                counts["repaired"] += int(r["n"]) if r["status"] == "done" and r["fixed"] else 0
                counts["attempts"] += int(r["a"])
                counts["seconds"] += float(r["s"]) if r["status"] == "done" else 0.0
            tx.execute("UPDATE batch_jobs SET done_count = ?, failed_count = ?, repaired_count = ?, attempts_count = ?,"
                       " done_seconds = ?, counted = 1 WHERE id = ?",
                       (counts["done"], counts["failed"], counts["repaired"], counts["attempts"], counts["seconds"],
                        job_id))

    def attempts(self, job_id: str) -> int:
        """Every request sent for this job's rows so far (retries and hand-backs included)."""
        return self.progress(job_id).attempts

    def board(self, limit: int = 20) -> list[BoardJob]:
        """Queued and running batches, running first then in queue order, from the job table alone: for the
        wall screen (``components.kiosk``) and the page's queue. Each progress carries per-backend throughput
        (``Progress.lanes``: rows/s, slots, paused or not) and the place in the queue."""
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        sql = (f"SELECT *, CASE WHEN {self.leases.live_sql} THEN 1 ELSE 0 END AS live FROM batch_jobs "
               f"WHERE state IN ({marks}) ORDER BY created_at")
        rows = self.db.execute(sql, ACTIVE_STATES).fetchall()
        uncounted = [r["id"] for r in rows if not r["counted"]]  # jobs from before the counters: once
        for job_id in uncounted:
            self._recount(job_id)
        if uncounted:
            rows = self.db.execute(sql, ACTIVE_STATES).fetchall()
        positions = self.scheduler.queue_positions()
        board = [BoardJob(job_from_row(r), self._progress_of(r, self._local(r["id"]), positions)) for r in rows
                 if r["state"] == "queued" or r["live"] or self._local(r["id"])]
        board.sort(key=lambda b: (b.progress.state != "running", b.progress.queue_position or 0, b.job.created_at))
        return board[:limit]

    def average_row_seconds(self, task: str, model: str) -> float | None:
        """Mean wall time of successful rows of the last few jobs with this task and model (their counters)."""
        row = self.db.execute(
            "SELECT SUM(done_seconds) AS seconds, SUM(done_count) AS n FROM (SELECT done_seconds, done_count FROM "
            "batch_jobs WHERE task = ? AND model = ? AND done_count > 0 ORDER BY created_at DESC LIMIT 5) AS recent",
            (task, model)).fetchone()
        return float(row["seconds"]) / int(row["n"]) if row and row["n"] else None

    # ---- rows -----------------------------------------------------------------------------------------
    def rows(self, job_id: str, *, status: str | None = None, limit: int = 200, offset: int = 0) -> pd.DataFrame:
        """A page of per-row results for the page (bounded; never the whole file): the row number, the
        product's own key columns, then status, output, attempts, repairs, backend and the full error."""
        job = self.job(job_id)
        keys = key_columns(job)
        sql = ("SELECT idx, data_json, status, output, error, attempts, repairs, duration_s, backend FROM batch_rows "
               "WHERE job_id = ?")
        args: list[Any] = [job_id]
        if status:
            sql += " AND status = ?"
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
                            "duration_s": r["duration_s"], "backend": r["backend"]})
        columns = ["row", *(f"key:{k}" for k in keys), "status", "output", "attempts", "repairs", "error",
                   "duration_s", "backend"]
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
                "SELECT idx, data_json, status, output, error, attempts, repairs, duration_s, template_ref, backend"
                " FROM batch_rows WHERE job_id = ? AND idx > ? ORDER BY idx LIMIT ?", (job_id, last, page)).fetchall()
            if not batch:
                return
            for row in batch:
                data = json.loads(row["data_json"])
                output = row["output"] if row["status"] == "done" else ""
                yield [*(data.get(c, "") for c in job.columns), row_outcome(row["status"], row["repairs"]),
                       output, row["error"], row["attempts"],
                       repairs_text(row["repairs"]), row["template_ref"] or job.template.ref, job.model,
                       round(row["duration_s"], 2) if row["duration_s"] is not None else "",
                       row["backend"] if row["status"] in ("done", "failed") else "",
                       *(category_values(taxonomy, output) if taxonomy is not None else ())]
                last = row["idx"]

    def results_frame(self, job_id: str) -> pd.DataFrame:
        job = self.job(job_id)
        taxonomy = self.taxonomy_for(job)
        names = result_column_names(job.columns, category_columns(taxonomy) if taxonomy is not None else ())
        return pd.DataFrame(list(self.iter_results(job_id)), columns=[*job.columns, *names])
