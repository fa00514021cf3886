"""The image's file set, without a container engine: exactly what the Dockerfile copies (its COPY lines over
the context .dockerignore leaves), assembled in a folder and run from there with a key, against the stand-in.

The image's virtualenv is stood in by the project's own (the same pinned requirements.txt); everything the
application reads comes from the assembled folder only (checked: its modules resolve there)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from services.access.pages import PAGES
from services.resources import APP_ROOT, REQUIRED, missing_resources
from tests.image.conftest import SECRET, log_tail
from tests.image.dockerfile import assemble, image_files
from tests.image.walk import describe_a_product, open_every_page, tracebacks
from tests.standin import StandinServer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # six pages on a loaded machine: deadlines, not timings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def file_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assemble(ROOT, tmp_path_factory.mktemp("image-files") / "app")


def app_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The image's environment (a key required, data in its own folder), without the repository on the path."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return {**env, "DASHBOARD_JWT_SECRET": SECRET, "DASHBOARD_REQUIRE_AUTH": "1", "DASHBOARD_DATA_DIR": str(data_dir),
            "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def test_the_file_set_holds_what_the_app_reads_and_leaves_the_rest_out(file_set: Path) -> None:
    files = {p.relative_to(file_set).as_posix() for p in file_set.rglob("*") if p.is_file()}
    assert missing_resources(file_set) == []
    assert {path.relative_to(APP_ROOT).as_posix() for path in REQUIRED} <= files
    assert {spec.script for spec in PAGES} | {"app.py", "serve.py", ".streamlit/config.toml"} <= files
    tracked = subprocess.run(["git", "ls-files", "services", "components", "pages", "catalog", "decks", "monitoring",
                              "static"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert set(tracked) <= files  # the application as a whole, not a hand-kept list of folders
    tops = {path.split("/")[0] for path in files}
    assert not tops & {"tests", "bench", "data", "artifacts", ".git", ".venv", "wheelhouse", ".ci", "Dockerfile",
                       ".dockerignore", "Makefile", "docker-compose.yml", ".pytest_cache", ".ruff_cache"}, tops
    assert not [path for path in files if "__pycache__" in path or path.endswith(".pyc")]


def test_the_image_runs_as_a_user_who_owns_none_of_the_app() -> None:
    image = image_files(ROOT)
    assert image.user not in (None, "root", "0") and not image.user.startswith("0:")
    assert image.workdir == "/app"
    assert all(step.chown is None for step in image.copies), "the app and its virtualenv stay root's, read-only"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "DASHBOARD_REQUIRE_AUTH=1" in dockerfile and "HEALTHCHECK" in dockerfile


@pytest.mark.parametrize(("missing", "needed_by"), [
    ("decks/product-tasks.json", "the compare page's shipped prompt deck"),
    (".streamlit/config.toml", "Streamlit's server settings"),
    ("pages/descriptions.py", "the Product studio page"),
])
def test_a_missing_runtime_file_stops_the_start_with_one_clear_line(file_set: Path, tmp_path: Path, missing: str,
                                                                     needed_by: str) -> None:
    broken = tmp_path / "app"
    subprocess.run(["cp", "-a", str(file_set), str(broken)], check=True)
    (broken / missing).unlink()
    result = subprocess.run([sys.executable, "serve.py", "--server.port", str(free_port())], cwd=broken,
                            env=app_env(tmp_path / "data"), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("serve.py: refusing to start: Files the dashboard reads are missing")
    assert f"{missing} (needed by {needed_by}" in lines[0]


@dataclass
class FolderServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def folder_server(file_set: Path, image_standin: StandinServer, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[FolderServer]:
    tmp = tmp_path_factory.mktemp("file-set-run")
    port = free_port()
    env = app_env(tmp / "data", OLLAMA_HOST=image_standin.url, DASHBOARD_METRICS_PORT=str(free_port()),
                  STREAMLIT_SERVER_PORT=str(port), STREAMLIT_SERVER_ADDRESS="127.0.0.1")
    where = subprocess.run([sys.executable, "-c", "import services.resources as r, components; "
                            "print(r.APP_ROOT); print(components.__file__)"],
                           cwd=file_set, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where == [str(file_set), str(file_set / "components" / "__init__.py")]  # nothing from the repository
    log_path = tmp / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "serve.py"], cwd=file_set, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    server = FolderServer(f"http://127.0.0.1:{port}", process, log_path, env)
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            pytest.fail(f"the assembled app exited ({process.returncode}):\n{log_tail(log_path)}")
        try:
            if httpx.get(f"{server.url}/_stcore/health", timeout=2).text == "ok":
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the assembled app never became healthy:\n{log_tail(log_path)}")
        time.sleep(0.2)
    yield server
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
    log = log_path.read_text(errors="replace")
    assert not tracebacks(log), log
    assert SECRET not in log


def mint(folder: Path, env: dict[str, str], role: str) -> str:
    """A token from the assembled folder's own CLI, as an admin would mint one on the server."""
    result = subprocess.run([sys.executable, "-m", "services.access", "mint", "--sub", f"file-set-{role}", "--role",
                             role, "--ttl", "30m"], cwd=folder, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_every_page_opens_from_the_file_set(page: Page, folder_server: FolderServer, file_set: Path) -> None:
    token = mint(file_set, folder_server.env, "admin")
    assert open_every_page(page, folder_server.url, token, "image-files") == [spec.url_path for spec in PAGES]


def test_a_product_description_runs_from_the_file_set(page: Page, folder_server: FolderServer, file_set: Path,
                                                      image_standin: StandinServer) -> None:
    describe_a_product(page, folder_server.url, mint(file_set, folder_server.env, "operator"), "image-files")
    chats = image_standin.state.requests_to("/api/chat")
    assert chats and "robe de cocktail" in chats[-1]["body"]["messages"][-1]["content"]
