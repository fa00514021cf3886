"""The audit log: append-only in SQLite, filterable, safe with hostile text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from services.access.audit import MAX_FIELD, AuditLog
from services.db import Database


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(Database.in_dir(tmp_path))


def test_records_come_back_newest_first_and_survive_a_new_handle(audit: AuditLog, tmp_path: Path) -> None:
    audit.record(who="alice", backend="gpu", model="llama3.2:1b", action="pull", outcome="succeeded", at=100.0)
    audit.record(who="bob", backend="cpu", model="phi3:mini", action="delete", outcome="ok", at=200.0)
    again = AuditLog(Database.in_dir(tmp_path))
    entries = again.query()
    assert [(e.who, e.action, e.outcome) for e in entries] == [("bob", "delete", "ok"),
                                                              ("alice", "pull", "succeeded")]
    assert again.distinct("who") == ["alice", "bob"]
    assert again.distinct("backend") == ["cpu", "gpu"]


def test_filters(audit: AuditLog) -> None:
    for i, (who, action, model) in enumerate([("alice", "pull", "Llama3.2:1b"), ("bob", "load", "llama3.2:1b"),
                                              ("bob", "unload", "qwen3:0.6b"), ("alice", "copy", "phi3:mini")]):
        audit.record(who=who, backend="gpu" if i % 2 else "cpu", model=model, action=action,
                     outcome="failed: boom" if i == 3 else "ok", at=float(i))
    assert [e.action for e in audit.query(who="bob")] == ["unload", "load"]
    assert [e.action for e in audit.query(action="pull")] == ["pull"]
    assert [e.action for e in audit.query(model_contains="LLAMA")] == ["load", "pull"]
    assert [e.action for e in audit.query(backend="gpu")] == ["copy", "load"]
    assert [e.action for e in audit.query(outcome_contains="failed")] == ["copy"]
    assert [e.action for e in audit.query(since=1.0, until=3.0)] == ["unload", "load"]
    assert len(audit.query(limit=2)) == 2
    # Filter text is a bound parameter, never SQL.
    assert audit.query(model_contains="' OR 1=1 --") == []


def test_the_log_is_append_only(audit: AuditLog, tmp_path: Path) -> None:
    audit.record(who="alice", backend="gpu", model="m", action="load", outcome="ok")
    conn = sqlite3.connect(tmp_path / "dashboard.sqlite3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_log SET outcome='tampered'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_log")
    conn.close()
    assert audit.query()[0].outcome == "ok"


def test_hostile_text_is_clipped_and_unknown_actions_refused(audit: AuditLog) -> None:
    audit.record(who="x" * 50_000, backend="b", model="m\x00<script>", action="pull", outcome="ok")
    entry = audit.query()[0]
    assert len(entry.who) == MAX_FIELD and entry.model == "m\x00<script>"
    with pytest.raises(ValueError):
        audit.record(who="a", backend="b", model="m", action="drop table", outcome="ok")  # type: ignore[arg-type]
