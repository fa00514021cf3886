"""The probe history in the embedded SQLite file: what the monitoring charts read when there is no Prometheus.

Two tables (owned here, created with ``CREATE TABLE IF NOT EXISTS``): ``probe_samples`` (one row per
backend per probe round) and ``generation_deltas`` (what the dashboard's own generations added to the
``ai_*`` counters since the previous round, so requests per minute, error ratio and top models work
without Prometheus). Old rows are pruned after ``retention_s``.

The wall screen runs unattended, so the store recovers by itself: rows that cannot be written (file
locked, disk full, file deleted) wait in a bounded in-memory buffer and are written on the next round;
a deleted file is recreated with its tables; reads that fail fall back to the recent rows kept in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prometheus_client import CollectorRegistry

from services.db import Database
from services.monitoring.probe import ProbeResult

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS probe_samples (
    ts REAL NOT NULL, backend TEXT NOT NULL, status TEXT NOT NULL, up INTEGER NOT NULL,
    latency_ms REAL, version_ms REAL, tags_ms REAL, ps_ms REAL, installed INTEGER, loaded INTEGER,
    vram_bytes INTEGER, version TEXT, error TEXT, canary_ttft_ms REAL, canary_tps REAL
);
CREATE INDEX IF NOT EXISTS probe_samples_ts ON probe_samples (ts, backend);
CREATE TABLE IF NOT EXISTS generation_deltas (
    ts REAL NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL,
    requests REAL NOT NULL, duration_s REAL NOT NULL, completion_tokens REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS generation_deltas_ts ON generation_deltas (ts);
"""
PROBE_COLUMNS = ("ts", "backend", "status", "up", "latency_ms", "version_ms", "tags_ms", "ps_ms", "installed",
                 "loaded", "vram_bytes", "version", "error", "canary_ttft_ms", "canary_tps")
GENERATION_COLUMNS = ("ts", "model", "status", "requests", "duration_s", "completion_tokens")
HISTORY_COLUMNS = ["time", "backend", "samples", "availability", "latency_ms", "latency_max_ms", "loaded",
                   "vram_bytes", "canary_tps", "offline", "degraded"]
GENERATION_HISTORY_COLUMNS = ["time", "model", "requests", "errors", "duration_s", "completion_tokens"]
STATUS_RANK = {"online": 0, "degraded": 1, "offline": 2}


def probe_row(result: ProbeResult) -> tuple[Any, ...]:
    return (result.at, result.backend, result.status, int(result.up), result.latency_ms, result.version_ms,
            result.tags_ms, result.ps_ms, result.installed_models, len(result.loaded) if result.up else None,
            result.vram_bytes if result.up else None, result.version, result.error[:500], result.canary_ttft_ms,
            result.canary_tps)


class GenerationCounter:
    """Turns the process's cumulative ``ai_*`` counters into per-round deltas (they reset with the process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._last: dict[tuple[str, str], tuple[float, float, float]] = {}

    def _current(self) -> dict[tuple[str, str], tuple[float, float, float]]:
        requests: dict[tuple[str, str], float] = {}
        durations: dict[str, float] = {}
        counts: dict[str, float] = {}
        tokens: dict[str, float] = {}
        for metric in self._registry.collect():
            for s in metric.samples:
                model = s.labels.get("model", "")
                if s.name == "ai_requests_total":
                    requests[(model, s.labels.get("status", ""))] = s.value
                elif s.name == "ai_request_duration_seconds_sum":
                    durations[model] = s.value
                elif s.name == "ai_request_duration_seconds_count":
                    counts[model] = s.value
                elif s.name == "ai_tokens_total" and s.labels.get("kind") == "completion":
                    tokens[model] = s.value
        out: dict[tuple[str, str], tuple[float, float, float]] = {}
        for (model, status), value in requests.items():
            # Durations and tokens have no status label: share them out by this status's share of requests.
            share = value / counts[model] if counts.get(model) else 0.0
            out[(model, status)] = (value, durations.get(model, 0.0) * share, tokens.get(model, 0.0) * share)
        return out

    def deltas(self, at: float) -> list[tuple[Any, ...]]:
        rows = []
        current = self._current()
        for key, (requests, duration, tokens) in current.items():
            last = self._last.get(key, (0.0, 0.0, 0.0))
            delta = (requests - last[0], duration - last[1], tokens - last[2])
            if delta[0] < 0:  # counter reset
                delta = (requests, duration, tokens)
            if delta[0] > 0:
                rows.append((at, key[0], key[1], delta[0], max(delta[1], 0.0), max(delta[2], 0.0)))
        self._last = current
        return rows


@dataclass(frozen=True)
class StoreHealth:
    ok: bool
    pending_rows: int
    last_error: str = ""
    last_error_at: float | None = None


class ProbeStore:
    """Writes rounds (one writer thread) and answers the charts' range queries (any thread)."""

    def __init__(self, db: Database, *, retention_s: float, busy_timeout_ms: int = 1000,
                 max_pending: int = 20_000, memory_rows: int = 20_000) -> None:
        self.db = db
        self.retention_s = retention_s
        self.busy_timeout_ms = busy_timeout_ms
        self._pending_probe: deque[tuple[Any, ...]] = deque(maxlen=max_pending)
        self._pending_gen: deque[tuple[Any, ...]] = deque(maxlen=max_pending)
        self._recent_probe: deque[tuple[Any, ...]] = deque(maxlen=memory_rows)
        self._recent_gen: deque[tuple[Any, ...]] = deque(maxlen=memory_rows)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._last_prune = 0.0
        self._last_error = ""
        self._last_error_at: float | None = None

    # ---- connection that survives the file being deleted or replaced -----------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = self.db.connection()
        try:
            inode = os.stat(self.db.path).st_ino
        except FileNotFoundError:
            inode = None
        if getattr(self._local, "inode", None) != inode or getattr(self._local, "conn", None) is not conn:
            if getattr(self._local, "inode", None) is not None and self._local.inode != inode:
                # Someone deleted or replaced the file: our connection points at the old one.
                self.db.close()
                conn = self.db.connection()
                inode = os.stat(self.db.path).st_ino
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            conn.executescript(SCHEMA)
            self._local.inode, self._local.conn = inode, conn
        return conn

    def _forget_connection(self) -> None:
        self._local.inode = None
        self._local.conn = None
        self.db.close()

    # ---- writing -------------------------------------------------------------------------------
    def record(self, results: Iterable[ProbeResult], generation_rows: Sequence[tuple[Any, ...]] = ()) -> bool:
        """Queue one round and write everything pending; False (and rows kept) if the file is unusable."""
        rows = [probe_row(r) for r in results]
        with self._lock:
            self._pending_probe.extend(rows)
            self._pending_gen.extend(generation_rows)
            self._recent_probe.extend(rows)
            self._recent_gen.extend(generation_rows)
            return self._flush()

    def _flush(self) -> bool:
        probe_rows, gen_rows = list(self._pending_probe), list(self._pending_gen)
        for attempt in range(2):
            try:
                conn = self._conn()
                with _transaction(conn):
                    if probe_rows:
                        conn.executemany(f"INSERT INTO probe_samples ({', '.join(PROBE_COLUMNS)}) VALUES "
                                         f"({', '.join('?' * len(PROBE_COLUMNS))})", probe_rows)
                    if gen_rows:
                        conn.executemany(f"INSERT INTO generation_deltas ({', '.join(GENERATION_COLUMNS)}) "
                                         f"VALUES ({', '.join('?' * len(GENERATION_COLUMNS))})", gen_rows)
                self._pending_probe.clear()
                self._pending_gen.clear()
                if self._last_error:
                    logger.info("Probe history is writable again; %d buffered rows written.", len(probe_rows))
                self._last_error, self._last_error_at = "", None
                self._maybe_prune(conn)
                return True
            except sqlite3.Error as exc:
                if attempt == 0 and _recoverable(exc):
                    self._forget_connection()
                    continue
                if not self._last_error:
                    logger.warning("Probe history not writable (%s); keeping %d rows in memory.", exc,
                                   len(self._pending_probe))
                self._last_error, self._last_error_at = str(exc), time.time()
                return False
        return False

    def _maybe_prune(self, conn: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._last_prune < 60:
            return
        self._last_prune = now
        cutoff = now - self.retention_s
        with _transaction(conn):
            conn.execute("DELETE FROM probe_samples WHERE ts < ?", (cutoff,))
            conn.execute("DELETE FROM generation_deltas WHERE ts < ?", (cutoff,))

    def prune_now(self) -> None:
        with self._lock:
            self._last_prune = 0.0
            self._maybe_prune(self._conn())

    def health(self) -> StoreHealth:
        with self._lock:
            return StoreHealth(not self._last_error, len(self._pending_probe), self._last_error, self._last_error_at)

    # ---- reading -------------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
        for attempt in range(2):
            try:
                return [tuple(r) for r in self._conn().execute(sql, params).fetchall()]
            except sqlite3.Error as exc:
                if attempt == 0 and _recoverable(exc):
                    self._forget_connection()
                    continue
                logger.warning("Probe history not readable (%s); charting the rows kept in memory.", exc)
                return None
        return None

    def history(self, start: float, end: float, bucket_s: float) -> tuple[pd.DataFrame, str]:
        """Per backend per time bucket: availability, latency, load. Returns (frame, source)."""
        bucket_s = max(float(bucket_s), 1.0)
        rows = self._query(
            """SELECT CAST(ts / ? AS INTEGER) AS b, backend, COUNT(*), AVG(up), AVG(latency_ms), MAX(latency_ms),
                      MAX(loaded), MAX(vram_bytes), AVG(canary_tps),
                      SUM(status = 'offline'), SUM(status = 'degraded')
               FROM probe_samples WHERE ts >= ? AND ts <= ? GROUP BY b, backend ORDER BY b""",
            (bucket_s, start, end))
        source = "sqlite"
        if rows is None:
            rows, source = self._history_from_memory(start, end, bucket_s), "memory"
        frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
        frame["time"] = pd.to_datetime(frame["time"].astype("float64") * bucket_s, unit="s", utc=True)
        return frame, source

    def _history_from_memory(self, start: float, end: float, bucket_s: float) -> list[tuple[Any, ...]]:
        with self._lock:
            rows = [r for r in self._recent_probe if start <= r[0] <= end]
        if not rows:
            return []
        raw = pd.DataFrame(rows, columns=PROBE_COLUMNS)
        raw["b"] = (raw["ts"] // bucket_s).astype("int64")
        grouped = raw.groupby(["b", "backend"], sort=True).agg(
            samples=("ts", "size"), availability=("up", "mean"), latency_ms=("latency_ms", "mean"),
            latency_max_ms=("latency_ms", "max"), loaded=("loaded", "max"), vram_bytes=("vram_bytes", "max"),
            canary_tps=("canary_tps", "mean"), offline=("status", lambda s: int((s == "offline").sum())),
            degraded=("status", lambda s: int((s == "degraded").sum())),
        ).reset_index()
        return [tuple(r) for r in grouped.itertuples(index=False)]

    def availability(self, start: float, end: float) -> tuple[pd.DataFrame, str]:
        """Per backend over the range: share of probes that answered, and mean/max latency."""
        history, source = self.history(start, end, max(end - start, 1.0) + 1.0)
        if history.empty:
            return pd.DataFrame(columns=["backend", "samples", "availability", "latency_ms", "latency_max_ms"]), source
        weighted = history.assign(up=history["availability"] * history["samples"],
                                  lat=history["latency_ms"].fillna(0) * history["samples"])
        out = weighted.groupby("backend").agg(samples=("samples", "sum"), up=("up", "sum"), lat=("lat", "sum"),
                                              latency_max_ms=("latency_max_ms", "max")).reset_index()
        out["availability"] = out["up"] / out["samples"]
        out["latency_ms"] = out["lat"] / out["samples"]
        return out[["backend", "samples", "availability", "latency_ms", "latency_max_ms"]], source

    def generation_history(self, start: float, end: float, bucket_s: float) -> tuple[pd.DataFrame, str]:
        """The dashboard's own generations per model per bucket: requests, errors, time, tokens."""
        bucket_s = max(float(bucket_s), 1.0)
        rows = self._query(
            """SELECT CAST(ts / ? AS INTEGER) AS b, model, SUM(requests), SUM(CASE WHEN status = 'error'
                      THEN requests ELSE 0 END), SUM(duration_s), SUM(completion_tokens)
               FROM generation_deltas WHERE ts >= ? AND ts <= ? GROUP BY b, model ORDER BY b""",
            (bucket_s, start, end))
        source = "sqlite"
        if rows is None:
            source = "memory"
            with self._lock:
                raw = [r for r in self._recent_gen if start <= r[0] <= end]
            acc: dict[tuple[int, str], list[float]] = {}
            for ts, model, status, requests, duration, tokens in raw:
                slot = acc.setdefault((int(ts // bucket_s), model), [0.0, 0.0, 0.0, 0.0])
                slot[0] += requests
                slot[1] += requests if status == "error" else 0.0
                slot[2] += duration
                slot[3] += tokens
            rows = [(b, m, *v) for (b, m), v in sorted(acc.items())]
        frame = pd.DataFrame(rows, columns=GENERATION_HISTORY_COLUMNS)
        frame["time"] = pd.to_datetime(frame["time"].astype("float64") * bucket_s, unit="s", utc=True)
        return frame, source


class _transaction:
    """BEGIN IMMEDIATE / COMMIT on a connection in autocommit mode (as ``services.db`` opens them)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")


def _recoverable(exc: sqlite3.Error) -> bool:
    """Errors a fresh connection (and recreated tables) can fix, unlike a lock held by someone else."""
    text = str(exc).lower()
    return any(s in text for s in ("no such table", "readonly", "disk i/o", "unable to open", "not a database",
                                   "closed"))
