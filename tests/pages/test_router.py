"""app.py really runs in front of every page under AppTest (not Streamlit's pages/ auto-discovery)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest


def test_the_router_runs_before_the_page(open_page: Callable[..., AppTest]) -> None:
    at = open_page("pages/chat.py")
    assert not at.exception
    assert at.sidebar.selectbox(key="backend").value == "local"
    assert any("Ollama 0.33.0" in c.value.replace("\\", "") for c in at.sidebar.caption)


def test_unreachable_banner_comes_from_the_router(
    open_page: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    at = open_page("pages/chat.py")
    (banner,) = at.error
    text = banner.value.replace("\\", "")
    assert "Ollama is not reachable at http://127.0.0.1:9" in text and "What to do" in text
