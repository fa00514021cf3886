"""A batch across a fleet: four stand-in backends, each its own process (so killing one is a real outage), with
4 slots each.

- Throughput: 2,000 rows, each request taking T seconds on a stand-in that serves 4 at once: the ideal is
  16/T rows per second; the figure is achieved / ideal (target >= 0.9).
- One backend killed (SIGKILL) halfway: every row written exactly once (none failed, none left), and the rest's
  throughput after the kill against their ideal 12/T (target >= 0.85).
- SQLite against PostgreSQL: the same batch with short requests (where the store's cost shows), ratio printed.

``python -m bench batch_fleet`` (``BENCH_FLEET_ROWS`` to change the row count).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from services.config import Backend
from services.db import Database, Store
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
from services.studio.batch_store import LaneSpec
from services.studio.tabular import Table, read_table
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore

ROOT = Path(__file__).resolve().parents[1]
REPLY = "Une robe élégante et fluide, parfaite pour vos soirées."
ROWS = int(os.environ.get("BENCH_FLEET_ROWS", "2000"))
BACKENDS = 4
SLOTS = 4


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandinProcess:
    """``python -m tests.standin`` on its own port, configured over HTTP."""

    def __init__(self, request_time_s: float) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.standin", "--port", str(self.port),
                                      "--load-delay", "0"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"{self.url}/_standin/config", timeout=2, json={
                    "parallel": SLOTS, "request_time_s": request_time_s, "tokens_per_second": 1e6,
                    "replies": {"Product data": REPLY}})
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def table(rows: int) -> Table:
    return read_table(("type;nom\n" + "".join(f"robe;Robe {i:05d}\n" for i in range(rows))).encode(), "fleet.csv")


def run(store: Store, standins: list[StandinProcess], rows: int, *, kill_at: int | None = None) -> dict[str, float]:
    """One batch over the stand-ins; with ``kill_at``, the first stand-in is killed once that many rows are done."""
    clients = {f"b{i}": OllamaClient(Backend(name=f"b{i}", kind="ollama", url=s.url), stall_timeout_s=30,
                                      connect_timeout_s=2) for i, s in enumerate(standins)}
    manager = BatchManager(store, clients.__getitem__, backoff_base_s=0.2, backoff_max_s=2.0)
    with tempfile.TemporaryDirectory() as tmp:
        template = TemplateStore(Path(tmp)).latest("description")
    job_id = manager.create_job(table(rows), template=template, model="llama3.2:1b", params=TaskParams(),
                                mapping={"product_type": "type", "name": "nom"}, owner="bench",
                                lanes=[LaneSpec(name, SLOTS) for name in clients])
    started = time.perf_counter()
    manager.start(job_id)
    killed_at = None
    done_at_kill = 0
    if kill_at is not None:
        while manager.progress(job_id).done < kill_at:
            time.sleep(0.05)
        standins[0].kill()
        killed_at = time.perf_counter()
        done_at_kill = manager.progress(job_id).done
    manager.wait(job_id)
    ended = time.perf_counter()
    progress = manager.progress(job_id)
    frame = manager.results_frame(job_id)
    once = int(frame["nom"].nunique()) == rows and len(frame) == rows
    manager.shutdown()
    for client in clients.values():
        client.close()
    return {"elapsed": ended - started, "done": progress.done, "failed": progress.failed,
            "left": progress.pending + progress.running, "once": float(once), "attempts": progress.attempts,
            "after_kill_s": ended - killed_at if killed_at else 0.0, "done_after_kill": progress.done - done_at_kill}


def throughput(request_time_s: float = 0.5) -> None:
    standins = [StandinProcess(request_time_s) for _ in range(BACKENDS)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(Database.in_dir(Path(tmp)), standins, ROWS)
        ideal = BACKENDS * SLOTS / request_time_s
        achieved = result["done"] / result["elapsed"]
        print(f"fleet throughput: {ROWS} rows on {BACKENDS} backends x {SLOTS} slots, T={request_time_s}s: "
              f"{result['elapsed']:.1f} s, {achieved:.1f} rows/s vs ideal {ideal:.1f} -> ratio {achieved / ideal:.3f} "
              f"(target >= 0.9); done {result['done']:.0f}, failed {result['failed']:.0f}")
    finally:
        for standin in standins:
            standin.stop()


def one_killed(request_time_s: float = 0.5) -> None:
    standins = [StandinProcess(request_time_s) for _ in range(BACKENDS)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(Database.in_dir(Path(tmp)), standins, ROWS, kill_at=ROWS // 2)
        ideal = (BACKENDS - 1) * SLOTS / request_time_s
        rest = result["done_after_kill"] / result["after_kill_s"]
        print(f"one backend killed at {ROWS // 2} rows: done {result['done']:.0f}, failed {result['failed']:.0f}, "
              f"left {result['left']:.0f}, each row once: {bool(result['once'])}, requests {result['attempts']:.0f} "
              f"for {ROWS} rows")
        print(f"  the other {BACKENDS - 1} after the kill: {rest:.1f} rows/s vs their ideal {ideal:.1f} -> ratio "
              f"{rest / ideal:.3f} (target >= 0.85)")
    finally:
        for standin in standins:
            standin.stop()


def sqlite_vs_postgres(request_time_s: float = 0.05, rows: int = ROWS) -> None:
    from tests.postgres import PostgresCluster, postgres_bin

    if postgres_bin() is None:
        print("sqlite vs postgresql: skipped (PostgreSQL is not installed; make test installs it)")
        return
    from services.db_postgres import PostgresDatabase

    standins = [StandinProcess(request_time_s) for _ in range(BACKENDS)]
    try:
        with tempfile.TemporaryDirectory() as tmp, PostgresCluster() as cluster:
            lite = run(Database.in_dir(Path(tmp)), standins, rows)
            pg_store = PostgresDatabase(cluster.database())
            pg = run(pg_store, standins, rows)
            pg_store.close()
        lite_rate, pg_rate = lite["done"] / lite["elapsed"], pg["done"] / pg["elapsed"]
        ideal = BACKENDS * SLOTS / request_time_s
        print(f"store: {rows} rows, T={request_time_s}s (ideal {ideal:.0f} rows/s): SQLite {lite_rate:.1f} rows/s, "
              f"PostgreSQL {pg_rate:.1f} rows/s -> PostgreSQL / SQLite = {pg_rate / lite_rate:.2f}")
    finally:
        for standin in standins:
            standin.stop()


def main() -> None:
    throughput()
    one_killed()
    sqlite_vs_postgres()


if __name__ == "__main__":
    main()
