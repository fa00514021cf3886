"""A real Prometheus (Debian's /usr/bin/prometheus) scraping the dashboard's exporter every second, read back
through the dashboard's own panels (services.monitoring.prometheus) with the shipped panels file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.config import Backend, Settings
from services.metrics import record_generation
from services.monitoring.prometheus import Panel, PanelRunner, PrometheusSource, load_panels
from tests.integration.conftest import RunningPrometheus
from tests.standin import StandinServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_panels_read_back_real_scraped_data(prometheus: RunningPrometheus, tmp_path: Path) -> None:
    with StandinServer() as server:
        server.state.mark_loaded("llama3.2:1b", "5m")
        settings = Settings(backends=(Backend(name="integration", kind="ollama", url=server.url),),
                            data_dir=tmp_path, metrics_port=0)
        from services.monitoring.probe import Prober

        prober = Prober(settings)
        # Traffic over several scrapes, so rates and the histogram quantile have two points to compare.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            prober.run_round()
            record_generation(model="integ-a:1b", status="success", duration_s=1.5, ttft_s=0.2)
            record_generation(model="integ-a:1b", status="error", duration_s=0.3, ttft_s=None)
            record_generation(model="integ-b:1b", status="success", duration_s=4.0, ttft_s=0.5)
            time.sleep(0.25)
        prober.stop()

    panels = load_panels(ROOT / "monitoring" / "panels.toml")
    runner = PanelRunner(PrometheusSource(prometheus.url), panels, cache_s=0)
    try:
        results = {r.panel.id: r for r in runner.run(120)}
    finally:
        runner.close()
    states = {k: (v.state, v.message) for k, v in results.items()}
    assert all(v.state == "data" for v in results.values()), states

    per_minute = results["requests_per_minute"].frame
    assert {"integ-a:1b", "integ-b:1b"} <= set(per_minute["series"])
    assert per_minute[per_minute.series == "integ-a:1b"]["value"].max() > 0

    errors = results["error_ratio"].frame
    ratio_a = errors[errors.series == "integ-a:1b"]["value"].dropna()
    assert not ratio_a.empty and ratio_a.iloc[-1] == pytest.approx(0.5, abs=0.05)
    assert errors[errors.series == "integ-b:1b"]["value"].dropna().iloc[-1] == 0.0  # no errors: 0, not "no data"

    p95 = results["p95_latency"].frame
    assert p95[p95.series == "integ-b:1b"]["value"].dropna().iloc[-1] == pytest.approx(4.75, abs=0.3)

    top = results["top_models"].frame
    assert set(top["series"]) >= {"integ-a:1b", "integ-b:1b"}

    up = results["backends_up"].frame
    assert up[up.series == "integration"]["value"].iloc[-1] == 1.0


def test_bad_promql_against_real_prometheus_is_an_error_with_its_reason(prometheus: RunningPrometheus) -> None:
    bad = Panel(id="bad", title="bad", query="sum by (model (rate(ai_requests_total[1m]))", timeout_s=5)
    good = Panel(id="good", title="good", query="up", timeout_s=5)
    runner = PanelRunner(PrometheusSource(prometheus.url), (bad, good), cache_s=0)
    try:
        results = {r.panel.id: r for r in runner.run(60)}
    finally:
        runner.close()
    assert results["bad"].state == "error"
    assert "400" in results["bad"].message and "parse error" in results["bad"].message
    assert results["good"].state == "data"
