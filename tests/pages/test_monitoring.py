"""AppTest of /monitoring: tiles for every backend, kiosk mode without sidebar, faults shown, never an exception."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import runtime
from tests.standin import StandinServer


@pytest.fixture(autouse=True)
def own_monitoring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No exporter port in page tests, and a fresh prober per test (it is per process)."""
    monkeypatch.setenv("DASHBOARD_METRICS_PORT", "0")
    monkeypatch.setenv("DASHBOARD_PROBE_INTERVAL", "0.2")
    monkeypatch.setenv("DASHBOARD_PROBE_TIMEOUT", "1")
    yield


def wait_for_probe(at: AppTest, backends: int = 1) -> AppTest:
    monitoring = runtime.monitoring()
    monitoring.prober.wait_for_round(backends, timeout_s=10)
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [h.value for h in at.header] + [h.value for h in at.subheader]
                     + [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
                     + [c.value for c in at.caption])


def test_page_shows_an_online_tile_with_loaded_models(open_page: Callable[..., AppTest],
                                                      app_env: StandinServer) -> None:
    app_env.state.mark_loaded("llama3.2:1b", "5m")
    at = wait_for_probe(open_page("pages/monitoring.py"))
    assert not at.exception
    page = texts(at)
    assert "ONLINE" in page and "1 backend: 1 online" in page
    assert "llama3\\.2\\:1b" in page and "VRAM" in page and "unloads in 4 min" in page
    assert "Prometheus is not configured" in page
    assert [s.value for s in at.get("segmented_control")] == ["1 h"]
    assert not any(m.allow_html for m in at.markdown)


def test_rerunning_the_page_never_registers_metrics_twice(open_page: Callable[..., AppTest]) -> None:
    at = wait_for_probe(open_page("pages/monitoring.py"))
    for _ in range(3):
        at.run()
    assert not at.exception


def test_time_range_control_changes_the_charts_range(open_page: Callable[..., AppTest]) -> None:
    at = wait_for_probe(open_page("pages/monitoring.py"))
    at.get("segmented_control")[0].set_value("24 h").run()
    assert not at.exception
    assert at.session_state["monitoring.range"] == "24 h"


def wall(at: AppTest) -> str:
    """The wall's status area (one st.html block), whitespace as the markup has it."""
    return next(h.value for h in at.html if 'class="wall"' in h.value)


def test_kiosk_mode_has_no_sidebar_and_a_wall(open_page: Callable[..., AppTest]) -> None:
    at = open_page("pages/monitoring.py")
    at.query_params["kiosk"] = "1"
    at = wait_for_probe(at)
    assert not at.exception
    assert len(at.sidebar) == 0
    status = wall(at)
    assert 'data-state="online"' in status and "✔ ONLINE" in status
    assert "Backends up" in status and ">1/1<" in status
    assert "(server time)" in status and 'class="wall-beat"' in status
    assert not at.get("segmented_control") and not at.get("plotly_chart")
    assert any('class="wall-charts"' in h.value and "data:image/svg+xml;base64," in h.value for h in at.html)
    assert any("__ollamaWall" in h.value for h in at.html)  # the zoom and the stale watchdog


def test_a_dead_backend_is_offline_in_words_on_the_wall_and_raw_on_the_page(
        open_page: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch, dead_backend, tmp_path: Path,
        app_env: StandinServer) -> None:
    backends = tmp_path / "backends.toml"
    backends.write_text(f'[[backends]]\nname = "alive"\nurl = "{app_env.url}"\n'
                        f'[[backends]]\nname = "dead"\nurl = "{dead_backend.url}"\n')
    monkeypatch.setenv("DASHBOARD_BACKENDS_FILE", str(backends))
    monkeypatch.setenv("DASHBOARD_TZ", "Europe/Paris")
    at = open_page("pages/monitoring.py")
    at.query_params["kiosk"] = "1"
    at = wait_for_probe(at, backends=2)
    assert not at.exception
    status = wall(at)
    assert status.count('data-state="online"') == 1 and status.count('data-state="offline"') == 1
    assert "connection refused" in status and "Errno" not in status and "Connection refused" not in status
    assert "1 offline" in status and "Europe/Paris" in status
    page = open_page("pages/monitoring.py")  # the operator page: the raw cause, for whoever fixes it
    page = wait_for_probe(page, backends=2)
    assert "Connection refused" in texts(page)
    assert "2 backends: 1 online · 1 OFFLINE" in texts(page)


def test_the_top_row_counts_generations_and_running_jobs(open_page: Callable[..., AppTest],
                                                         app_env: StandinServer) -> None:
    from services.metrics import record_generation

    at = open_page("pages/monitoring.py")
    at.query_params["kiosk"] = "1"
    at = wait_for_probe(at)
    for index in range(10):  # half of them fail: whatever else this process generates, far over 5 %
        record_generation(model="wall-top:1b", status="error" if index % 2 else "success",
                          duration_s=7.0 if index < 2 else 1.0, ttft_s=0.3, completion_tokens=100)
    app_env.state.configure(pull_bytes_per_s=2_000_000)
    runtime.pull_manager().start(runtime.settings().backends[0], "llama3.2:1b", "wall-test")
    at.run()
    status = wall(at)
    assert 'stat-errors level-bad' in status and not re.search(r'data-stat="errors">.{0,80}>–<', status)
    assert 'data-stat="pulls"' in status and "llama3.2:1b on local" in status and "stat-bar" in status
    runtime.pull_manager().shutdown()


def test_prometheus_down_shows_panel_errors_without_blocking_tiles(open_page: Callable[..., AppTest],
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   dead_backend) -> None:
    monkeypatch.setenv("PROMETHEUS_URL", dead_backend.url)
    at = wait_for_probe(open_page("pages/monitoring.py"))
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 5 and all("Prometheus is not reachable" in e for e in errors)
    assert "ONLINE" in texts(at)


def test_a_broken_panels_file_is_refused_with_its_reason(open_page: Callable[..., AppTest],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         dead_backend) -> None:
    panels = tmp_path / "panels.toml"
    panels.write_text('[[panels]]\nid = "x"\nquery = "up\n')
    monkeypatch.setenv("DASHBOARD_PANELS_FILE", str(panels))
    monkeypatch.setenv("PROMETHEUS_URL", dead_backend.url)
    at = wait_for_probe(open_page("pages/monitoring.py"))
    assert not at.exception
    assert any("panels file is refused" in e.value and "line 3" in e.value for e in at.error)
    assert "ONLINE" in texts(at)


def test_figure_builders_are_pure_and_handle_empty_frames() -> None:
    import pandas as pd

    from components import charts as view

    empty = pd.DataFrame(columns=["time", "backend", "latency_ms", "vram_bytes"])
    for fig in (view.build_latency_figure(empty), view.build_vram_figure(empty),
                view.build_availability_figure(pd.DataFrame()), view.build_throughput_figure(pd.DataFrame()),
                view.build_error_ratio_figure(pd.DataFrame()), view.build_top_models_figure(pd.DataFrame())):
        assert fig.layout.annotations and "No" in fig.layout.annotations[0].text
    times = pd.to_datetime([1_800_000_000, 1_800_000_030], unit="s", utc=True)
    history = pd.DataFrame({"time": list(times) * 2, "backend": ["a", "a", "b", "b"],
                            "latency_ms": [10.0, 12.0, 6000.0, 7000.0], "vram_bytes": [1, 2, None, None]})
    latency = view.build_latency_figure(history, 5000.0)
    assert [t.name for t in latency.data] == ["a", "b"]
    assert any(shape.y0 == 5000.0 for shape in latency.layout.shapes)
    quiet = view.build_latency_figure(history[history.backend == "a"], 5000.0)
    assert not quiet.layout.shapes and "slow above 5,000 ms" in quiet.layout.title.text
    availability = view.build_availability_figure(
        pd.DataFrame({"backend": ["a", "b"], "availability": [1.0, 0.5]}), range_label="24 h")
    assert list(availability.data[0].marker.color) == ["#16a34a", "#dc2626"]
    assert "last 24 h" in availability.layout.title.text
    gen = pd.DataFrame({"time": list(times) * 2, "model": ["m1", "m1", "m2", "m2"], "requests": [6.0, 3.0, 1.0, 1.0],
                        "errors": [3.0, 0.0, 0.0, 1.0], "duration_s": [6.0, 3.0, 1.0, 1.0],
                        "completion_tokens": [0.0] * 4})
    rates = view.generation_rates(gen, 30.0)
    assert rates["per_minute"].tolist() == [12.0, 6.0, 2.0, 2.0]
    errors = view.build_error_ratio_figure(rates)
    assert list(errors.data[0].y) == pytest.approx([3 / 7 * 100, 1 / 4 * 100])
    top = view.build_top_models_figure(rates)
    assert list(top.data[0].y) == ["m2", "m1"] and list(top.data[0].x) == [2.0, 9.0]
