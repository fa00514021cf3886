"""A real Prometheus (Debian's /usr/bin/prometheus) on a free loopback port, scraping the dashboard's exporter
every second and evaluating the shipped alerting rules (``monitoring/alerts.yml``) every second."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.monitoring.exporter import start_exporter
from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERT_RULES = ROOT / "monitoring" / "alerts.yml"


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_prometheus(tmp: Path, exporter_port: int, *, rules: Path | None = ALERT_RULES) -> RunningPrometheus:
    """Start Prometheus and wait until it is ready (fails the test with its log if it is not)."""
    if not Path(PROMETHEUS).exists():
        pytest.skip("the prometheus binary is missing (make test installs Debian's prometheus package)")
    config = tmp / "prometheus.yml"
    rule_files = f"rule_files:\n  - {rules}\n" if rules is not None else ""
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n" + rule_files +
        "scrape_configs:\n  - job_name: ollama-dashboard\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter_port}']\n")
    port = free_port()
    log = tmp / "prometheus.log"
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--query.lookback-delta=30s"],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return RunningPrometheus(url, process, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"prometheus did not become ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def exporter_port() -> Iterator[int]:
    port = free_port()
    started = start_exporter(port)
    assert started.running, started.error
    yield port
    started.stop()


@pytest.fixture(scope="module")
def prometheus(exporter_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    running = start_prometheus(tmp_path_factory.mktemp("prometheus"), exporter_port)
    yield running
    running.stop()
