"""The shipped monitoring files against a real Prometheus: every Grafana panel's query runs without an error,
the alerting rules load and evaluate cleanly, and a backend going down fires an alert the wall's feed reads."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from services.config import Backend, Settings
from services.metrics import record_generation
from services.monitoring.alerts import AlertFeed
from services.monitoring.probe import Prober
from tests.integration.conftest import ALERT_RULES, ROOT, RunningPrometheus, start_prometheus
from tests.standin import StandinServer

pytestmark = pytest.mark.integration
DASHBOARD = ROOT / "monitoring" / "grafana-dashboard.json"
# What Grafana would put in place of its variables: every backend, every model.
GRAFANA_VARIABLES = {"$backend": ".*", "$model": ".*", "${backend}": ".*", "${model}": ".*",
                     "$__rate_interval": "1m", "$__interval": "15s"}


def panel_queries() -> list[tuple[str, str, bool]]:
    """(panel title, PromQL with variables filled in, instant) for every target of every panel."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((panel["title"], expr, bool(target.get("instant"))))
    return out


def traffic(tmp_path: Path, seconds: float = 6.0) -> None:
    """Generations and probe rounds (with a canary) over several scrapes, so every series exists."""
    with StandinServer() as server:
        server.state.mark_loaded("llama3.2:1b", "5m")
        settings = Settings(backends=(Backend(name="grafana-box", kind="ollama", url=server.url),),
                            data_dir=tmp_path, metrics_port=0, canary_model="llama3.2:1b", canary_interval_s=0.5,
                            canary_timeout_s=10.0)
        prober = Prober(settings)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            prober.run_round()
            record_generation(model="graf-a:1b", status="success", duration_s=1.5, ttft_s=0.2,
                              prompt_tokens=12, completion_tokens=40)
            record_generation(model="graf-a:1b", status="error", duration_s=0.3, ttft_s=None)
            time.sleep(0.3)
        prober.stop()


def test_every_grafana_panel_query_runs_without_an_error(prometheus: RunningPrometheus, tmp_path: Path) -> None:
    traffic(tmp_path)
    time.sleep(2.5)  # two more scrapes, so the last samples are in
    queries = panel_queries()
    assert len(queries) >= 20
    end = time.time()
    problems, empty = [], []
    with httpx.Client(base_url=prometheus.url, timeout=10) as client:
        for title, expr, instant in queries:
            if instant:
                response = client.get("/api/v1/query", params={"query": expr, "time": end})
            else:
                response = client.get("/api/v1/query_range",
                                      params={"query": expr, "start": end - 120, "end": end, "step": "2s"})
            body = response.json()
            if response.status_code != 200 or body.get("status") != "success" or body.get("warnings"):
                problems.append(f"{title}: {expr} -> {response.status_code} {body.get('error')} {body.get('warnings')}")
            elif not body["data"]["result"]:
                empty.append(title)
    assert problems == []
    # With traffic, probes and a canary, every panel has something to draw (ALERTS aside, which has vector(0)).
    assert empty == []


def test_the_shipped_rules_load_and_evaluate_cleanly(prometheus: RunningPrometheus) -> None:
    deadline = time.monotonic() + 30
    rules: list[dict] = []
    while time.monotonic() < deadline:
        groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("2") and not r["lastEvaluation"].startswith("0001")
                         for r in rules):
            break
        time.sleep(0.5)
    names = {r["name"] for r in rules}
    assert names == {"OllamaBackendDown", "OllamaAvailabilityBelowTarget", "OllamaSlowResponses",
                     "OllamaHighErrorRatio", "OllamaCanaryFailing", "OllamaDashboardExporterDown"}
    assert all(r["health"] == "ok" and not r.get("lastError") for r in rules), rules


def test_a_backend_going_down_fires_an_alert_the_wall_feed_reads(exporter_port: int, tmp_path: Path,
                                                                 dead_backend: Backend) -> None:
    # The shipped expressions, with every `for:` at zero so the test does not wait a minute.
    quick = tmp_path / "alerts-quick.yml"
    quick.write_text(re.sub(r"for: \d+m", "for: 0s", ALERT_RULES.read_text()))
    running = start_prometheus(tmp_path, exporter_port, rules=quick)
    feed = AlertFeed(running.url, timeout_s=2.0, refresh_s=0.0)
    try:
        down = Backend(name="wall-down-box", kind="ollama", url=dead_backend.url)
        prober = Prober(Settings(backends=(down,), data_dir=tmp_path, metrics_port=0, probe_timeout_s=1.0))
        prober.run_round()
        prober.stop()
        deadline = time.monotonic() + 30
        view = feed.current(max_wait_s=3)
        while time.monotonic() < deadline:
            view = feed.current(max_wait_s=3)
            if any(a.labels.get("backend") == "wall-down-box" for a in view.alerts):
                break
            time.sleep(0.5)
        firing = [a for a in view.alerts if a.labels.get("backend") == "wall-down-box"]
        assert {a.name for a in firing} >= {"OllamaBackendDown"}, view
        alert = next(a for a in firing if a.name == "OllamaBackendDown")
        assert alert.severity == "critical" and alert.summary == "Backend wall-down-box is down"
        assert view.known and not view.stale and alert.active_since is not None

        running.stop()  # Prometheus goes away: the last alerts stay, marked with why they are not current
        later = feed.current(max_wait_s=3)
        assert later.stale and "not reachable" in later.error
        assert any(a.name == "OllamaBackendDown" for a in later.alerts)
    finally:
        feed.close()
        running.stop()
