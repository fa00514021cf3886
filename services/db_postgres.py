"""PostgreSQL behind the same ``Store`` interface as the SQLite file, for several dashboard processes.

Selected by ``DASHBOARD_DATABASE_URL`` (``postgresql://user:password@host:5432/dashboard``). psycopg 3 with a
small connection pool (``psycopg_pool``): each statement borrows a connection, which is checked before use,
so a database restarted under a running job costs the statements in flight (``StoreUnavailable``, which the
job managers retry), not the process. The job managers' SQL is written once, with ``?`` placeholders; they are
rewritten to psycopg's ``%s`` here (literals and quoted names left alone). Schema changes run under an
advisory lock, so two processes starting at once do not race on ``CREATE TABLE IF NOT EXISTS``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from services.errors import ConfigError, StoreUnavailable

SCHEMA_LOCK = 7_140_214  # pg_advisory_xact_lock key of schema changes
POOL_MAX = 12
CONNECT_TIMEOUT_S = 5.0
BORROW_TIMEOUT_S = 10.0


@functools.lru_cache(maxsize=512)
def translate(sql: str, with_params: bool) -> str:
    """``?`` placeholders to ``%s`` outside quotes; a literal ``%`` doubled when parameters are bound.

    >>> translate("SELECT '?', x FROM t WHERE a = ? AND b LIKE 'a%'", True)
    "SELECT '?', x FROM t WHERE a = %s AND b LIKE 'a%%'"
    >>> translate("SELECT 5 % 2", False)
    'SELECT 5 % 2'
    """
    out: list[str] = []
    quote = ""
    for ch in sql:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        if ch == "%" and with_params:
            out.append("%%")
            continue
        out.append(ch)
    return "".join(out)


class Row:
    """One result row, by column name and by position (like ``sqlite3.Row``)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: Mapping[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key] if isinstance(key, int) else self._values[self._index[key]]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _row_factory(cursor: Any) -> Any:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


class Result:
    """A statement's rows, fetched before its connection went back to the pool."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Row]:
        return self._rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)


def _run(conn: psycopg.Connection, sql: str, params: Sequence[Any]) -> Result:
    with conn.cursor(row_factory=_row_factory) as cur:
        cur.execute(translate(sql, bool(params)), tuple(params) if params else None)
        rows = cur.fetchall() if cur.description else []
        return Result(rows, cur.rowcount)


class _Tx:
    """The connection of an open transaction, with the ``execute``/``executemany`` of the SQLite one."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        return _run(self.conn, sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(translate(sql, True), rows)


def _where(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}{parts.path or ''}"


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database; the same methods as ``services.db.Database``."""

    dialect = "postgresql"
    now_sql = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"

    def __init__(self, url: str, *, max_size: int = POOL_MAX, wait_s: float = CONNECT_TIMEOUT_S) -> None:
        if urlsplit(url).scheme not in ("postgresql", "postgres"):
            raise ConfigError("DASHBOARD_DATABASE_URL must start with postgresql://")
        self.where = _where(url)
        self.url = url  # for a second handle on the same database (never logged: it may hold a password)
        self.pool = ConnectionPool(url, min_size=1, max_size=max_size, open=False, timeout=BORROW_TIMEOUT_S,
                                   kwargs={"autocommit": True, "connect_timeout": int(max(wait_s, 1))},
                                   check=ConnectionPool.check_connection, name="dashboard-jobs")
        self.pool.open(wait=False)
        try:
            self.pool.wait(timeout=wait_s)
        except PoolTimeout:
            self.pool.close()
            raise ConfigError(f"PostgreSQL at {self.where} (DASHBOARD_DATABASE_URL) did not accept a connection "
                              f"within {wait_s:g} s; check the URL, the password and that the server runs.") from None

    def describe(self) -> str:
        return f"PostgreSQL at {self.where}"

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.where} is not answering ({_first_line(exc)})") from exc
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.where}: {_first_line(exc)}") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        with self._connection() as conn:
            return _run(conn, sql, params)

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        with self._connection() as conn, conn.transaction():
            yield _Tx(conn)

    def ensure_schema(self, statements: Sequence[str],
                      added_columns: Mapping[str, Mapping[str, str]] | None = None) -> None:
        with self.transaction() as tx:
            tx.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
            for statement in statements:
                tx.execute(statement)
            for table, columns in (added_columns or {}).items():
                for name, spec in columns.items():
                    tx.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {spec}")

    def insert_many(self, tx: _Tx, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """COPY: a 100,000-row file goes in as one stream, not 100,000 statements."""
        with tx.conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        self.pool.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
