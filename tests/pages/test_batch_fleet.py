"""The batch form over several backends through AppTest: the plan of which backends hold the model, the digest
mismatch shown before the start and decided by the person, per-backend throughput on the card, and the queue."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import runtime
from tests.standin import StandinServer

PAGE = "pages/descriptions.py"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FR_REPLY = "Une robe rouge élégante et fluide, parfaite pour vos soirées de gala."


@pytest.fixture
def second(app_env: StandinServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[StandinServer]:
    """A second backend beside the stand-in of ``app_env`` (named ``local``), in a backends file."""
    with StandinServer() as other:
        backends = tmp_path / "backends.toml"
        backends.write_text(f'[[backends]]\nname = "local"\nurl = "{app_env.url}"\nslots = 2\n\n'
                            f'[[backends]]\nname = "gpu-2"\nurl = "{other.url}"\nslots = 3\n')
        monkeypatch.setenv("DASHBOARD_BACKENDS_FILE", str(backends))
        for server in (app_env, other):
            server.state.configure(replies={"Product data": FR_REPLY})
        yield other


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [w.value for w in at.warning]
                     + [i.value for i in at.info] + [e.value for e in at.error]).replace("\\", "")  # plain labels


def upload(at: AppTest) -> AppTest:
    at.segmented_control(key="studio.mode").set_value("batch").run()
    data = (FIXTURES / "products.csv").read_bytes()
    at.file_uploader(key="studio.batch.file").upload("products.csv", data, "text/csv").run()
    assert not at.exception
    return at


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_a_digest_mismatch_is_shown_before_the_start_and_the_person_decides(
        open_page: Callable[..., AppTest], app_env: StandinServer, second: StandinServer) -> None:
    second.state.models["llama3.2:1b"]["digest"] = "d" * 64
    at = upload(open_page(PAGE))
    at.toggle(key="studio.batch.all_backends").set_value(True).run()
    assert not at.exception
    plan = next(d.value for d in at.dataframe if "weights" in d.value.columns)
    assert plan["backend"].tolist() == ["local", "gpu-2"] and plan["slots"].tolist() == [2, 3]
    assert "llama3.2:1b is not the same model everywhere" in texts(at) and "dddddddddddd on gpu-2" in texts(at)
    radio = at.radio(key="studio.batch.weights.llama3.2:1b")
    assert radio.options[-1].startswith("All of them")
    radio.set_value(next(o for o in radio.options if "gpu-2" in o and "only" in o)).run()  # the person decides
    at.button(key="studio.batch.go").click().run()
    assert not at.exception
    manager = runtime.batch_manager()
    job = manager.jobs(limit=1)[0]
    assert [(lane.name, lane.slots) for lane in job.lanes] == [("gpu-2", 3)]
    assert manager.wait(job.id, 30)
    assert app_env.state.requests_to("/api/chat") == [] and len(second.state.requests_to("/api/chat")) >= 6
    at.run()
    assert "on gpu-2 · 3 slots" in texts(at)


def test_a_batch_over_two_backends_shows_each_backends_throughput(
        open_page: Callable[..., AppTest], app_env: StandinServer, second: StandinServer) -> None:
    gate = threading.Event()

    def slow(body: dict) -> str:
        gate.wait(30)
        return FR_REPLY

    app_env.state.responder = slow
    second.state.responder = slow
    at = upload(open_page(PAGE))
    at.toggle(key="studio.batch.all_backends").set_value(True).run()
    assert "not the same model" not in texts(at)
    at.button(key="studio.batch.go").click().run()
    manager = runtime.batch_manager()
    job = manager.jobs(limit=1)[0]
    assert [lane.name for lane in job.lanes] == ["local", "gpu-2"]
    wait_for(lambda: sum(lane.in_flight for lane in manager.progress(job.id).lanes) == 5)
    at.run()
    lanes = next(d.value for d in at.dataframe if "in flight" in d.value.columns)
    assert lanes["backend"].tolist() == ["local", "gpu-2"] and lanes["in flight"].tolist() == [2, 3]
    gate.set()
    assert manager.wait(job.id, 30)
    frame = manager.results_frame(job.id)
    assert (frame["ai_status"] == "done").all() and set(frame["ai_backend"]) <= {"local", "gpu-2"}


def test_jobs_beyond_the_limit_wait_in_a_queue_their_owners_see(
        open_page: Callable[..., AppTest], app_env: StandinServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_BATCH_MAX_RUNNING", "1")
    gate = threading.Event()
    app_env.state.responder = lambda body: (gate.wait(30), FR_REPLY)[1]
    at = upload(open_page(PAGE))
    at.button(key="studio.batch.go").click().run()
    manager = runtime.batch_manager()
    first = manager.jobs(limit=1)[0].id
    at.file_uploader(key="studio.batch.file").upload("more.csv", (FIXTURES / "products.csv").read_bytes(),
                                                     "text/csv").run()
    at.button(key="studio.batch.go").click().run()
    queued = manager.jobs(limit=1)[0].id
    assert queued != first and manager.progress(queued).state == "queued"
    at.run()
    assert not at.exception
    board = next(d.value for d in at.dataframe if "place" in d.value.columns)
    assert board["state"].tolist() == ["running", "queued"] and board["place"].tolist() == ["", "1"]
    assert board["owner"].tolist() == ["local (you)", "local (you)"]
    assert "queued (place 1 in the queue)" in texts(at)
    gate.set()
    assert manager.wait(first, 30) and manager.wait(queued, 30)
    assert os.environ["DASHBOARD_BATCH_MAX_RUNNING"] == "1"
