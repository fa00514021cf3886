"""Fixtures shared by every tier: the loopback Ollama stand-in and clients talking to it, and one Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from services.config import Backend
from services.ollama.client import OllamaClient
from tests.e2e.conftest import CHROMIUM_ARGS
from tests.standin import StandinServer


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, one for the run: the e2e and image tiers share it (Playwright's sync API allows one
    instance per thread, so each tier starting its own would fail in a whole-suite run)."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def standin() -> Iterator[StandinServer]:
    with StandinServer() as server:
        yield server


@pytest.fixture
def backend(standin: StandinServer) -> Backend:
    return Backend(name="standin", kind="ollama", url=standin.url)


@pytest.fixture
def client(backend: Backend) -> Iterator[OllamaClient]:
    ollama = OllamaClient(backend, connect_timeout_s=2.0, load_timeout_s=30.0, stall_timeout_s=2.0)
    yield ollama
    ollama.close()


@pytest.fixture
def dead_backend() -> Backend:
    """A loopback port where nothing listens: connection refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return Backend(name="dead", kind="ollama", url=f"http://127.0.0.1:{port}")


@pytest.fixture(scope="session")
def postgres_cluster():  # type: ignore[no-untyped-def]
    """One throwaway PostgreSQL server for the session (Debian's packages; ``tests/postgres.py``)."""
    from tests.postgres import PostgresCluster, postgres_bin

    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql package)")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def job_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The job store on both databases: the same store code and the same tests run on each."""
    from services.db import Database

    if request.param == "sqlite":
        yield Database.in_dir(tmp_path_factory.mktemp("jobs"))
        return
    from services.db_postgres import PostgresDatabase

    cluster = request.getfixturevalue("postgres_cluster")
    store = PostgresDatabase(cluster.database())
    yield store
    store.close()
