"""The prober against real loopback stand-ins: classification, timeouts, concurrency, metrics, recovery."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from services.config import Backend, Settings
from services.metrics import REGISTRY
from services.monitoring import probe as probe_module
from services.monitoring.probe import Prober, ProbeResult, Thresholds, _ProbeClient, probe_backend
from tests.standin import SilentHost, StandinServer


def settings_for(backends: list[Backend], tmp_path: Path, **overrides: object) -> Settings:
    base = Settings(backends=tuple(backends), data_dir=tmp_path, probe_interval_s=0.2, probe_timeout_s=2.0,
                    slow_response_ms=1000.0)
    return replace(base, **overrides)  # type: ignore[arg-type]


def probe(backend: Backend, timeout_s: float = 2.0, slow_ms: float = 1000.0):
    client = _ProbeClient(backend, timeout_s)
    try:
        return probe_backend(backend, client, Thresholds(slow_ms=slow_ms, timeout_s=timeout_s))
    finally:
        client.close()


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_healthy_backend_is_online_with_loaded_models_and_vram(standin: StandinServer, backend: Backend) -> None:
    standin.state.mark_loaded("llama3.2:1b", "5m")
    standin.state.mark_loaded("qwen3:0.6b", -1)
    result = probe(backend)
    assert result.status == "online" and result.up
    assert result.version == "0.33.0"
    assert result.installed_models == 4
    loaded = {m.name: m for m in result.loaded}
    assert set(loaded) == {"llama3.2:1b", "qwen3:0.6b"}
    assert loaded["llama3.2:1b"].size_vram == int(int(1_321_098_329 * 1.25) * 0.6)
    assert 290 < loaded["llama3.2:1b"].unload_in_s <= 300
    assert loaded["qwen3:0.6b"].unload_in_s == float("inf")
    assert result.vram_bytes == sum(m.size_vram for m in result.loaded)
    assert all(t is not None and t >= 0 for t in (result.version_ms, result.tags_ms, result.ps_ms))


def test_probe_requests_are_marked_and_kept_apart_from_page_requests(standin: StandinServer,
                                                                      backend: Backend) -> None:
    probe(backend)
    assert [r["path"] for r in standin.state.probe_requests] == ["/api/version", "/api/tags", "/api/ps"]
    assert standin.state.requests == []


def test_dead_backend_is_offline_with_the_reason(dead_backend: Backend) -> None:
    result = probe(dead_backend)
    assert result.status == "offline" and not result.up
    assert "Unreachable" in result.error and "refused" in result.error.lower()


def test_slow_backend_is_degraded_against_the_configured_threshold(standin: StandinServer,
                                                                    backend: Backend) -> None:
    standin.state.configure(read_delay_s=0.2)
    result = probe(backend, timeout_s=3.0, slow_ms=100.0)
    assert result.status == "degraded" and result.up
    assert any("slow" in r and "threshold 100 ms" in r for r in result.reasons)
    assert probe(backend, timeout_s=3.0, slow_ms=5000.0).status == "online"


def test_a_host_that_never_answers_is_offline_by_the_probe_s_own_deadline() -> None:
    with SilentHost() as host:
        result = probe(Backend(name="hung", kind="ollama", url=host.url), timeout_s=0.5)
        assert host.requests  # it was asked, and never answered: the probe gave up by its own deadline
    assert result.status == "offline" and not result.up
    assert "BackendTimeout" in result.error


def test_failing_ps_degrades_but_keeps_the_backend_up(standin: StandinServer, backend: Backend) -> None:
    # /api/ps alone slower than what is left of the budget: version and tags answered in time.
    original = standin.state.config.read_delay_s
    assert original == 0.0
    client = _ProbeClient(backend, 1.0)
    client.ps = lambda: (_ for _ in ()).throw(__import__("services.errors").errors.Busy("server busy", 503))
    try:
        result = probe_backend(backend, client, Thresholds(slow_ms=1000, timeout_s=1.0))
    finally:
        client.close()
    assert result.status == "degraded" and result.up
    assert result.reasons == ("/api/ps failed: HTTP 503: server busy",)


def test_one_round_probes_all_backends_concurrently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six probes that each wait until all six are running: a round that probed one after the other would
    leave every probe at the barrier until it broke."""
    backends = [Backend(name=f"b{i}", kind="ollama", url=f"http://127.0.0.1:{9000 + i}") for i in range(6)]
    together = threading.Barrier(len(backends), timeout=20)

    def probe_at_the_barrier(backend: Backend, *_: object) -> ProbeResult:
        together.wait()
        return ProbeResult(backend.name, backend.url, time.time(), "online", True)

    monkeypatch.setattr(probe_module, "probe_backend", probe_at_the_barrier)
    prober = Prober(settings_for(backends, tmp_path, probe_timeout_s=30.0, slow_response_ms=5000.0))
    report = prober.run_round()
    prober.stop()
    assert {r.status for r in report.results.values()} == {"online"}
    assert not together.broken


def test_round_publishes_metrics_and_removes_unloaded_models(tmp_path: Path) -> None:
    with StandinServer() as server:
        server.state.mark_loaded("phi3:mini", "5m")
        backend = Backend(name="metrics-box", kind="ollama", url=server.url)
        prober = Prober(settings_for([backend], tmp_path))
        prober.run_round()
        assert sample("ollama_up", backend="metrics-box") == 1.0
        assert sample("ollama_loaded_models", backend="metrics-box") == 1.0
        assert sample("ollama_model_vram_bytes", backend="metrics-box", model="phi3:mini") > 0
        assert sample("ollama_backend_state", backend="metrics-box", ollama_backend_state="online") == 1.0
        assert sample("ollama_version_info", backend="metrics-box", version="0.33.0") == 1.0
        assert sample("ollama_probe_latency_seconds", backend="metrics-box", endpoint="tags") >= 0
        server.state.mark_loaded("phi3:mini", 0)
        prober.run_round()
        assert sample("ollama_model_vram_bytes", backend="metrics-box", model="phi3:mini") is None
        assert sample("ollama_loaded_models", backend="metrics-box") == 0.0
        server.halt()
        prober.run_round()
        prober.stop()
    assert sample("ollama_up", backend="metrics-box") == 0.0
    assert sample("ollama_backend_state", backend="metrics-box", ollama_backend_state="offline") == 1.0


def test_outage_and_recovery_on_the_same_port(tmp_path: Path) -> None:
    first = StandinServer().start()
    port = first.port
    backend = Backend(name="flaky", kind="ollama", url=first.url)
    prober = Prober(settings_for([backend], tmp_path))
    try:
        assert prober.run_round().results["flaky"].status == "online"
        first.halt()
        assert prober.run_round().results["flaky"].status == "offline"
        with StandinServer(port=port):
            assert prober.run_round().results["flaky"].status == "online"
    finally:
        prober.stop()


def test_canary_measures_first_token_and_speed(tmp_path: Path) -> None:
    with StandinServer() as server:
        server.state.configure(tokens_per_second=100.0, reply_tokens=8)
        backend = Backend(name="canary-box", kind="ollama", url=server.url)
        prober = Prober(settings_for([backend], tmp_path, canary_model="llama3.2:1b", canary_timeout_s=10.0))
        result = prober.run_round().results["canary-box"]
        second = prober.run_round().results["canary-box"]  # not due again before canary_interval_s
        prober.stop()
        generate_calls = [r for r in server.state.probe_requests if r["path"] == "/api/generate"]
    assert result.status == "online"
    assert result.canary_model == "llama3.2:1b"
    assert result.canary_ttft_ms is not None and result.canary_ttft_ms > 0
    assert result.canary_tps is not None and 20 < result.canary_tps < 500
    assert second.canary_model == ""
    assert len(generate_calls) == 1
    assert sample("ollama_canary_tokens_per_second", backend="canary-box", model="llama3.2:1b") > 0


def test_failing_canary_degrades_the_backend(tmp_path: Path) -> None:
    with StandinServer() as server:
        backend = Backend(name="canary-missing", kind="ollama", url=server.url)
        prober = Prober(settings_for([backend], tmp_path, canary_model="no-such-model:1b"))
        result = prober.run_round().results["canary-missing"]
        prober.stop()
    assert result.status == "degraded"
    assert any("canary on no-such-model:1b failed" in r for r in result.reasons)


def test_background_loop_runs_rounds_and_stops(tmp_path: Path) -> None:
    rounds = []
    with StandinServer() as server:
        backend = Backend(name="loop", kind="ollama", url=server.url)
        prober = Prober(settings_for([backend], tmp_path, probe_interval_s=0.1), on_round=rounds.append).start()
        assert prober.wait_for_round(1, after=3, timeout_s=20)  # a 4th round began: 3 rounds were reported
        prober.stop(timeout=5)
    assert len(rounds) >= 3
    assert not prober.running
    assert prober.latest()["loop"].status == "online"


def test_a_failing_store_callback_does_not_stop_the_prober(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    def broken(_report: object) -> None:
        raise RuntimeError("disk on fire")

    with StandinServer() as server:
        prober = Prober(settings_for([Backend(name="cb", kind="ollama", url=server.url)], tmp_path),
                        on_round=broken)
        assert prober.run_round().results["cb"].status == "online"
        assert prober.run_round().results["cb"].status == "online"
        prober.stop()
    assert "Storing a probe round failed" in caplog.text
