"""Batch jobs queued fairly, held by leases, shared by several dashboard processes on one database (SQLite and
PostgreSQL alike): at most N run at once, a clean stop hands over at once, a killed process is taken over only
after its lease expires, two processes starting at once never run one job twice, and progress never scans rows."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.db import Database, Store
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
from services.studio.tabular import Table, read_table
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.postgres import reopen
from tests.standin import StandinServer

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
FR_REPLY = "Une robe élégante et fluide, parfaite pour vos soirées."
MAPPING = {"product_type": "type", "name": "nom"}


def table(rows: int, prefix: int = 0) -> Table:
    body = "".join(f"robe;Robe {prefix}{i:04d}\n" for i in range(rows))
    return read_table(("type;nom\n" + body).encode(), f"file-{prefix}.csv")



def store_arg(store: Store) -> str:
    return str(store.path) if isinstance(store, Database) else store.url  # type: ignore[attr-defined]


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def requested(standin: StandinServer) -> Counter[str]:
    names: Counter[str] = Counter()
    for request in standin.state.requests_to("/api/chat"):
        names.update(re.findall(r"Robe \d{5}", request["body"]["messages"][-1]["content"]))
    return names


@pytest.fixture
def templates(tmp_path: Path) -> TemplateStore:
    return TemplateStore(tmp_path / "templates")


def new_job(manager: BatchManager, templates: TemplateStore, rows: int, owner: str, prefix: int = 0) -> str:
    return manager.create_job(table(rows, prefix), template=templates.latest("description"), model="llama3.2:1b",
                              backend="standin", params=TaskParams(), mapping=MAPPING, owner=owner, concurrency=2)


Make = Callable[..., BatchManager]


@pytest.fixture
def make(job_store: Store, client: OllamaClient) -> Iterator[Make]:
    """Dashboard processes on one database: each call is another process's manager (its own handle, holder)."""
    made: list[BatchManager] = []

    def new_manager(**options: object) -> BatchManager:
        manager = BatchManager(reopen(job_store), lambda _n: client, tick_s=0.1, **options)  # type: ignore[arg-type]
        made.append(manager)
        return manager

    yield new_manager
    for manager in made:
        manager.shutdown()


def test_at_most_n_run_and_the_queue_is_fair_between_people(make: Make, templates: TemplateStore,
                                                            standin: StandinServer) -> None:
    gate = threading.Event()

    def responder(body: dict) -> str:
        gate.wait(30)
        return FR_REPLY

    standin.state.responder = responder
    manager = make(max_running=1)
    jobs = {name: new_job(manager, templates, 2, owner, prefix) for prefix, (name, owner) in
            enumerate([("ann1", "ann"), ("ann2", "ann"), ("ann3", "ann"), ("bob1", "bob")], start=1)}
    for name in ("ann1", "ann2", "ann3", "bob1"):
        manager.start(jobs[name])
    assert manager.is_running(jobs["ann1"]) and not manager.is_running(jobs["ann2"])
    positions = {name: manager.progress(job_id).queue_position for name, job_id in jobs.items()}
    assert positions == {"ann1": None, "bob1": 1, "ann2": 2, "ann3": 3}  # bob does not wait behind all of ann's
    board = manager.board()
    assert [b.job.id for b in board] == [jobs[n] for n in ("ann1", "bob1", "ann2", "ann3")]
    assert [b.progress.state for b in board] == ["running", "queued", "queued", "queued"]
    gate.set()
    for job_id in jobs.values():
        assert manager.wait(job_id, 60)
    started = {name: manager.job(job_id).started_at for name, job_id in jobs.items()}
    assert sorted(started, key=started.get) == ["ann1", "bob1", "ann2", "ann3"]  # type: ignore[arg-type]
    assert all(manager.progress(j).done == 2 for j in jobs.values())


def test_two_processes_starting_at_once_run_each_job_once(make: Make, templates: TemplateStore,
                                                          standin: StandinServer) -> None:
    standin.state.configure(request_time_s=0.05, replies={"Product data": FR_REPLY})
    first, second = make(max_running=4), make(max_running=4)
    jobs = [new_job(first, templates, 6, "ann", prefix) for prefix in range(1, 5)]
    barrier = threading.Barrier(2)

    def start_all(manager: BatchManager) -> None:
        barrier.wait()
        for job_id in jobs:
            manager.start(job_id)

    threads = [threading.Thread(target=start_all, args=(m,)) for m in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for job_id in jobs:
        assert first.wait(job_id, 60) and second.wait(job_id, 60)
    assert requested(standin) == Counter({f"Robe {p}{i:04d}": 1 for p in range(1, 5) for i in range(6)})
    assert all(first.progress(j).state == "finished" and first.progress(j).done == 6 for j in jobs)


def test_a_clean_stop_hands_a_running_job_to_the_next_process_at_once(make: Make, templates: TemplateStore,
                                                                      standin: StandinServer) -> None:
    standin.state.configure(request_time_s=0.1, replies={"Product data": FR_REPLY})
    old = make(lease_ttl_s=600.0)
    job_id = new_job(old, templates, 20, "ann", 1)
    old.start(job_id)
    wait_for(lambda: old.progress(job_id).done >= 4)
    new = make(lease_ttl_s=600.0)  # a rolling restart: the new process starts while the old one runs
    assert new.resume_interrupted() == []  # the old process holds the job: nothing is taken, nothing "interrupted"
    assert new.is_running(job_id) and old.job(job_id).state == "running"
    old.shutdown()  # releases its lease
    assert new.resume_interrupted() == [job_id]  # at once, not after 600 s
    assert new.wait(job_id, 60)
    assert new.progress(job_id).done == 20
    assert requested(standin) == Counter({f"Robe 1{i:04d}": 1 for i in range(20)})


def test_a_killed_process_is_taken_over_only_after_its_lease_expires(make: Make, templates: TemplateStore,
                                                                     standin: StandinServer) -> None:
    standin.state.configure(request_time_s=0.1, replies={"Product data": FR_REPLY})
    old = make(lease_ttl_s=4.0)
    job_id = new_job(old, templates, 20, "ann", 1)
    old.start(job_id)
    wait_for(lambda: old.progress(job_id).done >= 4)
    old.shutdown(release=False)  # no clean stop: the lease runs out by itself
    new = make(lease_ttl_s=4.0)
    live = new.db.execute(f"SELECT CASE WHEN {new.leases.live_sql} THEN 1 ELSE 0 END AS live FROM batch_jobs "
                          "WHERE id = ?", (job_id,)).fetchone()["live"]
    if live:
        assert new.resume_interrupted() == []  # still held: another process does not touch it
    wait_for(lambda: new.runs_here(job_id) or job_id in new.resume_interrupted())
    assert new.wait(job_id, 60)
    assert new.progress(job_id).done == 20 and new.progress(job_id).failed == 0


def test_a_job_cancelled_in_another_process_stops_where_it_runs(make: Make, templates: TemplateStore,
                                                                standin: StandinServer) -> None:
    standin.state.configure(request_time_s=3.0, replies={"Product data": FR_REPLY})
    runner, other = make(), make()
    job_id = new_job(runner, templates, 10, "ann", 1)
    runner.start(job_id)
    wait_for(lambda: len(standin.state.requests_to("/api/chat")) == 2)
    other.cancel(job_id)
    assert runner.wait(job_id, 10)
    progress = other.progress(job_id)
    assert (progress.state, progress.pending, progress.running, progress.done) == ("cancelled", 10, 0, 0)


KILLED_RUNNER = """
import sys, time
from pathlib import Path
from services.config import Backend
from services.db import Database
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
target, url, job_id = sys.argv[1], sys.argv[2], sys.argv[3]
if target.startswith("postgresql"):
    from services.db_postgres import PostgresDatabase
    store = PostgresDatabase(target)
else:
    store = Database(Path(target))
client = OllamaClient(Backend(name="standin", kind="ollama", url=url))
manager = BatchManager(store, lambda _n: client, lease_ttl_s=2.0, tick_s=0.2)
manager.start(job_id)
while manager.progress(job_id).done < 5:
    time.sleep(0.02)
print("running", flush=True)
time.sleep(60)
"""


def test_a_process_killed_with_sigkill_mid_run_loses_no_row(job_store: Store, client: OllamaClient,
                                                            templates: TemplateStore, standin: StandinServer) -> None:
    standin.state.configure(request_time_s=0.1, replies={"Product data": FR_REPLY})
    manager = BatchManager(job_store, lambda _n: client, tick_s=0.1)
    job_id = new_job(manager, templates, 20, "ann", 1)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUNNER, store_arg(job_store), standin.url, job_id],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup at all: rows in flight stay "running", the lease stays
        proc.wait(10)
    done_before = {name for name, n in requested(standin).items() if n}
    wait_for(lambda: manager.runs_here(job_id) or job_id in manager.resume_interrupted())
    assert manager.wait(job_id, 60)
    progress = manager.progress(job_id)
    assert (progress.done, progress.failed, progress.running) == (20, 0, 0)
    frame = manager.results_frame(job_id)
    assert frame["ai_status"].tolist() == ["done"] * 20
    counts = requested(standin)
    assert set(counts) == {f"Robe 1{i:04d}" for i in range(20)}
    # Only the rows the killed process had in flight were sent twice; at most its 2 slots.
    assert sum(n - 1 for n in counts.values()) <= 2 and len(done_before) >= 5
    manager.shutdown()


def test_progress_and_the_board_never_read_the_rows_of_a_large_job(tmp_path: Path, client: OllamaClient,
                                                                   templates: TemplateStore) -> None:
    db = Database.in_dir(tmp_path)
    manager = BatchManager(db, lambda _n: client)
    job_id = new_job(manager, templates, 20_000, "ann", 1)
    statements: list[str] = []
    db.connection().set_trace_callback(statements.append)
    progress = manager.progress(job_id)
    manager.board()
    manager.rows(job_id, limit=200)
    db.connection().set_trace_callback(None)
    assert (progress.total, progress.pending) == (20_000, 20_000)
    row_reads = [s for s in statements if "batch_rows" in s]
    assert len(row_reads) == 1 and "LIMIT 200" in row_reads[0]  # only the page of 200 rows the table shows


def test_a_job_from_before_the_counters_is_counted_once_and_resumes(tmp_path: Path, client: OllamaClient,
                                                                    templates: TemplateStore,
                                                                    standin: StandinServer) -> None:
    """A data directory from the previous release: its running job is counted, taken over and finished."""
    import json
    import sqlite3

    standin.state.configure(replies={"Product data": FR_REPLY})
    conn = sqlite3.connect(tmp_path / "dashboard.sqlite3")
    conn.executescript(
        "CREATE TABLE batch_jobs (id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL, owner TEXT"
        " NOT NULL, source_name TEXT NOT NULL, task TEXT NOT NULL, template_json TEXT NOT NULL, model TEXT NOT NULL,"
        " backend TEXT NOT NULL, params_json TEXT NOT NULL, mapping_json TEXT NOT NULL, columns_json TEXT NOT NULL,"
        " concurrency INTEGER NOT NULL, state TEXT NOT NULL, total INTEGER NOT NULL, message TEXT NOT NULL DEFAULT"
        " ''); CREATE TABLE batch_rows (job_id TEXT NOT NULL, idx INTEGER NOT NULL, data_json TEXT NOT NULL, status"
        " TEXT NOT NULL, output TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL"
        " DEFAULT 0, duration_s REAL, tokens INTEGER, template_ref TEXT NOT NULL DEFAULT '', updated_at REAL,"
        " repairs TEXT NOT NULL DEFAULT '', PRIMARY KEY (job_id, idx));")
    template = templates.latest("description")
    conn.execute("INSERT INTO batch_jobs VALUES ('old', 1, 1, 'ann', 'old.csv', 'description', ?, 'llama3.2:1b',"
                 " 'standin', ?, ?, ?, 2, 'running', 4, '')",
                 (json.dumps(template.as_dict()), json.dumps(TaskParams().as_dict()), json.dumps(MAPPING),
                  json.dumps(["type", "nom"])))
    for idx, status in enumerate(["done", "failed", "running", "pending"]):
        conn.execute("INSERT INTO batch_rows (job_id, idx, data_json, status, attempts, duration_s) VALUES "
                     "('old', ?, ?, ?, 1, 2.0)", (idx, json.dumps({"type": "robe", "nom": f"Robe 1000{idx}"}), status))
    conn.commit()
    conn.close()
    manager = BatchManager(Database.in_dir(tmp_path), lambda _n: client, tick_s=0.1)
    before = manager.progress("old")
    assert (before.done, before.failed, before.running, before.pending, before.attempts) == (1, 1, 0, 2, 4)
    assert manager.resume_interrupted() == ["old"]  # its process is gone (no lease): continued at once
    assert manager.wait("old", 30)
    after = manager.progress("old")
    assert (after.done, after.failed, after.pending, after.state) == (3, 1, 0, "finished")
    assert requested(standin) == Counter({"Robe 10002": 1, "Robe 10003": 1})  # finished rows never re-sent
    manager.shutdown()
