"""The stores under the dashboard: the embedded SQLite file under the data directory, and PostgreSQL for
several dashboard processes.

``Database`` is one SQLite file (``dashboard.sqlite3``); WAL mode lets the wall screen read while a job
writes; one connection per thread, since sqlite3 connections must not cross threads. Every module owns its
tables and creates them with ``ensure_schema``.

The job managers (batches, pulls) talk to a ``Store``: that same SQLite file by default, or PostgreSQL when
``DASHBOARD_DATABASE_URL`` is set (``services.db_postgres``), so that several dashboard processes share one
queue. Their SQL is written once, for both: ``?`` placeholders, ``DOUBLE PRECISION`` for times, the
database's own clock through ``now_sql`` (leases compare against it, so hosts need not agree on the time).
A database that does not answer (restarting, unreachable, locked) raises ``StoreUnavailable``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from services.errors import StoreUnavailable

DB_FILENAME = "dashboard.sqlite3"
BUSY_TIMEOUT_S = 5.0


class Cursor(Protocol):
    """What ``execute`` returns on either database: rows by name and by position."""

    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Transaction(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class Store(Protocol):
    """The job managers' database: SQLite (``Database``) or PostgreSQL (``PostgresDatabase``)."""

    dialect: str
    now_sql: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def transaction(self) -> Any: ...
    def ensure_schema(self, statements: Sequence[str],
                      added_columns: Mapping[str, Mapping[str, str]] | None = None) -> None: ...
    def insert_many(self, tx: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None: ...
    def describe(self) -> str: ...
    def close(self) -> None: ...


def _unavailable(exc: sqlite3.OperationalError) -> BaseException:
    """A locked or busy file is a passing state (another process writes); anything else is a real error."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text or "unable to open" in text or "disk i/o" in text:
        return StoreUnavailable(f"the SQLite file is not usable just now ({exc})")
    return exc


def _use_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (readers never wait for the writer), once: the mode is kept in the file.

    Switching needs the file to itself, and SQLite answers "locked" at once, without its busy timeout, while
    another thread or process holds it (several threads open the file together when the server starts), so the
    switch is retried for as long as any other statement would wait."""
    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise _unavailable(exc) from exc
            time.sleep(0.02)


class Database:
    """A thread-safe handle on the SQLite file: ``with db.transaction() as conn: conn.execute(...)``."""

    dialect = "sqlite"
    # Seconds since the epoch, from the database (the same clock for every process on this host).
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    @classmethod
    def in_dir(cls, data_dir: Path) -> Database:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / DB_FILENAME)

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or not self.path.exists():
            # Reopen when the file was deleted under us (the wall screen must recover by itself).
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            _use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.execute("ROLLBACK")
            raise _unavailable(exc) from exc

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        try:
            return self.connection().execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc

    def ensure_schema(self, statements: Sequence[str],
                      added_columns: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Create the tables, then add the columns a file made by an earlier release lacks, in one transaction."""
        with self.transaction() as conn:
            for statement in statements:
                conn.execute(statement)
            for table, columns in (added_columns or {}).items():
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})").fetchall()}
                for name, spec in columns.items():
                    if name not in present:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {spec}")

    def insert_many(self, tx: sqlite3.Connection, table: str, columns: Sequence[str],
                    rows: Iterable[Sequence[Any]]) -> None:
        marks = ", ".join("?" for _ in columns)
        tx.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def split_statements(script: str) -> list[str]:
    """A schema script as single statements (no semicolons inside the schemas' literals)."""
    return [part.strip() for part in script.split(";") if part.strip()]


def open_store(data_dir: Path, url: str = "", sqlite: Database | None = None) -> Store:
    """The job store: PostgreSQL at ``url`` when given, else the data directory's SQLite file."""
    if url:
        from services.db_postgres import PostgresDatabase

        return PostgresDatabase(url)
    return sqlite or Database.in_dir(data_dir)
