"""The pull job manager against the loopback stand-in: real sockets, real threads, real SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.access.audit import AuditLog
from services.config import Backend
from services.db import Database, Store
from services.errors import InvalidInput
from services.models.pull_progress import MAX_LAYERS, STATUS_HISTORY, PullProgress, canonical_name
from services.models.pulls import PullManager
from services.ollama.client import OllamaClient
from tests.postgres import reopen
from tests.standin import StandinServer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def db(job_store: Store) -> Store:
    """The pull jobs on SQLite and on PostgreSQL alike."""
    return job_store


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(Database.in_dir(tmp_path / "audit"))  # the audit log stays in the data directory's SQLite


@pytest.fixture
def manager(db: Store, audit: AuditLog, client: OllamaClient, backend: Backend) -> Iterator[PullManager]:
    mgr = PullManager(db, lambda b: client, [backend], audit)
    yield mgr
    mgr.shutdown()


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_pull_succeeds_with_totals_per_layer_and_status_lines(manager: PullManager, backend: Backend,
                                                             standin: StandinServer, audit: AuditLog) -> None:
    snap, created = manager.start(backend, "qwen2.5:0.5b", "alice")
    assert created and snap.active
    done = manager.wait(snap.id, 20)
    assert done is not None and done.state == "succeeded", done
    layers = standin.state.registry["qwen2.5:0.5b"]
    assert done.total == done.completed == sum(size for _, size in layers)
    assert {layer.digest for layer in done.layers} == {f"sha256:{d}" for d, _ in layers}
    assert list(done.history) == ["pulling manifest", "pulling layers", "verifying sha256 digest",
                                  "writing manifest", "success"]
    assert "qwen2.5:0.5b" in standin.state.models
    outcomes = [(e.action, e.outcome, e.who) for e in audit.query(model_contains="qwen2.5")]
    assert outcomes == [("pull", "succeeded", "alice"), ("pull", "started", "alice")]
    # The record is in SQLite, not only in memory.
    row = manager._db.execute("SELECT state, completed_bytes FROM pull_jobs WHERE id=?", (snap.id,)).fetchone()
    assert tuple(row) == ("succeeded", done.total)


def test_two_operators_pulling_the_same_model_share_one_job(manager: PullManager, backend: Backend,
                                                            standin: StandinServer) -> None:
    standin.state.configure(pull_bytes_per_s=5_000_000)
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []

    def pull(name: str) -> None:
        barrier.wait()
        snap, created = manager.start(backend, name, "op")
        results.append((snap.id, created))

    threads = [threading.Thread(target=pull, args=(n,)) for n in ["gemma2:2b", " gemma2:2b "] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    wait_until(lambda: len(standin.state.requests_to("/api/pull")) >= 1)
    time.sleep(0.2)
    assert len(standin.state.requests_to("/api/pull")) == 1
    assert manager.active_count() == 1


def test_several_pulls_run_at_once(manager: PullManager, backend: Backend, standin: StandinServer) -> None:
    standin.state.configure(pull_bytes_per_s=20_000_000)
    a, _ = manager.start(backend, "qwen2.5:0.5b", "op")
    b, _ = manager.start(backend, "qwen3:0.6b", "op")
    assert a.id != b.id
    wait_until(lambda: all(manager.get(j.id).state == "running" for j in (a, b)))  # type: ignore[union-attr]
    assert [s.state for s in (manager.wait(a.id, 20), manager.wait(b.id, 20))] == ["succeeded"] * 2


def test_cancel_closes_the_stream_at_once(manager: PullManager, backend: Backend, standin: StandinServer,
                                          audit: AuditLog) -> None:
    standin.state.configure(pull_bytes_per_s=1_000_000)
    snap, _ = manager.start(backend, "mistral:7b", "bob")
    wait_until(lambda: (manager.get(snap.id).completed or 0) > 0)  # type: ignore[union-attr]
    assert manager.cancel(snap.id)
    done = manager.wait(snap.id, 30)
    assert done is not None and done.state == "cancelled"
    assert 0 < done.completed < done.total  # cut mid-download, not waited out
    wait_until(lambda: standin.state.disconnects >= 1, 5)  # the server saw the connection go
    assert "mistral:7b" not in standin.state.models
    assert manager.active_count() == 0 and not manager.cancel(snap.id)
    assert audit.query(action="pull")[0].outcome.startswith("cancelled")


def test_backend_dies_mid_pull_then_retry_resumes(manager: PullManager, backend: Backend,
                                                  standin: StandinServer) -> None:
    standin.state.configure(pull_bytes_per_s=10_000_000, fault="pull_die", stall_s=0.3)
    snap, _ = manager.start(backend, "gemma2:2b", "op")
    failed = manager.wait(snap.id, 10)
    assert failed is not None and failed.state == "failed" and failed.retryable
    assert "lost during the pull" in failed.error and "Retry" in failed.error
    kept = failed.completed
    assert kept > 0
    standin.state.configure(fault=None, pull_bytes_per_s=50_000_000)
    again, created = manager.retry(snap.id, "op")
    assert created and again.id != snap.id
    done = manager.wait(again.id, 20)
    assert done is not None and done.state == "succeeded"
    assert "gemma2:2b" in standin.state.models


def test_inband_error_mid_pull_is_the_reason(manager: PullManager, backend: Backend,
                                            standin: StandinServer) -> None:
    standin.state.configure(pull_bytes_per_s=5_000_000, fault="pull_inband", stall_s=0.2,
                            fault_message="max retries exceeded: unexpected EOF")
    snap, _ = manager.start(backend, "gemma2:2b", "op")
    done = manager.wait(snap.id, 10)
    assert done is not None and done.state == "failed"
    assert "max retries exceeded: unexpected EOF" in done.error


def test_unknown_model_fails_with_ollamas_message(manager: PullManager, backend: Backend) -> None:
    snap, _ = manager.start(backend, "no-such-model:7b", "op")
    done = manager.wait(snap.id, 10)
    assert done is not None and done.state == "failed"
    assert "file does not exist" in done.error and "no-such-model:7b" in done.error


def test_dead_backend_fails_fast(db: Store, dead_backend: Backend) -> None:
    client = OllamaClient(dead_backend, connect_timeout_s=1.0)
    mgr = PullManager(db, lambda b: client, [dead_backend])
    snap, _ = mgr.start(dead_backend, "qwen2.5:0.5b", "op")
    done = mgr.wait(snap.id, 10)
    assert done is not None and done.state == "failed" and "not reachable" in done.error


@pytest.mark.parametrize("name", ["bad name", "../../etc/passwd", "llama\x00:1b", "x" * 10_240, "",
                                  "evil.example.com/library/llama3:8b", "169.254.169.254:80/a/b"])
def test_invalid_names_never_reach_the_server(manager: PullManager, backend: Backend, standin: StandinServer,
                                              name: str) -> None:
    with pytest.raises(InvalidInput):
        manager.start(backend, name, "op")
    assert standin.state.requests_to("/api/pull") == []
    assert manager.jobs() == []


def test_concurrent_pulls_are_capped(db: Store, client: OllamaClient, backend: Backend,
                                     standin: StandinServer) -> None:
    standin.state.configure(pull_bytes_per_s=1_000_000)
    mgr = PullManager(db, lambda b: client, [backend], max_active=2)
    try:
        mgr.start(backend, "gemma2:2b", "op")
        mgr.start(backend, "mistral:7b", "op")
        with pytest.raises(InvalidInput, match="already running"):
            mgr.start(backend, "phi3:mini", "op")
    finally:
        mgr.shutdown()


RUNNER = """
import sys, time
from pathlib import Path
from services.config import Backend
from services.db import Database
from services.ollama.client import OllamaClient
from services.models.pulls import PullManager
backend = Backend(name="standin", kind="ollama", url=sys.argv[1])
mgr = PullManager(Database.in_dir(Path(sys.argv[2])), lambda b: OllamaClient(b), [backend], lease_ttl_s=1.0)
snap, _ = mgr.start(backend, "mistral:7b", "carol")
while (mgr.get(snap.id).completed or 0) == 0:
    time.sleep(0.02)
time.sleep(2.5)
print(snap.id, flush=True)
time.sleep(60)
"""


def test_a_pull_whose_process_was_killed_is_taken_over_once_its_lease_expires(
        tmp_path: Path, standin: StandinServer, backend: Backend, client: OllamaClient) -> None:
    standin.state.configure(pull_bytes_per_s=2_000_000)
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, standin.url, str(data)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        job_id = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert job_id
    finally:
        proc.send_signal(signal.SIGKILL)  # the dashboard process dies without any cleanup
        proc.wait(10)
    standin.state.configure(pull_bytes_per_s=100_000_000)
    mgr = PullManager(Database.in_dir(data), lambda b: client, [backend], lease_ttl_s=1.0)
    try:
        wait_until(lambda: mgr.get(job_id) is not None and mgr.get(job_id).state == "succeeded", 30)  # type: ignore[union-attr]
        snap = mgr.get(job_id)
        assert snap is not None and snap.requested_by == "carol" and snap.error == ""
        assert [s.id for s in mgr.jobs()] == [job_id]  # the same job continued, not a new one
        assert len(standin.state.requests_to("/api/pull")) == 2
    finally:
        mgr.shutdown()


def test_a_clean_stop_hands_a_pull_to_the_next_process_at_once(db: Store, standin: StandinServer,
                                                                backend: Backend, client: OllamaClient) -> None:
    standin.state.configure(pull_bytes_per_s=2_000_000)
    old = PullManager(db, lambda b: client, [backend], lease_ttl_s=600.0)
    snap, _ = old.start(backend, "mistral:7b", "carol")
    wait_until(lambda: (old.get(snap.id).completed or 0) > 0)  # type: ignore[union-attr]
    new = PullManager(reopen(db), lambda b: client, [backend], lease_ttl_s=600.0)  # type: ignore[arg-type]
    try:
        assert new.take_over() == []  # the old process still runs it: nothing taken, nothing interrupted
        joined, created = new.start(backend, "mistral:7b", "dave")
        assert (joined.id, created) == (snap.id, False)  # a second process joins the same pull
        old.shutdown()
        standin.state.configure(pull_bytes_per_s=100_000_000)
        assert new.take_over() == [snap.id]  # at once, not after 600 s
        done = new.wait(snap.id, 20)
        assert done is not None and done.state == "succeeded"
    finally:
        new.shutdown()


def test_a_pull_whose_backend_left_the_configuration_is_interrupted_with_the_reason(
        db: Store, standin: StandinServer, backend: Backend, client: OllamaClient) -> None:
    standin.state.configure(pull_bytes_per_s=2_000_000)
    old = PullManager(db, lambda b: client, [backend])
    snap, _ = old.start(backend, "mistral:7b", "carol")
    old.shutdown()
    new = PullManager(reopen(db), lambda b: client, [])  # type: ignore[arg-type]
    try:
        after = new.get(snap.id)
        assert after is not None and after.state == "interrupted" and after.retryable
        assert "no longer configured" in after.error
    finally:
        new.shutdown()


def test_progress_is_constant_memory_and_aggregates_latest_per_digest() -> None:
    progress = PullProgress()
    progress.update({"status": "pulling manifest"}, now=0.0)
    for i in range(50_000):
        progress.update({"status": "pulling aaa", "digest": "sha256:aaa", "total": 100_000, "completed": i},
                        now=i * 0.001)
        progress.update({"status": "pulling bbb", "digest": "sha256:bbb", "total": 500}, now=i * 0.001)
    assert (progress.total, progress.completed) == (100_500, 49_999)
    assert progress.lines == 100_001
    assert 900 < progress.rate < 1_100  # one byte per millisecond
    assert progress.eta_s is not None and 45 < progress.eta_s < 56
    assert list(progress.history) == ["pulling manifest", "pulling layers"]
    for i in range(MAX_LAYERS * 2):
        progress.update({"status": f"s{i}", "digest": f"sha256:{i}", "total": 1})
    assert len(progress.layers()) == MAX_LAYERS
    for i in range(100):
        progress.update({"status": f"phase {i}"})
    assert len(progress.history) == STATUS_HISTORY


def test_canonical_name() -> None:
    assert canonical_name("Gemma2") == canonical_name("gemma2:latest")
    assert canonical_name("ns/model:Tag") == "ns/model:tag"


def test_finished_jobs_leave_memory_but_stay_in_sqlite(manager: PullManager, backend: Backend,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.models.pulls.KEEP_FINISHED_IN_MEMORY", 2)
    ids = []
    for _ in range(4):
        snap, _ = manager.start(backend, "no-such-model:1b", "op")
        manager.wait(snap.id, 10)
        ids.append(snap.id)
    assert len(manager._jobs) == 2
    assert [s.id for s in manager.jobs()] == ids[::-1]
    assert all(manager.get(i).state == "failed" for i in ids)  # type: ignore[union-attr]
