"""The /metrics exporter and the monitoring service: serve the generation and probe metrics, survive a busy
port and a broken panels file. Once per process is the composition root's job (tests/pages/test_runtime.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.config import Backend, Settings
from services.db import Database
from services.metrics import record_generation
from services.monitoring.exporter import Exporter, start_exporter
from services.monitoring.service import Monitoring, start_monitoring
from tests.standin import StandinServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def started() -> Iterator[list[Exporter | Monitoring]]:
    """Everything a test starts is stopped after it."""
    things: list[Exporter | Monitoring] = []
    yield things
    for thing in things:
        thing.stop()


def monitor(settings: Settings, started: list[Exporter | Monitoring]) -> Monitoring:
    exporter = start_exporter(settings.metrics_port)
    monitoring = start_monitoring(settings, Database.in_dir(settings.data_dir), exporter)
    started.extend([exporter, monitoring])
    return monitoring


def test_serves_generation_and_probe_metrics(tmp_path: Path, started: list[Exporter | Monitoring]) -> None:
    port = free_port()
    with StandinServer() as server:
        server.state.mark_loaded("llama3.2:1b", "5m")
        settings = Settings(backends=(Backend(name="exported", kind="ollama", url=server.url),),
                            data_dir=tmp_path, metrics_port=port, probe_interval_s=60)
        monitoring = monitor(settings, started)
        monitoring.prober.run_round()
        record_generation(model="exporter-test:1b", status="success", duration_s=1.2, ttft_s=0.3)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'ai_requests_total{model="exporter-test:1b",status="success"}' in text
    assert 'ai_request_duration_seconds_bucket{le="2.5",model="exporter-test:1b"}' in text
    assert 'ollama_up{backend="exported"} 1.0' in text
    assert 'ollama_model_vram_bytes{backend="exported",model="llama3.2:1b"}' in text
    assert 'ollama_probe_latency_seconds{backend="exported",endpoint="ps"}' in text
    assert 'ollama_loaded_models{backend="exported"} 1.0' in text


def test_a_second_exporter_on_the_same_port_is_refused_not_raised(started: list[Exporter | Monitoring]) -> None:
    port = free_port()
    first = start_exporter(port)
    started.append(first)
    second = start_exporter(port)
    assert first.running and not second.running and "unavailable" in second.error


def test_a_taken_port_is_logged_and_the_dashboard_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = start_exporter(port)
    assert not result.running
    assert f"port {port} unavailable" in result.error
    assert "Metrics exporter not started" in caplog.text
    assert "Traceback" not in caplog.text


def test_port_zero_disables_it() -> None:
    result = start_exporter(0)
    assert not result.running and "disabled" in result.error


def test_stopping_monitoring_stops_its_prober(tmp_path: Path, started: list[Exporter | Monitoring]) -> None:
    settings = Settings(backends=(Backend(name="x", kind="ollama", url="http://127.0.0.1:9"),), data_dir=tmp_path,
                        metrics_port=0, probe_interval_s=60, probe_timeout_s=0.5)
    monitoring = monitor(settings, started)
    assert monitoring.prober.running
    monitoring.stop()
    monitoring.prober._thread.join(5)
    assert not monitoring.prober.running


def test_a_bad_panels_file_is_refused_at_start_and_the_rest_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                 started: list[Exporter | Monitoring]) -> None:
    panels = tmp_path / "panels.toml"
    panels.write_text("[[panels]\n")
    settings = Settings(backends=(Backend(name="x", kind="ollama", url="http://127.0.0.1:9"),), data_dir=tmp_path,
                        metrics_port=0, probe_interval_s=60, probe_timeout_s=0.5, panels_file=panels,
                        prometheus_url="http://127.0.0.1:9")
    monitoring = monitor(settings, started)
    assert monitoring.panels is None
    assert "is not valid TOML" in monitoring.panels_error and "line 1" in monitoring.panels_error
    assert monitoring.prober.running
    assert "Prometheus panels are off" in caplog.text
