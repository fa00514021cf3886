"""Batch engine throughput and memory against the stand-in.

Throughput: the stand-in serves P parallel slots, each request taking T seconds; 200 description rows
at concurrency P should finish in about 200·T/P. The ratio achieved / ideal (P/T rows per second) is
the figure (target >= 0.9), together with the most requests the stand-in ever saw in flight (must be <= P).

Memory: the engine's peak Python allocation (tracemalloc) while running N and 10·N fast rows; rows live in
SQLite, not in memory, so the ratio should stay near 1.
"""

from __future__ import annotations

import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from services.config import Backend
from services.db import Database
from services.ollama.client import OllamaClient
from services.studio.batch import BatchManager
from services.studio.tabular import Table, read_table
from services.studio.tasks import TaskParams
from services.studio.templates import TemplateStore
from tests.standin import StandinServer

REPLY = "Une robe élégante et fluide, parfaite pour vos soirées."


def _table(rows: int) -> Table:
    body = "".join(f"robe;Robe {i};noir\n" for i in range(rows))
    return read_table(("type;nom;couleur\n" + body).encode(), "bench.csv")


def _quiet(server: StandinServer) -> StandinServer:
    """Connections reset by the client after its final line are expected; keep them out of the report."""
    server.httpd.handle_error = lambda *_args: None  # type: ignore[method-assign]
    return server


def _client(server: StandinServer) -> OllamaClient:
    return OllamaClient(Backend(name="standin", kind="ollama", url=server.url), stall_timeout_s=30)


def _run(client: OllamaClient, data_dir: Path, rows: int, concurrency: int) -> tuple[float, BatchManager, str]:
    manager = BatchManager(Database.in_dir(data_dir), lambda _n: client)
    job_id = manager.create_job(_table(rows), template=TemplateStore(data_dir).latest("description"),
                                model="llama3.2:1b", backend="standin", params=TaskParams(),
                                mapping={"product_type": "type", "name": "nom", "colour": "couleur"},
                                concurrency=concurrency, owner="bench")
    started = time.perf_counter()
    manager.start(job_id)
    manager.wait(job_id)
    return time.perf_counter() - started, manager, job_id


def throughput(parallel: int = 4, request_time_s: float = 0.5, rows: int = 200) -> float:
    with _quiet(StandinServer()) as server, tempfile.TemporaryDirectory() as tmp:
        server.state.configure(parallel=parallel, request_time_s=request_time_s, replies={"Product data": REPLY})
        client = _client(server)
        elapsed, manager, job_id = _run(client, Path(tmp), rows, parallel)
        client.close()
        progress = manager.progress(job_id)
        manager.shutdown()
        ideal = parallel / request_time_s
        achieved = progress.done / elapsed
        ratio = achieved / ideal
        print(f"throughput: {rows} rows, P={parallel}, T={request_time_s}s: {elapsed:.2f} s, "
              f"{achieved:.2f} rows/s vs ideal {ideal:.2f} -> ratio {ratio:.3f} (target >= 0.9)")
        print(f"max in flight seen by the stand-in: {server.state.max_in_flight} (configured {parallel}); "
              f"done {progress.done}, failed {progress.failed}")
        return ratio


def raw_client_baseline(parallel: int = 4, request_time_s: float = 0.5, rows: int = 200) -> float:
    """The same requests from P bare threads (no engine, no checks, no SQLite): what the stand-in itself allows."""
    with _quiet(StandinServer()) as server:
        server.state.configure(parallel=parallel, request_time_s=request_time_s, replies={"Product data": REPLY})
        client = _client(server)
        counter = iter(range(rows))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                for _ in client.chat("llama3.2:1b", [{"role": "user", "content": "Product data: robe"}]):
                    pass

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(parallel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        client.close()
        ratio = rows / elapsed / (parallel / request_time_s)
        print(f"baseline (bare client threads, same stand-in): {elapsed:.2f} s -> ratio {ratio:.3f}; the engine's "
              "gap to this is its own overhead (checks, SQLite)")
        return ratio


def memory(small: int = 200, factor: int = 10, concurrency: int = 8) -> float:
    peaks = []
    for rows in (small, small * factor):
        with _quiet(StandinServer()) as server, tempfile.TemporaryDirectory() as tmp:
            server.state.configure(tokens_per_second=1e6, replies={"Product data": REPLY})
            tracemalloc.start()
            client = _client(server)
            _, manager, job_id = _run(client, Path(tmp), rows, concurrency)
            # Measure the run alone: warm up with a first job, then trace only the second job's execution.
            job2 = manager.create_job(_table(rows), template=manager.job(job_id).template, model="llama3.2:1b",
                                      backend="standin", params=TaskParams(),
                                      mapping={"product_type": "type", "name": "nom", "colour": "couleur"},
                                      concurrency=concurrency, owner="bench")
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            manager.start(job2)
            manager.wait(job2)
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            client.close()
            peaks.append(peak)
            print(f"memory: {rows} rows at concurrency {concurrency}: peak +{peak / 1024:.0f} KiB during the run "
                  f"({manager.progress(job2).done} done)")
            manager.shutdown()
    ratio = peaks[1] / peaks[0]
    print(f"memory growth for {factor}x the rows: {ratio:.2f}x (1.0 means flat)")
    return ratio


def main() -> None:
    throughput()
    raw_client_baseline()
    memory()


if __name__ == "__main__":
    main()
