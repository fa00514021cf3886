"""The job store on a real PostgreSQL (Debian's packages, started by ``tests/postgres.py``): a batch and a pull
keep going while the database restarts under them, and the dashboard refuses to start on an unreachable one."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.config import Backend
from services.db_postgres import PostgresDatabase
from services.errors import ConfigError
from services.models.pulls import PullManager
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
from services.studio.tabular import read_table
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.postgres import PostgresCluster, postgres_bin
from tests.standin import StandinServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
FR_REPLY = "Une robe élégante et fluide, parfaite pour vos soirées."


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """A server of its own: these tests restart it."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql package)")
    with PostgresCluster() as pg:
        yield pg


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return
        except Exception:  # the database may be restarting
            pass
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_a_batch_goes_on_when_the_database_restarts_under_it(cluster: PostgresCluster, client: OllamaClient,
                                                             standin: StandinServer, tmp_path: Path) -> None:
    standin.state.configure(request_time_s=0.1, replies={"Product data": FR_REPLY})
    store = PostgresDatabase(cluster.database())
    manager = BatchManager(store, lambda _n: client, tick_s=0.2)
    table = read_table(("type;nom\n" + "".join(f"robe;Robe {i:04d}\n" for i in range(40))).encode(), "c.csv")
    job_id = manager.create_job(table, template=TemplateStore(tmp_path).latest("description"), model="llama3.2:1b",
                                backend="standin", params=TaskParams(), mapping={"product_type": "type", "name": "nom"},
                                owner="ann", concurrency=2)
    manager.start(job_id)
    wait_for(lambda: manager.progress(job_id).done >= 8)
    cluster.restart()  # every connection is cut; rows in flight keep their results until it is back
    wait_for(lambda: manager.progress(job_id).state == "finished")
    progress = manager.progress(job_id)
    assert (progress.done, progress.failed, progress.running, progress.pending) == (40, 0, 0, 0)
    frame = manager.results_frame(job_id)
    assert frame["ai_status"].tolist() == ["done"] * 40
    names: Counter[str] = Counter()
    for request in standin.state.requests_to("/api/chat"):
        names.update(re.findall(r"Robe \d{4}", request["body"]["messages"][-1]["content"]))
    assert names == Counter({f"Robe {i:04d}": 1 for i in range(40)})  # no row sent twice, none lost
    manager.shutdown()
    store.close()


def test_a_pull_record_survives_the_database_restarting(cluster: PostgresCluster, client: OllamaClient,
                                                        backend: Backend, standin: StandinServer) -> None:
    standin.state.configure(pull_bytes_per_s=20_000_000)
    store = PostgresDatabase(cluster.database())
    manager = PullManager(store, lambda b: client, [backend], lease_ttl_s=5.0)
    snap, _ = manager.start(backend, "mistral:7b", "carol")
    wait_for(lambda: (manager.get(snap.id).completed or 0) > 0)  # type: ignore[union-attr]
    cluster.restart()
    done = manager.wait(snap.id, 60)
    assert done is not None and done.state == "succeeded"
    wait_for(lambda: store.execute("SELECT state FROM pull_jobs WHERE id = ?", (snap.id,)).fetchone()["state"]
             == "succeeded")
    manager.shutdown()
    store.close()


def test_an_unreachable_database_refuses_the_start_with_one_clear_line(cluster: PostgresCluster) -> None:
    cluster.stop()
    with pytest.raises(ConfigError, match=r"did not accept a connection .* check the URL"):
        PostgresDatabase(cluster.admin_url, wait_s=1.0)
    with pytest.raises(ConfigError, match="must start with postgresql://"):
        PostgresDatabase("mysql://x")
