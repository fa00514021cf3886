"""The /metrics exporter: started once per process, serves the generation and probe metrics, survives a busy port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from services import exporter
from services.config import Backend, Settings
from services.metrics import record_generation
from tests.standin import StandinServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def fresh_exporter() -> Iterator[None]:
    exporter.reset_for_tests()
    exporter.stop_monitoring()
    yield
    exporter.stop_monitoring()
    exporter.reset_for_tests()


def test_serves_generation_and_probe_metrics(tmp_path: Path) -> None:
    port = free_port()
    with StandinServer() as server:
        server.state.mark_loaded("llama3.2:1b", "5m")
        settings = Settings(backends=(Backend(name="exported", kind="ollama", url=server.url),),
                            data_dir=tmp_path, metrics_port=port, probe_interval_s=60)
        monitoring = exporter.start_monitoring(settings)
        monitoring.prober.run_round()
        record_generation(model="exporter-test:1b", status="success", duration_s=1.2, ttft_s=0.3, stats=None)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'ai_requests_total{model="exporter-test:1b",status="success"}' in text
    assert 'ai_request_duration_seconds_bucket{le="2.5",model="exporter-test:1b"}' in text
    assert 'ollama_up{backend="exported"} 1.0' in text
    assert 'ollama_model_vram_bytes{backend="exported",model="llama3.2:1b"}' in text
    assert 'ollama_probe_latency_seconds{backend="exported",endpoint="ps"}' in text
    assert 'ollama_loaded_models{backend="exported"} 1.0' in text


def test_started_once_per_process() -> None:
    port = free_port()
    first = exporter.start_exporter(port)
    second = exporter.start_exporter(free_port())
    assert first is second and first.running and second.port == port


def test_a_taken_port_is_logged_and_the_dashboard_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = exporter.start_exporter(port)
    assert not result.running
    assert f"port {port} unavailable" in result.error
    assert "Metrics exporter not started" in caplog.text
    assert "Traceback" not in caplog.text


def test_port_zero_disables_it() -> None:
    result = exporter.start_exporter(0)
    assert not result.running and "disabled" in result.error


def test_start_monitoring_is_idempotent_and_replaced_when_settings_change(tmp_path: Path) -> None:
    settings = Settings(backends=(Backend(name="x", kind="ollama", url="http://127.0.0.1:9"),), data_dir=tmp_path,
                        metrics_port=0, probe_interval_s=60, probe_timeout_s=0.5)
    first = exporter.start_monitoring(settings)
    assert exporter.start_monitoring(settings) is first
    other = exporter.start_monitoring(replace(settings, probe_interval_s=30))
    first.prober._thread.join(5)
    assert other is not first and not first.prober.running and other.prober.running


def test_a_bad_panels_file_is_refused_at_start_and_the_rest_runs(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    panels = tmp_path / "panels.toml"
    panels.write_text("[[panels]\n")
    settings = Settings(backends=(Backend(name="x", kind="ollama", url="http://127.0.0.1:9"),), data_dir=tmp_path,
                        metrics_port=0, probe_interval_s=60, probe_timeout_s=0.5, panels_file=panels,
                        prometheus_url="http://127.0.0.1:9")
    monitoring = exporter.start_monitoring(settings)
    assert monitoring.panels is None
    assert "is not valid TOML" in monitoring.panels_error and "line 1" in monitoring.panels_error
    assert monitoring.prober.running
    assert "Prometheus panels are off" in caplog.text
