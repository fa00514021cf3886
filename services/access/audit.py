"""The append-only audit log of costly or destructive actions: model pull, delete, copy, load, unload and create
(Save as model), and conversation deletes (who deleted which conversation, never its content).

One row per event in the shared SQLite file: who, when, backend, model, action, outcome. SQLite
triggers refuse UPDATE and DELETE, so a bug elsewhere (or a curious admin with the page) cannot
rewrite history through the dashboard's own connection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from services.db import Database

Action = Literal["pull", "delete", "copy", "load", "unload", "create", "delete_conversation"]
ACTIONS: tuple[Action, ...] = ("pull", "delete", "copy", "load", "unload", "create", "delete_conversation")
MAX_FIELD = 2_000

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        who TEXT NOT NULL,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at)",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    who: str
    backend: str
    model: str
    action: str
    outcome: str
    detail: str = ""


def _clip(value: str) -> str:
    return str(value)[:MAX_FIELD]


class AuditLog:
    """Append and query audit events. Thread-safe (one SQLite connection per thread via ``Database``)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        with db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def record(self, *, who: str, backend: str, model: str, action: Action, outcome: str,
               detail: str = "", at: float | None = None) -> int:
        """Append one event; returns its id. Fields are clipped so a hostile name cannot bloat the log."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO audit_log (at, who, backend, model, action, outcome, detail) VALUES (?,?,?,?,?,?,?)",
                (time.time() if at is None else at, _clip(who), _clip(backend), _clip(model), action,
                 _clip(outcome), _clip(detail)),
            )
            return int(cursor.lastrowid or 0)

    def query(self, *, action: str | None = None, who: str | None = None, backend: str | None = None,
              model_contains: str | None = None, outcome_contains: str | None = None,
              since: float | None = None, until: float | None = None, limit: int = 500) -> list[AuditEntry]:
        """Newest first. Every filter is a bound parameter; text filters are case-insensitive substrings."""
        clauses: list[str] = []
        params: list[object] = []
        if action:
            clauses.append("action = ?")
            params.append(action)
        if who:
            clauses.append("who = ?")
            params.append(who)
        if backend:
            clauses.append("backend = ?")
            params.append(backend)
        if model_contains:
            clauses.append("instr(lower(model), lower(?)) > 0")
            params.append(model_contains)
        if outcome_contains:
            clauses.append("instr(lower(outcome), lower(?)) > 0")
            params.append(outcome_contains)
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("at < ?")
            params.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT id, at, who, backend, model, action, outcome, detail FROM audit_log {where} "
            "ORDER BY at DESC, id DESC LIMIT ?",
            (*params, max(1, min(int(limit), 10_000))),
        ).fetchall()
        return [AuditEntry(**dict(row)) for row in rows]

    def distinct(self, column: Literal["who", "backend"]) -> list[str]:
        """Values seen so far, for the filter pickers."""
        if column not in ("who", "backend"):
            raise ValueError(column)
        return [row[0] for row in self._db.execute(f"SELECT DISTINCT {column} FROM audit_log ORDER BY 1")]
