"""The deployment files say what the design promises: Ollama never published, the dashboard non-root and
health-checked, tracebacks hidden from browsers, XSRF on."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing: `make test` installs Debian's docker-compose to validate the file")
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, cwd=ROOT, env={"DASHBOARD_JWT_SECRET": "x" * 32, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_validates_and_never_publishes_ollama(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"dashboard", "ollama", "prometheus"}
    assert "ports" not in services["ollama"]
    assert services["ollama"]["networks"].keys() == {"ollama"}


def test_compose_publishes_the_dashboard_on_loopback_only(compose: dict) -> None:
    for service in ("dashboard", "prometheus"):
        for port in compose["services"][service].get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", (service, port)


def test_compose_requires_a_jwt_secret() -> None:
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode != 0
    assert "DASHBOARD_JWT_SECRET" in result.stderr


def test_compose_runs_the_dashboard_read_only_without_capabilities(compose: dict) -> None:
    dashboard = compose["services"]["dashboard"]
    assert dashboard["read_only"] is True and dashboard["cap_drop"] == ["ALL"]
    assert any("no-new-privileges" in option for option in dashboard["security_opt"])
    assert dashboard["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"
    assert [str(volume).split(":")[1] for volume in dashboard["volumes"]] == ["/data"]  # docker-compose 1.29: text


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    """What the image holds is tested from its COPY lines (tests/image/test_file_set.py) and for real
    (tests/image/test_container.py); here, the lines a reviewer looks for."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    user_lines = [line for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user_lines and user_lines[-1].split()[1] not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile and "services.healthcheck" in dockerfile
    assert "DASHBOARD_REQUIRE_AUTH=1" in dockerfile
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile and "--no-index" in dockerfile


def test_streamlit_config_hides_errors_and_keeps_xsrf() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"
    assert config["server"]["enableXsrfProtection"] is True
