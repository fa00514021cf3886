"""The real image: built offline from the repository (base from Debian's packages, wheels from ``make wheels``),
run on the host network bound to loopback against the stand-in, tried in Chromium, then removed.

Skipped, with the reason, where no container engine can start (no docker.io, not root, a kernel that refuses
it). Figures for the closing note (size, build time, time from ``docker run`` to healthy) go to
``artifacts/image-measurements.json``; nothing here asserts a time. ``IMAGE_BUILD_COLD=1`` first builds
without the layer cache, then again with it, to measure both.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page
from prometheus_client.parser import text_string_to_metric_families

from services.access.pages import PAGES
from tests.image.conftest import SECRET, record_measurement
from tests.image.dockerfile import image_files
from tests.image.engine import (
    Engine,
    EngineUnavailable,
    build_image,
    ensure_base_image,
    ensure_wheelhouse,
    start_engine,
)
from tests.image.walk import COMPARE_MODELS, compare_round, describe_a_product, open_every_page, tracebacks
from tests.standin import StandinServer

ROOT = Path(__file__).resolve().parents[2]
TAG = "ollama-operator-dashboard:image-test"
# Directories every user may write in any Debian image (sticky, world-writable): not the app's.
SHARED_SCRATCH = {"/tmp", "/var/tmp", "/run/lock", "/dev/shm"}
pytestmark = [pytest.mark.e2e, pytest.mark.image, pytest.mark.timeout(2400)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    try:
        running = start_engine(tmp_path_factory.mktemp("engine"))
    except EngineUnavailable as exc:
        pytest.skip(f"no container engine here: {exc}")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    logs = tmp_path_factory.mktemp("build")
    started = time.monotonic()
    base = ensure_base_image(engine, logs)
    record_measurement("base_image_ready_s", round(time.monotonic() - started, 1))
    ensure_wheelhouse()
    if os.environ.get("IMAGE_BUILD_COLD") == "1":
        cold = build_image(engine, base, TAG, no_cache=True)
        record_measurement("build_cold_s", round(cold.seconds, 1))
        cached = build_image(engine, base, TAG)
        record_measurement("build_cached_s", round(cached.seconds, 1))
    else:
        build = build_image(engine, base, TAG)
        record_measurement("build_s", round(build.seconds, 1))
        record_measurement("build_cached_steps", build.cached_steps)
    size = int(engine.text("image", "inspect", "--format", "{{.Size}}", TAG))
    record_measurement("image_size_mb", round(size / 1e6, 1))
    record_measurement("base_image_size_mb", round(int(engine.text("image", "inspect", "--format", "{{.Size}}",
                                                                   base)) / 1e6, 1))
    return TAG


def run_once(engine: Engine, image: str, *command: str, volume: str | None = None, check: bool = True) -> str:
    """A throwaway container running one command as the image's user (removed when it ends): its stdout."""
    mounts = ["--volume", f"{volume}:/data"] if volume else []
    result = engine.run("run", "--rm", "--network", "none", *mounts, "--entrypoint", command[0], image,
                        *command[1:], check=check)
    return result.stdout.decode(errors="replace").strip()


def test_the_image_holds_exactly_the_file_set(engine: Engine, image: str) -> None:
    listed = run_once(engine, image, "find", "/app", "-type", "f", "-not", "-path", "*/__pycache__/*")
    in_image = {line.removeprefix("/app/") for line in listed.splitlines()}
    assert in_image == set(image_files(ROOT).under("/app")), "the file-set test reads the Dockerfile as docker does"


def test_the_user_writes_the_data_volume_and_nothing_else(engine: Engine, image: str) -> None:
    volume = f"dashboard-test-{uuid.uuid4().hex[:8]}"
    engine.run("volume", "create", volume)
    try:
        who = run_once(engine, image, "id", "-u", volume=volume)
        assert who not in ("", "0")
        writable = run_once(engine, image, "find", "/", "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", ")",
                            "-prune", "-o", "-writable", "-not", "-type", "l", "-print", volume=volume,
                            check=False)  # find also says which folders it may not read: its status is 1
        found = set(writable.splitlines())
        assert "/data" in found
        assert found - {"/data"} <= SHARED_SCRATCH, sorted(found - {"/data"} - SHARED_SCRATCH)
        refused = run_once(engine, image, "sh", "-c", "touch /app/app.py /opt/venv/x /app/new 2>&1; "
                           "touch /data/probe && echo data-ok", volume=volume)
        assert refused.count("Permission denied") == 3 and refused.endswith("data-ok"), refused
    finally:
        engine.run("volume", "rm", "--force", volume, check=False)


@dataclass
class Container:
    name: str
    url: str
    metrics_url: str
    engine: Engine

    def logs(self) -> str:
        result = self.engine.run("logs", self.name, check=False, timeout=60)
        return (result.stdout + result.stderr).decode(errors="replace")

    def mint(self, role: str) -> str:
        """A token minted inside the container, as an admin would on the server."""
        return self.engine.text("exec", self.name, "python", "-m", "services.access", "mint", "--sub",
                                f"image-{role}", "--role", role, "--ttl", "30m")


@pytest.fixture(scope="module")
def container(engine: Engine, image: str, image_standin: StandinServer) -> Iterator[Container]:
    name = f"dashboard-test-{uuid.uuid4().hex[:8]}"
    port, metrics_port = free_port(), free_port()
    image_standin.state.configure(tokens_per_second=400, reply_tokens=24)
    command = [
        "run", "--detach", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--volume", f"{name}:/data",
        "--health-interval", "1s", "--health-start-period", "60s",
        "--env", f"OLLAMA_HOST={image_standin.url}", "--env", f"DASHBOARD_JWT_SECRET={SECRET}",
        "--env", "STREAMLIT_SERVER_ADDRESS=127.0.0.1", "--env", f"STREAMLIT_SERVER_PORT={port}",
        "--env", "DASHBOARD_METRICS_ADDR=127.0.0.1", "--env", f"DASHBOARD_METRICS_PORT={metrics_port}", image,
    ]
    started = time.monotonic()
    engine.run(*command)
    box = Container(name, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", engine)
    try:
        status = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = json.loads(engine.text("inspect", "--format", "{{json .State}}", name))
            status = (state.get("Health") or {}).get("Status", "")
            if status == "healthy" or state.get("Status") != "running":
                break
            time.sleep(0.2)
        if status != "healthy":
            pytest.fail(f"the container is {status or state.get('Status')}, not healthy:\n{box.logs()[-4000:]}")
        record_measurement("run_to_healthy_s", round(time.monotonic() - started, 1))
        yield box
        logs = box.logs()
        assert not tracebacks(logs), logs
        assert SECRET not in logs
        assert "sign-in required: tokens verified with HS256" in logs
        warnings = [line for line in logs.splitlines() if " WARNING " in line or "Warning:" in line]
        assert not warnings, warnings
    finally:
        engine.run("rm", "--force", "--volumes", name, check=False)
        engine.run("volume", "rm", "--force", name, check=False)


def test_every_page_opens_in_the_container(page: Page, container: Container) -> None:
    assert open_every_page(page, container.url, container.mint("admin"), "image") == [s.url_path for s in PAGES]


def test_a_description_and_a_compare_round_then_the_metrics(page: Page, container: Container,
                                                           image_standin: StandinServer) -> None:
    token = container.mint("operator")
    describe_a_product(page, container.url, token, "image")
    compare_round(page, container.url, token, "image")
    chats = image_standin.state.requests_to("/api/chat")
    assert {request["body"]["model"] for request in chats} >= set(COMPARE_MODELS)
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(httpx.get(container.metrics_url, timeout=10).text)
               for sample in family.samples}
    for model in COMPARE_MODELS:
        assert samples[("ai_requests_total", (("model", model), ("status", "success")))] >= 1
        assert samples[("ai_tokens_total", (("kind", "completion"), ("model", model)))] > 0
