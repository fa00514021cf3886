"""AppTest fixtures: the real app script, run in-process against the loopback stand-in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.standin import StandinServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_env(standin: StandinServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[StandinServer]:
    """Point the dashboard at the stand-in, with a fresh data directory and empty caches."""
    monkeypatch.setenv("OLLAMA_HOST", standin.url)
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DASHBOARD_STALL_TIMEOUT", "2")
    monkeypatch.delenv("DASHBOARD_BACKENDS_FILE", raising=False)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield standin
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def open_page(app_env: StandinServer) -> Callable[..., AppTest]:
    """``open_page("pages/chat.py")``: run app.py (the router), then that page, as a browser would."""

    def _open(page: str, *, session_state: dict | None = None, timeout: float = 30) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
        for key, value in (session_state or {}).items():
            at.session_state[key] = value
        at.run()
        at.switch_page(page)
        return at.run()

    return _open


def model_texts(at: AppTest) -> list[str]:
    """Every Markdown value on the page (where model output lands)."""
    return [m.value for m in at.markdown]
