"""Which batch jobs run now: at most N at once across every dashboard process, the rest waiting in a fair
queue, and jobs whose process went away taken over once their lease has expired.

Fairness is between people, then in order: the next job is the earliest queued job of the person with the
fewest jobs running, and among equals the person whose last job started longest ago. Someone who queues ten
files does not make the next person wait for all ten. Every process's dispatch runs in one transaction that
first updates a single row of ``batch_scheduler``, so two processes never decide at the same time (a row
lock on PostgreSQL; SQLite's write lock already serialises them).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.db import Store
from services.leases import Leases
from services.studio.batch_store import CLI_OWNER

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS batch_scheduler (id INTEGER PRIMARY KEY, turn INTEGER NOT NULL DEFAULT 0)",
    "INSERT INTO batch_scheduler (id, turn) VALUES (1, 0) ON CONFLICT DO NOTHING",
)


@dataclass(frozen=True)
class Waiting:
    id: str
    owner: str
    queued_at: float


def fair_order(queued: Sequence[Waiting], running: Mapping[str, int], last_start: Mapping[str, float]) -> list[str]:
    """The queued jobs in the order they will start.

    >>> q = [Waiting("a1", "ann", 1), Waiting("a2", "ann", 2), Waiting("a3", "ann", 3), Waiting("b1", "bob", 4)]
    >>> fair_order(q, {"ann": 1}, {"ann": 0.5})
    ['b1', 'a1', 'a2', 'a3']
    >>> fair_order(q, {}, {"bob": 9.0})
    ['a1', 'b1', 'a2', 'a3']
    """
    by_owner: dict[str, list[Waiting]] = {}
    for job in sorted(queued, key=lambda j: (j.queued_at, j.id)):
        by_owner.setdefault(job.owner, []).append(job)
    load = Counter(running)
    started = dict(last_start)
    order: list[str] = []
    tick = max(started.values(), default=0.0)
    while by_owner:
        owner = min(by_owner, key=lambda o: (load[o], started.get(o, float("-inf")), by_owner[o][0].queued_at))
        job = by_owner[owner].pop(0)
        order.append(job.id)
        if not by_owner[owner]:
            del by_owner[owner]
        load[owner] += 1
        tick += 1.0
        started[owner] = tick
    return order


@dataclass(frozen=True)
class Start:
    job_id: str
    adopted: bool  # taken over from a process that went away (its lease expired)


class Scheduler:
    """One process's view of the queue: which jobs it may start or take over now."""

    def __init__(self, db: Store, leases: Leases, *, max_running: int) -> None:
        self.db = db
        self.leases = leases
        self.max_running = max_running

    def _snapshot(self, tx: object) -> list[object]:
        live = self.leases.live_sql
        return tx.execute(  # type: ignore[attr-defined]
            f"SELECT id, owner, state, queued_at, started_at, lease_owner, CASE WHEN {live} THEN 1 ELSE 0 END AS live"
            " FROM batch_jobs WHERE state IN ('queued', 'running')").fetchall()

    def dispatch(self, *, adopt: bool = True) -> list[Start]:
        """Take over expired jobs and start queued ones, up to the limit; the caller starts their runners."""
        starts: list[Start] = []
        with self.db.transaction() as tx:
            tx.execute("UPDATE batch_scheduler SET turn = turn + 1 WHERE id = 1")
            rows = self._snapshot(tx)
            running = [r for r in rows if r["state"] == "running" and r["live"]]
            free = self.max_running - len(running)
            orphans = sorted((r for r in rows if r["state"] == "running" and not r["live"]
                              and r["owner"] != CLI_OWNER), key=lambda r: r["started_at"])
            for row in orphans if adopt else ():
                if free <= 0:  # over the limit now (a smaller N after a restart): back to the head of the queue
                    tx.execute("UPDATE batch_jobs SET state = 'queued' WHERE id = ? AND state = 'running'",
                               (row["id"],))
                    continue
                if self.leases.take(tx, row["id"], ("running",)):
                    self._reset_rows(tx, row["id"])
                    starts.append(Start(row["id"], True))
                    running.append(row)
                    free -= 1
            if not adopt or free <= 0:
                return starts
            queued = [Waiting(r["id"], r["owner"], r["queued_at"]) for r in rows if r["state"] == "queued"]
            if not queued:
                return starts
            order = fair_order(queued, Counter(r["owner"] for r in running), self._last_starts(tx, queued))
            now = time.time()
            for job_id in order[:free]:
                cursor = tx.execute(
                    f"UPDATE batch_jobs SET state = 'running', started_at = ?, message = '', lease_owner = ?, "
                    f"lease_until = {self.db.now_sql} + ?, updated_at = ? WHERE id = ? AND state = 'queued'",
                    (now, self.leases.holder, self.leases.ttl_s, now, job_id))
                if cursor.rowcount:
                    self._reset_rows(tx, job_id)
                    starts.append(Start(job_id, False))
        return starts

    def start_now(self, job_id: str) -> bool:
        """Run a job in this process at once, outside the queue (the command line's own job)."""
        now = time.time()
        with self.db.transaction() as tx:
            cursor = tx.execute(
                f"UPDATE batch_jobs SET state = 'running', started_at = ?, queued_at = ?, message = '', "
                f"lease_owner = ?, lease_until = {self.db.now_sql} + ?, updated_at = ? WHERE id = ? AND NOT "
                f"(state = 'running' AND {self.leases.live_sql})",
                (now, now, self.leases.holder, self.leases.ttl_s, now, job_id))
            if cursor.rowcount:
                self._reset_rows(tx, job_id)
        return bool(cursor.rowcount)

    def queue_positions(self) -> dict[str, int]:
        """Every queued job's place (1 = next to start)."""
        rows = self.db.execute("SELECT id, owner, state, queued_at, started_at, "
                               f"CASE WHEN {self.leases.live_sql} THEN 1 ELSE 0 END AS live FROM batch_jobs "
                               "WHERE state IN ('queued', 'running')").fetchall()
        queued = [Waiting(r["id"], r["owner"], r["queued_at"]) for r in rows if r["state"] == "queued"]
        if not queued:
            return {}
        running = Counter(r["owner"] for r in rows if r["state"] == "running" and r["live"])
        order = fair_order(queued, running, self._last_starts(None, queued))
        return {job_id: i for i, job_id in enumerate(order, start=1)}

    def _last_starts(self, tx: object | None, queued: Sequence[Waiting]) -> dict[str, float]:
        owners = sorted({job.owner for job in queued})
        marks = ", ".join("?" for _ in owners)
        sql = f"SELECT owner, MAX(started_at) AS last FROM batch_jobs WHERE owner IN ({marks}) GROUP BY owner"
        rows = (tx.execute(sql, owners) if tx is not None else self.db.execute(sql, owners)).fetchall()  # type: ignore[attr-defined]
        return {r["owner"]: float(r["last"] or 0.0) for r in rows if r["last"]}

    @staticmethod
    def _reset_rows(tx: object, job_id: str) -> None:
        """Rows an earlier release marked as in flight go back to pending (they were never written)."""
        tx.execute("UPDATE batch_rows SET status = 'pending' WHERE job_id = ? AND status = 'running'",  # type: ignore[attr-defined]
                   (job_id,))
