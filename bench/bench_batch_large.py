"""A 100,000-row batch: the product studio page's render time and the process's RSS at 1 %, 50 % and 100 %.

The job runs for real (four stand-in backends in their own processes, 4 slots each, instant answers); the page
is the real app script under AppTest in the same process, with the job open in batch mode, as a second
dashboard process would show it (the job's lease belongs to the bench's manager). Progress is read from the
job's counters, so render time should not grow with the rows done (target < 1 s) and RSS should stay flat.

``BENCH_LARGE_ROWS`` changes the row count (default 100,000; about 10 minutes on a quiet 2-core machine).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bench import scoped_env
from bench.bench_batch_fleet import SLOTS, StandinProcess
from services.config import Backend
from services.db import Database
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
from services.studio.batch_store import LaneSpec
from services.studio.tabular import read_table
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore

ROOT = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("BENCH_LARGE_ROWS", "100000"))
RENDERS = 3


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def render_seconds(job_id: str) -> float:
    """Median of a few full runs of the studio page in batch mode with the job open (after a first warm run)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["mode"] = "batch"
    at.query_params["job"] = job_id
    at.run()
    at.switch_page("pages/descriptions.py")
    at.run()
    times = []
    for _ in range(RENDERS):
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
    if at.exception:
        raise RuntimeError(at.exception)
    return statistics.median(times)


def main() -> None:
    import streamlit as st

    standins = [StandinProcess(0.0) for _ in range(4)]
    with tempfile.TemporaryDirectory() as tmp, scoped_env(
            DASHBOARD_DATA_DIR=str(Path(tmp) / "data"), OLLAMA_HOST=standins[0].url, DASHBOARD_METRICS_PORT="0",
            DASHBOARD_BACKENDS_FILE=None, DASHBOARD_DATABASE_URL=None):
        data = Path(tmp) / "data"
        clients = {f"b{i}": OllamaClient(Backend(name=f"b{i}", kind="ollama", url=s.url), stall_timeout_s=30)
                   for i, s in enumerate(standins)}
        manager = BatchManager(Database.in_dir(data), clients.__getitem__)
        body = "".join(f"robe;Robe {i:06d};REF-{i:06d}\n" for i in range(ROWS))
        table = read_table(("type;nom;ref\n" + body).encode(), "catalogue.csv")
        started = time.perf_counter()
        job_id = manager.create_job(table, template=TemplateStore(data).latest("description"), model="llama3.2:1b",
                                    params=TaskParams(), mapping={"product_type": "type", "name": "nom"},
                                    owner="bench", lanes=[LaneSpec(name, SLOTS) for name in clients])
        print(f"large job: {ROWS:,} rows written in {time.perf_counter() - started:.1f} s", flush=True)
        del table, body
        manager.start(job_id)
        run_started = time.perf_counter()
        figures = []
        try:
            for fraction in (0.01, 0.5):
                while manager.progress(job_id).finished_rows < ROWS * fraction:
                    time.sleep(0.2)
                figures.append((fraction, render_seconds(job_id), rss_mib(), manager.progress(job_id)))
            manager.wait(job_id)
            figures.append((1.0, render_seconds(job_id), rss_mib(), manager.progress(job_id)))
        finally:
            manager.shutdown()
            st.cache_resource.clear()
            for client in clients.values():
                client.close()
            for standin in standins:
                standin.stop()
        elapsed = time.perf_counter() - run_started
        for fraction, render, rss, progress in figures:
            print(f"  at {fraction:>4.0%}: {progress.finished_rows:>7,} rows written, page render {render * 1000:6.0f} "
                  f"ms (target < 1000), process RSS {rss:6.0f} MiB", flush=True)
        growth = figures[-1][2] / figures[0][2]
        print(f"large job: {ROWS:,} rows in {elapsed:.0f} s ({ROWS / elapsed:.0f} rows/s); RSS at 100 % / at 1 % = "
              f"{growth:.2f} (1.0 is flat); render at 100 % / at 1 % = {figures[-1][1] / figures[0][1]:.2f}")


if __name__ == "__main__":
    main()
