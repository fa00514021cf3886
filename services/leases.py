"""Leases on server-side jobs, so that several dashboard processes share one database without taking each
other's work.

A job row carries ``lease_owner`` (which process runs it) and ``lease_until`` (the database's clock, seconds).
The holder renews it on a heartbeat; a process takes a job over only once ``lease_until`` has passed, with a
conditional ``UPDATE`` that exactly one process wins. A clean stop releases its leases (``lease_until = 0``),
so at a rolling restart the new process continues at once; a killed one is taken over after the TTL. Writes
that matter are fenced with the owner (``AND lease_owner = ?``), so a process that lost its lease while
stalled cannot overwrite the new holder's work.

Why not a job library: procrastinate and pgqueuer run on PostgreSQL only (the embedded SQLite default would
need a second queue, huey, with other semantics), they schedule tasks to worker processes while these jobs
live in the dashboard process (a batch is one job of 100,000 rows handed to backend lanes, a pull one
stream), and the lease is three portable statements.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Sequence

from services.db import Store


def new_holder() -> str:
    """This process's name in the lease columns: host, pid and a random part (two managers in one process
    are two holders)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Leases:
    """The lease columns of one job table (``id``, ``state``, ``lease_owner``, ``lease_until``)."""

    def __init__(self, db: Store, table: str, holder: str, ttl_s: float) -> None:
        self.db = db
        self.table = table
        self.holder = holder
        self.ttl_s = ttl_s

    @property
    def live_sql(self) -> str:
        """True for a row whose lease has not expired."""
        return f"lease_until > {self.db.now_sql}"

    def renew(self, ids: Iterable[str], states: Sequence[str], extra: dict[str, str] | None = None) -> set[str]:
        """Extend our leases on ``ids`` (still in one of ``states``); returns the ids we still hold.
        ``extra`` writes one more column per job in the same statement (the batch heartbeat's snapshot)."""
        held: set[str] = set()
        marks = ", ".join("?" for _ in states)
        with self.db.transaction() as tx:
            for job_id in ids:
                column = ", live_json = ?" if extra is not None else ""
                args: list[object] = [self.ttl_s]
                if extra is not None:
                    args.append(extra.get(job_id, ""))
                cursor = tx.execute(
                    f"UPDATE {self.table} SET lease_until = {self.db.now_sql} + ?{column} "
                    f"WHERE id = ? AND lease_owner = ? AND state IN ({marks})",
                    (*args, job_id, self.holder, *states))
                if cursor.rowcount:
                    held.add(job_id)
        return held

    def take(self, tx: object, job_id: str, states: Sequence[str], *, only_expired: bool = True) -> bool:
        """Inside a transaction: make this process the holder, if the lease is free (or ``only_expired`` off)."""
        marks = ", ".join("?" for _ in states)
        condition = f" AND lease_until <= {self.db.now_sql}" if only_expired else ""
        cursor = tx.execute(  # type: ignore[attr-defined]
            f"UPDATE {self.table} SET lease_owner = ?, lease_until = {self.db.now_sql} + ? "
            f"WHERE id = ? AND state IN ({marks}){condition}", (self.holder, self.ttl_s, job_id, *states))
        return bool(cursor.rowcount)

    def release(self, ids: Iterable[str]) -> None:
        """Give our leases up now (a clean stop): another process may continue these jobs at once."""
        with self.db.transaction() as tx:
            for job_id in ids:
                tx.execute(f"UPDATE {self.table} SET lease_until = 0 WHERE id = ? AND lease_owner = ?",
                           (job_id, self.holder))
