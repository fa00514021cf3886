"""A batch over several stand-in backends: one queue, fast hosts take more, and the faults of a fleet (a host
killed mid-run, one answering 503 to everything, all down, one removed from the configuration), on SQLite and
PostgreSQL alike. Every row is written exactly once, none is lost."""

from __future__ import annotations

import contextlib
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.config import Backend
from services.db import Store
from services.errors import InvalidInput, Unreachable
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
from services.studio.batch_store import LaneSpec
from services.studio.fleet import Lane, plan_fleet
from services.studio.tabular import Table, read_table
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.standin import StandinServer

pytestmark = pytest.mark.timeout(120)
FR_REPLY = "Une robe élégante et fluide, parfaite pour vos soirées."
MAPPING = {"product_type": "type", "name": "nom"}
TEMPLATES = Path(tempfile.mkdtemp(prefix="templates-"))  # the shipped templates only; nothing is saved there


def make_table(rows: int) -> Table:
    body = "".join(f"robe;Robe {i:04d}\n" for i in range(rows))
    return read_table(("type;nom\n" + body).encode(), "catalogue.csv")


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


class Fleet:
    """Named stand-ins and their clients; ``removed`` names are refused as if gone from the configuration."""

    def __init__(self, names: list[str]) -> None:
        self.servers = {name: StandinServer().start() for name in names}
        self.clients = {name: OllamaClient(Backend(name=name, kind="ollama", url=server.url), connect_timeout_s=0.5,
                                           load_timeout_s=10, stall_timeout_s=3)
                        for name, server in self.servers.items()}
        self.removed: set[str] = set()
        for server in self.servers.values():
            server.state.configure(replies={"Product data": FR_REPLY})

    def client_for(self, name: str) -> OllamaClient:
        if name in self.removed:
            raise InvalidInput(f"No backend named {name!r} is configured.")
        return self.clients[name]

    def requested(self, name: str) -> Counter[str]:
        names: Counter[str] = Counter()
        for request in self.servers[name].state.requests_to("/api/chat"):
            names.update(re.findall(r"Robe \d{4}", request["body"]["messages"][-1]["content"]))
        return names

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        for server in self.servers.values():
            with contextlib.suppress(OSError):
                server.stop()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    f = Fleet(["gpu-1", "gpu-2", "cpu-1"])
    yield f
    f.close()


@pytest.fixture
def manager(job_store: Store, fleet: Fleet) -> Iterator[BatchManager]:
    mgr = BatchManager(job_store, fleet.client_for, backoff_base_s=0.05, backoff_max_s=0.3, tick_s=0.1)
    yield mgr
    mgr.shutdown()


def start(manager: BatchManager, rows: int, lanes: list[LaneSpec], owner: str = "ann") -> str:
    job_id = manager.create_job(make_table(rows), template=TemplateStore(TEMPLATES).latest("description"),
                                model="llama3.2:1b", params=TaskParams(), mapping=MAPPING, owner=owner, lanes=lanes)
    manager.start(job_id)
    return job_id


def written_once(manager: BatchManager, job_id: str, rows: int) -> Counter[str]:
    """Every row done, each once in the results, with the backend that answered it."""
    frame = manager.results_frame(job_id)
    assert frame["ai_status"].tolist() == ["done"] * rows
    assert frame["nom"].tolist() == [f"Robe {i:04d}" for i in range(rows)]
    assert (frame["ai_result"] == FR_REPLY).all()
    return Counter(frame["ai_backend"])


def test_one_queue_over_three_backends_fast_hosts_take_more(manager: BatchManager, fleet: Fleet) -> None:
    fleet.servers["gpu-1"].state.configure(request_time_s=0.02)
    fleet.servers["gpu-2"].state.configure(request_time_s=0.02)
    fleet.servers["cpu-1"].state.configure(request_time_s=0.25)
    job_id = start(manager, 60, [LaneSpec("gpu-1", 2), LaneSpec("gpu-2", 2), LaneSpec("cpu-1", 2)])
    assert manager.wait(job_id, 60)
    by_backend = written_once(manager, job_id, 60)
    assert set(by_backend) == {"gpu-1", "gpu-2", "cpu-1"}
    assert by_backend["gpu-1"] > by_backend["cpu-1"] and by_backend["gpu-2"] > by_backend["cpu-1"]
    total = sum((fleet.requested(name) for name in fleet.servers), Counter())
    assert total == Counter({f"Robe {i:04d}": 1 for i in range(60)})  # no row sent twice
    for name, server in fleet.servers.items():
        assert server.state.max_in_flight <= 2, name  # each backend's own slots


def test_a_backend_killed_mid_run_gives_its_rows_to_the_others(manager: BatchManager, fleet: Fleet) -> None:
    for server in fleet.servers.values():
        server.state.configure(request_time_s=0.1)
    job_id = start(manager, 40, [LaneSpec("gpu-1", 2), LaneSpec("gpu-2", 2), LaneSpec("cpu-1", 2)])
    wait_for(lambda: manager.progress(job_id).done >= 8)
    fleet.servers["gpu-2"].halt()  # a real outage: refused from now on, open streams cut
    assert manager.wait(job_id, 60)
    by_backend = written_once(manager, job_id, 40)
    assert manager.progress(job_id).failed == 0
    assert by_backend["gpu-1"] + by_backend["cpu-1"] >= 40 - by_backend["gpu-2"]
    lanes = {lane.name: lane for lane in manager.progress(job_id).lanes} or None
    assert lanes is None  # the run is over: its live figures are gone with it


def test_one_backend_answering_503_to_everything_is_paused_and_the_others_do_the_work(
        manager: BatchManager, fleet: Fleet) -> None:
    fleet.servers["cpu-1"].state.configure(fault="busy")
    for name in ("gpu-1", "gpu-2"):
        fleet.servers[name].state.configure(request_time_s=0.05)
    job_id = start(manager, 30, [LaneSpec("gpu-1", 2), LaneSpec("gpu-2", 2), LaneSpec("cpu-1", 2)])
    wait_for(lambda: any(lane.name == "cpu-1" and lane.state in ("paused", "probing")
                         for lane in manager.progress(job_id).lanes))
    assert manager.progress(job_id).paused == ""  # the job itself is not paused: two backends work
    assert manager.wait(job_id, 60)
    by_backend = written_once(manager, job_id, 30)
    assert "cpu-1" not in by_backend and manager.progress(job_id).failed == 0


def test_all_backends_down_pauses_the_job_then_it_continues(manager: BatchManager, fleet: Fleet) -> None:
    for server in fleet.servers.values():
        server.state.configure(fault="busy")
    job_id = start(manager, 12, [LaneSpec("gpu-1", 2), LaneSpec("gpu-2", 2)])
    wait_for(lambda: "all 2 backends are failing" in manager.progress(job_id).paused)
    progress = manager.progress(job_id)
    assert (progress.failed, progress.done, progress.state) == (0, 0, "running")
    assert "gpu-1:" in progress.paused and "gpu-2:" in progress.paused and "busy" in progress.paused
    for server in fleet.servers.values():
        server.state.configure(fault=None)
    assert manager.wait(job_id, 60)
    written_once(manager, job_id, 12)


def test_a_backend_removed_from_the_configuration_while_its_rows_run(manager: BatchManager, fleet: Fleet) -> None:
    fleet.servers["gpu-1"].state.configure(request_time_s=0.05)
    fleet.servers["gpu-2"].state.configure(request_time_s=2.0)  # its rows are in flight when it goes
    job_id = start(manager, 20, [LaneSpec("gpu-1", 2), LaneSpec("gpu-2", 2)])
    wait_for(lambda: len(fleet.servers["gpu-2"].state.requests_to("/api/chat")) == 2)
    fleet.removed.add("gpu-2")
    wait_for(lambda: any(lane.name == "gpu-2" and lane.state == "removed" for lane in manager.progress(job_id).lanes))
    assert manager.wait(job_id, 60)
    by_backend = written_once(manager, job_id, 20)
    assert by_backend == Counter({"gpu-1": 20})  # the rows it had in flight were answered by gpu-1


def test_an_overflow_backend_waits_while_the_others_have_free_slots(manager: BatchManager, fleet: Fleet) -> None:
    job_id = start(manager, 3, [LaneSpec("gpu-1", 2), LaneSpec("gpu-2", 2), LaneSpec("cpu-1", 4, overflow=True)])
    assert manager.wait(job_id, 30)
    assert "cpu-1" not in written_once(manager, job_id, 3)
    assert fleet.requested("cpu-1") == Counter()


def test_the_plan_shows_which_backends_have_the_model_and_a_digest_mismatch(fleet: Fleet) -> None:
    fleet.servers["cpu-1"].state.models["llama3.2:1b"]["digest"] = "f" * 64  # other weights, same name
    del fleet.servers["gpu-2"].state.models["phi3:mini"]
    backends = [Backend(name=n, kind="ollama", url=s.url, slots=3) for n, s in fleet.servers.items()]
    plan = plan_fleet("llama3.2:1b", backends, lambda b: fleet.clients[b.name])
    assert [e.name for e in plan.usable] == ["gpu-1", "gpu-2", "cpu-1"] and plan.mismatch
    assert plan.majority() == ["gpu-1", "gpu-2"]
    assert "ffffffffffff on cpu-1" in plan.mismatch_text() and "Other weights give other answers" in \
        plan.mismatch_text()
    assert [lane.slots for lane in plan.lanes(plan.majority())] == [3, 3]
    phi = plan_fleet("phi3:mini", backends, lambda b: fleet.clients[b.name])
    assert [e.name for e in phi.usable] == ["gpu-1", "cpu-1"] and not phi.mismatch
    fleet.servers["gpu-1"].halt()
    down = plan_fleet("phi3:mini", backends, lambda b: fleet.clients[b.name])
    assert "not reachable" in down.entries[0].error and [e.name for e in down.usable] == ["cpu-1"]


def test_a_paused_lane_lets_one_probe_through_and_reopens_on_success() -> None:
    lane = Lane(LaneSpec("gpu-1", 3), backoff_base_s=0.05, backoff_max_s=0.05)
    assert lane.admit(0) and lane.admit(1)
    assert lane.fail(Unreachable("refused")) is False  # refused: never the row's fault
    admitted: list[int] = []
    threads = [threading.Thread(target=lambda w=w: admitted.append(w) if lane.admit(w) else None) for w in range(3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(admitted) == 1)  # one probe after the pause; the others wait
    assert lane.state == "probing"
    lane.succeed()
    for thread in threads:
        thread.join(5)
    assert sorted(admitted) == [0, 1, 2] and lane.state == "running"
    lane.remove("gone")
    assert not lane.admit(0)
