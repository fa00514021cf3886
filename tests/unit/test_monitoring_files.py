"""The shipped monitoring files: alert rules checked and unit-tested by promtool, every metric they and the
Grafana dashboard read is one the exporter really exports, and the deployment files load the rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

import services.monitoring.probe  # noqa: F401  (registers the ollama_* gauges)
from services.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
BUILT_IN = {"up", "ALERTS", "vector", "time"}  # Prometheus's own series and functions
METRIC = re.compile(r"\b((?:ai|ollama)_[a-z_]+|up|ALERTS)\b")


def exported_names() -> set[str]:
    """Every sample name the registry exposes (histograms with _bucket/_sum/_count, counters with _total)."""
    names = set()
    for metric in REGISTRY.collect():
        names.add(metric.name)
        for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
            names.add(metric.name + suffix)
    return names


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is missing (make test installs Debian's prometheus package)")
    return subprocess.run([tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rules_and_the_config_that_loads_them() -> None:
    for args in (("check", "rules", "monitoring/alerts.yml"), ("check", "config", "prometheus.yml")):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", "monitoring/alerts.test.yml")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_the_rules_read_only_metrics_the_exporter_exports() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    used = {name for rule in rules for name in METRIC.findall(rule["expr"])}
    assert used - BUILT_IN <= exported_names(), used - BUILT_IN - exported_names()
    assert {"ollama_up", "ollama_canary_up", "ai_requests_total", "ai_request_duration_seconds_bucket"} <= used
    # the seeds' thresholds: 1 minute down, 99 % over an hour, 5 s p95 and 5 % errors for 5 minutes
    by_name = {rule["alert"]: rule for rule in rules}
    assert by_name["OllamaBackendDown"]["for"] == "1m"
    assert "< 0.99" in by_name["OllamaAvailabilityBelowTarget"]["expr"]
    assert "[1h]" in by_name["OllamaAvailabilityBelowTarget"]["expr"]
    assert by_name["OllamaSlowResponses"]["expr"].endswith("> 5") and by_name["OllamaSlowResponses"]["for"] == "5m"
    assert by_name["OllamaHighErrorRatio"]["expr"].endswith("> 0.05")
    assert by_name["OllamaHighErrorRatio"]["for"] == "5m"
    assert all(rule["annotations"]["summary"] and rule["labels"]["severity"] for rule in rules)


def test_the_grafana_dashboard_has_the_seed_panels_and_every_probe_metric() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    seed = tomllib.loads((MONITORING / "panels.toml").read_text())["panels"]
    for panel in seed:
        if panel["id"] != "backends_up":
            assert panel["query"] in exprs, panel["id"]  # the seed's four, exactly as the monitoring page runs them
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used - BUILT_IN <= exported_names(), used - BUILT_IN - exported_names()
    probe_metrics = {m.name for m in REGISTRY.collect() if m.name.startswith("ollama_")}
    assert probe_metrics <= {n.removesuffix("_total") for n in used}, probe_metrics - used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"] if p["type"] != "row")


def test_prometheus_and_compose_load_the_rules_from_the_same_place() -> None:
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    assert config["rule_files"] == ["monitoring/alerts.yml"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert "./monitoring/alerts.yml:/etc/prometheus/monitoring/alerts.yml:ro" in volumes
