"""Pull progress handling: CPU per 10,000 progress lines and a job's memory after 50,000 lines.

The stand-in runs in a child process, so this process's CPU time is the consumer's alone. Baseline:
reading the same raw NDJSON stream with httpx (``iter_lines``, no parsing). Measured: the dashboard's
``PullManager`` job thread (NDJSONStream parsing + error checks + ``PullProgress`` aggregation + periodic
SQLite writes). Memory: tracemalloc of a job after 5,000 and after 50,000 lines; it must not grow with
the line count. The page itself re-renders progress on a fixed timer, not per line.
"""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import httpx

from services.config import Backend
from services.db import Database
from services.models.pull_progress import UI_REFRESH_S, PullProgress
from services.models.pulls import PullManager
from services.ollama.client import OllamaClient

ROOT = Path(__file__).resolve().parents[1]
MODEL = "qwen2.5:0.5b"  # 20,000,000 bytes of weights in the stand-in's registry


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _configure(url: str, lines: int) -> None:
    """Make the stand-in send about ``lines`` progress lines for MODEL, as fast as it can."""
    step = 20_000_000 // lines
    httpx.post(f"{url}/_standin/reset", timeout=5).raise_for_status()  # forget pulled bytes (no resume)
    httpx.post(f"{url}/_standin/config", json={"pull_interval_s": 1e-9, "pull_bytes_per_s": (step - 1) * 1e9},
               timeout=5).raise_for_status()


def _baseline(url: str) -> tuple[float, int]:
    started = time.process_time()
    count = 0
    with httpx.stream("POST", f"{url}/api/pull", json={"model": MODEL}, timeout=60) as response:
        for _ in response.iter_lines():
            count += 1
    return time.process_time() - started, count


def _dashboard(url: str, data_dir: Path) -> tuple[float, int, PullManager, str]:
    backend = Backend(name="bench", kind="ollama", url=url)
    client = OllamaClient(backend)
    manager = PullManager(Database.in_dir(data_dir), lambda b: client, [backend])
    started = time.process_time()
    snap, _ = manager.start(backend, MODEL, "bench")
    done = manager.wait(snap.id, 300)
    elapsed = time.process_time() - started
    assert done is not None and done.state == "succeeded", done
    return elapsed, done.lines, manager, snap.id


def _job_memory(url: str, data_dir: Path, lines: int) -> tuple[int, int]:
    """Bytes still allocated by one finished job (kept by the manager), and the peak while it ran."""
    _configure(url, lines)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    _, count, manager, _ = _dashboard(url, data_dir)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count >= lines, (count, lines)
    del manager
    return current - before, peak - before


def _progress_memory(lines: int) -> int:
    gc.collect()
    tracemalloc.start()
    progress = PullProgress()
    for i in range(lines):
        progress.update({"status": "pulling abc", "digest": f"sha256:{i % 5}", "total": lines, "completed": i})
    current = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert progress.lines == lines
    return current


def main() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "tests.standin", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp:
            _configure(url, 1_000)
            _baseline(url)  # warm-up: imports, connection setup
            _configure(url, 10_000)
            base_cpu, base_lines = _baseline(url)
            _configure(url, 10_000)
            dash_cpu, dash_lines, _, _ = _dashboard(url, Path(tmp) / "cpu")
            per_10k_base = base_cpu / base_lines * 10_000
            per_10k_dash = dash_cpu / dash_lines * 10_000
            print(f"raw httpx read:        {per_10k_base * 1000:7.1f} ms CPU per 10,000 lines ({base_lines} lines)")
            print(f"dashboard pull job:    {per_10k_dash * 1000:7.1f} ms CPU per 10,000 lines ({dash_lines} lines)")
            print(f"ratio job / raw read:  {per_10k_dash / per_10k_base:7.2f}x")

            small_current, small_peak = _job_memory(url, Path(tmp) / "mem5k", 5_000)
            big_current, big_peak = _job_memory(url, Path(tmp) / "mem50k", 50_000)
            print(f"job memory after  5,000 lines: {small_current / 1024:7.1f} KiB retained, "
                  f"{small_peak / 1024:7.1f} KiB peak")
            print(f"job memory after 50,000 lines: {big_current / 1024:7.1f} KiB retained, "
                  f"{big_peak / 1024:7.1f} KiB peak")
            print(f"ratio 50k / 5k retained:       {big_current / max(small_current, 1):7.2f}x (flat = O(1))")
        p5, p50 = _progress_memory(5_000), _progress_memory(50_000)
        print(f"PullProgress alone: {p5} B after 5,000 lines, {p50} B after 50,000 lines")
        print(f"UI refresh: one fragment run every {UI_REFRESH_S} s whatever the line rate "
              f"(the job handled ~{dash_lines / max(dash_cpu, 1e-9):,.0f} lines per CPU-second here)")
    finally:
        server.terminate()
        server.wait(10)
