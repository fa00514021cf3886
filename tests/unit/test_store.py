"""The probe history in SQLite: aggregation, retention, and recovery from a deleted, locked or broken file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.db import Database
from services.monitoring.history import GenerationCounter, ProbeStore
from services.monitoring.probe import LoadedModelInfo, ProbeResult


def result(backend: str, at: float, status: str = "online", latency: float | None = 10.0) -> ProbeResult:
    up = status != "offline"
    loaded = (LoadedModelInfo("m:1b", 2000, 1500, "100% GPU", 60.0),) if up else ()
    return ProbeResult(backend, "http://x", at, status, up, latency_ms=latency if up else None, version="0.33.0",
                       installed_models=3 if up else None, loaded=loaded, error="" if up else "refused")


@pytest.fixture
def store(tmp_path: Path) -> ProbeStore:
    return ProbeStore(Database.in_dir(tmp_path / "data"), retention_s=3600, busy_timeout_ms=200)


def test_history_buckets_availability_and_latency(store: ProbeStore) -> None:
    base = time.time() // 60 * 60 - 600
    rows = [result("a", base + i, latency=10.0 + i) for i in range(4)]
    rows += [result("b", base + i, "offline" if i < 3 else "online") for i in range(4)]
    rows += [result("a", base + 60 + i, "degraded", latency=6000.0) for i in range(2)]
    assert store.record(rows)
    history, source = store.history(base, base + 120, 60)
    assert source == "sqlite"
    first_a = history[(history.backend == "a")].iloc[0]
    assert first_a.samples == 4 and first_a.availability == 1.0
    assert first_a.latency_ms == pytest.approx(11.5) and first_a.latency_max_ms == 13.0
    assert first_a.vram_bytes == 1500 and first_a.loaded == 1
    first_b = history[(history.backend == "b")].iloc[0]
    assert first_b.availability == 0.25 and first_b.offline == 3
    second_a = history[(history.backend == "a")].iloc[1]
    assert second_a.degraded == 2
    assert str(history["time"].dt.tz) == "UTC"
    availability, _ = store.availability(base, base + 120)
    by_name = availability.set_index("backend")
    assert by_name.loc["a", "availability"] == 1.0 and by_name.loc["a", "samples"] == 6
    assert by_name.loc["b", "availability"] == 0.25


def test_retention_prunes_old_rows(store: ProbeStore) -> None:
    now = time.time()
    store.record([result("a", now - 7200), result("a", now - 10)])
    store.prune_now()
    history, _ = store.history(now - 10_000, now, 60)
    assert int(history["samples"].sum()) == 1


def test_recreates_the_file_and_tables_when_deleted_while_running(store: ProbeStore) -> None:
    now = time.time()
    assert store.record([result("a", now - 5)])
    for suffix in ("", "-wal", "-shm"):
        Path(str(store.db.path) + suffix).unlink(missing_ok=True)
    assert store.record([result("a", now)])
    history, source = store.history(now - 60, now + 1, 60)
    assert source == "sqlite"
    assert int(history["samples"].sum()) == 1  # the old rows went with the file; new ones are written
    assert store.health().ok


def test_recreates_the_file_when_deleted_under_another_threads_connection(store: ProbeStore) -> None:
    import threading

    now = time.time()
    store.record([result("a", now - 5)])
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.append(int(store.history(now - 60, now + 1, 60)[0]["samples"]
                                                              .sum())))
    reader.start()
    reader.join()
    store.db.path.unlink()
    store.record([result("a", now)])  # the writer recreates the file
    history, _ = store.history(now - 60, now + 1, 60)
    assert seen == [1]
    assert int(history["samples"].sum()) == 1


def test_a_locked_file_buffers_rows_and_writes_them_when_released(store: ProbeStore) -> None:
    now = time.time()
    store.record([result("a", now - 3)])
    other = sqlite3.connect(store.db.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert store.record([result("a", now - 2)]) is False
        # A short busy timeout on the writer's connection, not the database's default 5 s.
        assert store._conn().execute("PRAGMA busy_timeout").fetchone()[0] == store.busy_timeout_ms < 5000
        assert store.record([result("a", now - 1)]) is False
        health = store.health()
        assert not health.ok and health.pending_rows == 2 and "locked" in health.last_error
        history, _ = store.history(now - 60, now + 1, 60)  # readers still work (WAL)
        assert int(history["samples"].sum()) >= 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.record([result("a", now)])
    assert store.health().ok and store.health().pending_rows == 0
    history, _ = store.history(now - 60, now + 1, 60)
    assert int(history["samples"].sum()) == 4


def test_an_unreadable_file_falls_back_to_memory_then_recovers(store: ProbeStore) -> None:
    now = time.time()
    store.record([result("a", now - 2), result("b", now - 2, "offline")])
    store.db.close()
    for suffix in ("-wal", "-shm"):
        Path(str(store.db.path) + suffix).unlink(missing_ok=True)
    store.db.path.write_bytes(b"this is not a database at all" * 100)
    history, source = store.history(now - 60, now + 1, 60)
    assert source == "memory"
    assert set(history["backend"]) == {"a", "b"}
    assert store.record([result("a", now - 1)]) is False
    store.db.path.unlink()
    assert store.record([result("a", now)])
    history, source = store.history(now - 60, now + 1, 60)
    assert source == "sqlite" and int(history["samples"].sum()) == 2  # the buffered row and the new one


def test_generation_counter_turns_counters_into_deltas(store: ProbeStore) -> None:
    registry = CollectorRegistry()
    requests = Counter("ai_requests_total", "r", ["status", "model"], registry=registry)
    duration = Histogram("ai_request_duration_seconds", "d", ["model"], registry=registry)
    tokens = Counter("ai_tokens_total", "t", ["model", "kind"], registry=registry)
    counter = GenerationCounter(registry)
    assert counter.deltas(1.0) == []
    for status, seconds in (("success", 2.0), ("success", 4.0), ("error", 0.5)):
        requests.labels(status=status, model="m").inc()
        duration.labels(model="m").observe(seconds)
    tokens.labels(model="m", kind="completion").inc(30)
    rows = {(r[1], r[2]): r for r in counter.deltas(60.0)}
    assert rows[("m", "success")][3] == 2 and rows[("m", "error")][3] == 1
    assert rows[("m", "success")][4] + rows[("m", "error")][4] == pytest.approx(6.5)
    assert counter.deltas(120.0) == []  # nothing new
    requests.labels(status="error", model="m").inc()
    assert [(r[1], r[2], r[3]) for r in counter.deltas(180.0)] == [("m", "error", 1.0)]
    base = time.time() // 60 * 60 - 600
    store.record([], [(base, "m", "success", 2.0, 6.0, 20.0), (base + 1, "m", "error", 1.0, 0.5, 10.0),
                      (base + 120, "m", "error", 1.0, 0.1, 0.0)])
    frame, source = store.generation_history(base, base + 200, 60)
    assert source == "sqlite"
    assert frame["requests"].tolist() == [3.0, 1.0] and frame["errors"].tolist() == [1.0, 1.0]



def test_a_new_file_read_by_another_process_while_the_dashboard_opens_it(tmp_path: Path) -> None:
    """Switching a file to WAL needs it alone; SQLite refuses at once, without its busy timeout, while another
    connection writes to it (the CLI, another thread at start-up): the switch waits like any statement."""
    import threading

    path = tmp_path / "data" / "dashboard.sqlite3"
    path.parent.mkdir()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (0)")  # a write transaction holds the file
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    db = Database.in_dir(path.parent)
    db.execute("INSERT INTO t VALUES (1)")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 2
    other.close()
