"""The batch engine against the loopback stand-in: concurrency bound, resume, retry, cancel, faults; on SQLite
and on PostgreSQL alike (``job_store``)."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.config import Backend
from services.db import Store
from services.errors import InvalidInput
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
from services.studio.batch_store import result_column_names
from services.studio.tabular import Table, read_table
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.postgres import reopen
from tests.standin import StandinServer

FR_REPLY = "Une robe élégante et fluide, parfaite pour vos soirées."
MAPPING = {"product_type": "type", "name": "nom"}


def make_table(rows: int) -> Table:
    body = "".join(f"robe;Robe {i:04d};{i}\n" for i in range(rows))
    return read_table(("type;nom;prix\n" + body).encode(), "catalogue.csv")


def names_requested(standin: StandinServer) -> Counter[str]:
    names = Counter()
    for request in standin.state.requests_to("/api/chat"):
        text = request["body"]["messages"][-1]["content"]
        names.update(re.findall(r"Robe \d{4}", text))
    return names


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    return TemplateStore(tmp_path)



@pytest.fixture
def manager(job_store: Store, client: OllamaClient) -> Iterator[BatchManager]:
    mgr = BatchManager(job_store, lambda _name: client, backoff_base_s=0.05, backoff_max_s=0.2,
                       max_transport_attempts=3, tick_s=0.1)
    yield mgr
    mgr.shutdown()


def new_job(manager: BatchManager, store: TemplateStore, rows: int, concurrency: int = 2, **params: object) -> str:
    return manager.create_job(make_table(rows), template=store.latest("description"), model="llama3.2:1b",
                              backend="standin", params=TaskParams(**params), mapping=MAPPING,  # type: ignore[arg-type]
                              concurrency=concurrency, owner="test")


def test_concurrency_is_never_exceeded_and_every_row_is_written(manager: BatchManager, store: TemplateStore,
                                                                standin: StandinServer) -> None:
    standin.state.configure(parallel=8, request_time_s=0.05, replies={"Product data": FR_REPLY})
    job_id = new_job(manager, store, 30, concurrency=3)
    manager.start(job_id)
    assert manager.wait(job_id, 30)
    progress = manager.progress(job_id)
    assert (progress.done, progress.failed, progress.pending, progress.state) == (30, 0, 0, "finished")
    assert standin.state.max_in_flight == 3  # the bound was reached and never exceeded
    frame = manager.results_frame(job_id)
    assert list(frame.columns) == ["type", "nom", "prix", *result_column_names(["type", "nom", "prix"])]
    assert (frame["ai_status"] == "done").all() and (frame["ai_result"] == FR_REPLY).all()
    assert set(frame["ai_template"]) == {"description@v2"}
    assert frame["nom"].tolist() == [f"Robe {i:04d}" for i in range(30)]  # file order kept
    assert names_requested(standin) == Counter({f"Robe {i:04d}": 1 for i in range(30)})


def test_resume_after_a_restart_never_reruns_finished_rows(job_store: Store, client: OllamaClient,
                                                           store: TemplateStore, standin: StandinServer) -> None:
    standin.state.configure(parallel=2, request_time_s=0.15, replies={"Product data": FR_REPLY})
    first = BatchManager(job_store, lambda _name: client)
    job_id = new_job(first, store, 16, concurrency=2)
    first.start(job_id)
    deadline = time.monotonic() + 10
    while first.progress(job_id).done < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.shutdown()  # the process goes away mid-run: the job stays "running" in SQLite
    before = first.results_frame(job_id)
    done_before = set(before.loc[before["ai_status"] == "done", "nom"])
    assert 5 <= len(done_before) < 16
    assert first.job(job_id).state == "running"

    second = BatchManager(reopen(job_store), lambda _name: client)  # type: ignore[arg-type]
    assert second.resume_interrupted() == [job_id]
    assert second.wait(job_id, 30)
    progress = second.progress(job_id)
    assert (progress.done, progress.state) == (16, "finished")
    counts = names_requested(standin)
    assert all(counts[name] == 1 for name in done_before)  # finished rows were not billed again
    assert set(counts) == {f"Robe {i:04d}" for i in range(16)}
    second.shutdown()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_a_backend_answering_503_to_everything_pauses_the_job_and_burns_no_retries(
        manager: BatchManager, store: TemplateStore, standin: StandinServer) -> None:
    standin.state.configure(fault="busy", replies={"Product data": FR_REPLY})
    job_id = new_job(manager, store, 4, concurrency=2)
    manager.start(job_id)
    wait_for(lambda: "busy" in manager.progress(job_id).paused)
    during = manager.progress(job_id)
    assert during.state == "running" and during.failed == 0 and during.done == 0
    assert "paused: the backend is failing" in during.paused and "no row is failed" in during.paused
    assert during.lanes[0].state in ("paused", "probing") and during.lanes[0].handed_back >= 1
    # The backend recovers: every row is written once, none failed.
    standin.state.configure(fault=None)
    assert manager.wait(job_id, 30)
    after = manager.progress(job_id)
    assert (after.done, after.failed, after.state, after.paused) == (4, 0, "finished", "")
    assert set(names_requested(standin)) == {f"Robe {i:04d}" for i in range(4)}
    assert after.attempts == len(standin.state.requests_to("/api/chat"))  # 503s counted as attempts too


def test_retry_failed_runs_only_the_failed_rows(manager: BatchManager, store: TemplateStore,
                                                standin: StandinServer) -> None:
    english = {"on": True}

    def responder(body: dict) -> str:
        text = "\n".join(m["content"] for m in body["messages"])
        wrong = english["on"] and "Robe 0002" in text
        return "An English answer for this dress, which is not what we asked for." if wrong else FR_REPLY

    standin.state.responder = responder
    job_id = new_job(manager, store, 4, concurrency=2)
    manager.start(job_id)
    assert manager.wait(job_id, 30)
    assert (manager.progress(job_id).done, manager.progress(job_id).failed) == (3, 1)
    english["on"] = False
    before = len(standin.state.requests_to("/api/chat"))
    assert manager.retry_failed(job_id) == 1
    assert manager.wait(job_id, 30)
    assert (manager.progress(job_id).done, manager.progress(job_id).failed) == (4, 0)
    assert len(standin.state.requests_to("/api/chat")) - before == 1
    assert manager.retry_failed(job_id) == 0  # nothing failed any more: nothing re-sent


def test_a_row_failing_its_check_is_failed_with_the_reason_and_the_batch_goes_on(
        manager: BatchManager, store: TemplateStore, standin: StandinServer) -> None:
    def responder(body: dict) -> str:
        text = "\n".join(m["content"] for m in body["messages"])
        return "An English answer for this dress, which is not what we asked for." if "Robe 0001" in text \
            else FR_REPLY

    standin.state.responder = responder
    job_id = new_job(manager, store, 3)
    manager.start(job_id)
    assert manager.wait(job_id, 30)
    frame = manager.results_frame(job_id)
    assert frame["ai_status"].tolist() == ["done", "failed", "done"]
    assert frame.loc[1, "ai_result"] == ""  # never written as good
    assert "looks English, not French" in frame.loc[1, "ai_error"] and frame.loc[1, "ai_attempts"] == 3
    assert "last answer: «An English answer" in frame.loc[1, "ai_error"]  # what was refused, for the reader
    # Each retry told the model what was wrong instead of sending the same prompt again.
    retries = [r["body"]["messages"] for r in standin.state.requests_to("/api/chat")
               if any("Robe 0001" in m["content"] for m in r["body"]["messages"])]
    assert len(retries) == 3 and retries[0][-1]["content"].startswith("Write a")
    assert all(m[-1]["content"] == "Your answer is in English: write it in French." for m in retries[1:])


def test_cancel_stops_at_once_and_leaves_unfinished_rows_pending(manager: BatchManager, store: TemplateStore,
                                                                 standin: StandinServer) -> None:
    # Each answer would take ten minutes: the job can only end within the wait if its streams were aborted.
    standin.state.configure(request_time_s=600.0, replies={"Product data": FR_REPLY})
    job_id = new_job(manager, store, 10, concurrency=2)
    manager.start(job_id)
    wait_for(lambda: len(standin.state.requests_to("/api/chat")) == 2)
    manager.cancel(job_id)
    assert manager.wait(job_id, 30)
    progress = manager.progress(job_id)
    assert (progress.state, progress.running, progress.pending, progress.done) == ("cancelled", 0, 10, 0)
    assert len(standin.state.requests_to("/api/chat")) == 2


def test_a_dead_backend_pauses_the_job_with_the_reason_and_cancel_keeps_every_row(
        job_store: Store, dead_backend: Backend, store: TemplateStore) -> None:
    dead = OllamaClient(dead_backend, connect_timeout_s=0.5, load_timeout_s=2, stall_timeout_s=1)
    mgr = BatchManager(job_store, lambda _name: dead, backoff_base_s=0.05, backoff_max_s=0.1,
                       max_transport_attempts=2)
    job_id = new_job(mgr, store, 3)
    mgr.start(job_id)
    wait_for(lambda: "not reachable" in mgr.progress(job_id).paused)
    assert mgr.progress(job_id).failed == 0  # an unreachable host is not the rows' fault
    mgr.cancel(job_id)
    assert mgr.wait(job_id, 10)
    progress = mgr.progress(job_id)
    assert (progress.state, progress.pending, progress.failed, progress.running) == ("cancelled", 3, 0, 0)
    mgr.shutdown()


def test_invalid_jobs_write_nothing(manager: BatchManager, store: TemplateStore) -> None:
    table = make_table(3)
    with pytest.raises(InvalidInput, match="required field “Product type”"):
        manager.create_job(table, template=store.latest("description"), model="llama3.2:1b", backend="standin",
                           params=TaskParams(), mapping={"name": "nom"}, concurrency=2, owner="t")
    with pytest.raises(InvalidInput, match="Concurrency"):
        manager.create_job(table, template=store.latest("description"), model="llama3.2:1b", backend="standin",
                           params=TaskParams(), mapping=MAPPING, concurrency=99, owner="t")
    with pytest.raises(InvalidInput, match="cannot run as a batch"):
        manager.create_job(table, template=store.latest("column_mapping"), model="llama3.2:1b", backend="s",
                           params=TaskParams(), mapping=MAPPING, concurrency=2, owner="t")
    assert manager.jobs() == []
    assert manager.db.execute("SELECT COUNT(*) AS n FROM batch_rows").fetchone()["n"] == 0


def test_result_columns_do_not_clobber_input_columns() -> None:
    assert result_column_names(["ai_result", "name"])[1] == "_ai_result"


def test_a_backend_gone_from_the_configuration_stops_the_job_with_the_reason(job_store: Store,
                                                                             store: TemplateStore) -> None:
    def client_for(name: str) -> OllamaClient:
        raise InvalidInput(f"No backend named {name!r} is configured.")

    mgr = BatchManager(job_store, client_for)
    job_id = new_job(mgr, store, 3)
    mgr.start(job_id)
    assert mgr.wait(job_id, 10)
    job = mgr.job(job_id)
    assert job.state == "cancelled" and "No backend named 'standin'" in job.message
    assert mgr.progress(job_id).pending == 3  # nothing lost: Resume works once the backend is back
    mgr.shutdown()
