"""Bounded page paths: a backend that accepts connections and never answers is reported as not answering on
every page after one page timeout, never once per call; over-long input says so instead of vanishing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from services.access.pages import PAGES
from tests.standin import SilentHost, StandinServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def silent(app_env: StandinServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentHost]:
    with SilentHost() as host:
        monkeypatch.setenv("OLLAMA_HOST", host.url)
        monkeypatch.setenv("DASHBOARD_PAGE_TIMEOUT", "1")
        monkeypatch.setenv("DASHBOARD_METRICS_PORT", "0")
        yield host


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.error, *at.info, *at.warning, *at.markdown, *at.caption)]
    return "\n".join(str(p) for p in parts).replace("\\", "")


@pytest.mark.parametrize("spec", PAGES, ids=[p.url_path for p in PAGES])
def test_a_host_that_never_answers_is_reported_on_every_page_after_one_wait(
    silent: SilentHost, open_page: Callable[..., AppTest], spec: object
) -> None:
    at = open_page(spec.script)  # type: ignore[attr-defined]
    assert not at.exception
    assert "is not answering" in texts(at) and "no answer within 1 s" in texts(at)
    # The router's health check waited once; every later read on the page failed at once with its reason.
    assert silent.page_requests() == ["GET /api/version HTTP/1.1"]


def test_the_pages_that_list_models_say_why_nothing_can_run(silent: SilentHost,
                                                            open_page: Callable[..., AppTest]) -> None:
    at = open_page("pages/chat.py")
    assert at.chat_input(key="chat.input").proto.disabled
    models = open_page("pages/models.py")
    assert not models.exception and "not answering" in texts(models)


def test_an_over_long_message_says_so_and_is_not_sent(open_page: Callable[..., AppTest],
                                                      app_env: StandinServer) -> None:
    at = open_page("pages/chat.py")
    at.chat_input(key="chat.input").set_value("x" * 200_001).run()
    assert not at.exception
    assert "200,001 characters long; the playground accepts up to 200,000" in texts(at)
    assert not app_env.state.requests_to("/api/chat")
