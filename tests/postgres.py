"""A throwaway PostgreSQL cluster from Debian's packages (``make test`` installs ``postgresql``), for the tests
that run the job store on PostgreSQL as well as on SQLite.

``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin`` in a fresh temporary directory, on a free
loopback port, trust authentication, fsync off. PostgreSQL refuses to run as root (CI runs ``make test`` as
root), so as root the cluster runs as the unprivileged ``nobody`` through ``setpriv``. ``restart()`` restarts it
under a running job; ``database()`` gives each test its own empty database.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"


def postgres_bin() -> Path | None:
    """The newest installed server's bin directory (Debian keeps each major version apart)."""
    found = sorted(Path(p) for p in glob.glob(BIN_GLOB) if (Path(p) / "pg_ctl").exists())
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresCluster:
    """``with PostgresCluster() as pg: pg.database()`` is a URL of a new database on a new server."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL is not installed (make test installs Debian's postgresql package)")
        self.bin = bin_dir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dashboard-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                             "--inh-caps=-all"]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}
        return subprocess.run([*self._as_user, *args], cwd=self.root, env=env, capture_output=True, text=True,
                              timeout=120, check=check)

    def start(self) -> PostgresCluster:
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        done = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                         "-w", "-t", "60", "start", check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n{self.tail()}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        """Stop (every connection is cut) and start again on the same port, like a database failover."""
        self.stop("fast")
        self.start()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text()[-chars:]
        except OSError:
            return ""

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        """A new empty database's URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def reopen(store: object) -> object:
    """A second handle on the same job store (SQLite file or PostgreSQL database), as another process opens it."""
    from services.db import Database

    if isinstance(store, Database):
        return Database(store.path)
    from services.db_postgres import PostgresDatabase

    return PostgresDatabase(store.url)  # type: ignore[attr-defined]
