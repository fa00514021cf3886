"""Prometheus panels against a loopback fake Prometheus: every fault gets its own state, none blocks the rest."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from services.errors import InvalidInput
from services.monitoring.prometheus import Panel, PanelRunner, PrometheusSource, load_panels, main, tidy

ROOT = Path(__file__).resolve().parents[2]
MATRIX = {"resultType": "matrix", "result": [
    {"metric": {"model": "llama3.2:1b"}, "values": [[1_800_000_000, "1.5"], [1_800_000_015, "2"]]},
    {"metric": {"model": "phi3:mini"}, "values": [[1_800_000_000, "0.5"], [1_800_000_015, "NaN"]]},
]}


class FakePrometheus:
    """Answers /api/v1/query(_range) according to the query text: ``ok``, ``empty``, ``warn``, ``bad``,
    ``down`` (503), ``status_error`` (200 with status error), ``slow`` (held until the test releases it: a
    client that returns while it is held did not wait for it), ``flaky`` (toggle)."""

    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []
        self.flaky_ok = True
        self.release_slow = threading.Event()
        self.slow_answered = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                params = parse_qs(urlsplit(self.path).query)
                fake.queries.append(params)
                query = params.get("query", [""])[0]
                status, body = fake.answer(query)
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, query: str) -> tuple[int, dict[str, Any]]:
        if query.startswith("slow"):
            self.release_slow.wait(60)
            self.slow_answered.set()
            return 200, {"status": "success", "data": MATRIX}
        if query.startswith("flaky"):
            query = "ok" if self.flaky_ok else "down"
        if query.startswith("ok"):
            return 200, {"status": "success", "data": MATRIX}
        if query.startswith("empty"):
            return 200, {"status": "success", "data": {"resultType": "matrix", "result": []}}
        if query.startswith("warn"):
            return 200, {"status": "success", "data": MATRIX, "warnings": ["results truncated due to limit"]}
        if query.startswith("bad"):
            return 422, {"status": "error", "errorType": "execution",
                         "error": 'parse error: unexpected identifier "bad"'}
        if query.startswith("down"):
            return 503, {"status": "error", "errorType": "unavailable", "error": "query timed out"}
        if query.startswith("status_error"):
            return 200, {"status": "error", "errorType": "internal", "error": "storage is read-only"}
        return 400, {"status": "error", "errorType": "bad_data", "error": "unknown test query"}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    server = FakePrometheus()
    yield server
    server.stop()


def panel(query: str, timeout_s: float = 1.0, **extra: Any) -> Panel:
    return Panel(id=query.split()[0], title=query, query=query, timeout_s=timeout_s, legend="model", **extra)


def run(url: str, *panels: Panel) -> dict[str, Any]:
    runner = PanelRunner(PrometheusSource(url), panels, cache_s=0)
    try:
        return {r.panel.id: r for r in runner.run(900)}
    finally:
        runner.close()


def test_data_is_a_tidy_frame_with_one_row_per_point(fake: FakePrometheus) -> None:
    result = run(fake.url, panel("ok"))["ok"]
    assert result.state == "data"
    frame = result.frame
    assert list(frame.columns[:3]) == ["time", "series", "value"]
    assert set(frame["series"]) == {"llama3.2:1b", "phi3:mini"}
    assert len(frame) == 4 and frame["value"].isna().sum() == 1
    assert str(frame["time"].dt.tz) == "UTC"
    query = fake.queries[-1]
    assert query["step"] == ["4s"] and query["timeout"] == ["1s"]
    assert int(query["end"][0]) - int(query["start"][0]) == 900


def test_each_fault_has_its_own_state_and_reason(fake: FakePrometheus) -> None:
    results = run(fake.url, panel("empty"), panel("warn"), panel("bad"), panel("down"), panel("status_error"))
    assert results["empty"].state == "no data"
    assert results["warn"].state == "partial" and "truncated" in results["warn"].message
    assert not results["warn"].frame.empty
    assert results["bad"].state == "error"
    assert "422" in results["bad"].message and "parse error" in results["bad"].message
    assert results["down"].state == "error" and "503" in results["down"].message
    assert results["status_error"].state == "error"
    assert 'status "error"' in results["status_error"].message and "read-only" in results["status_error"].message


def test_no_retry_storm_on_503(fake: FakePrometheus) -> None:
    run(fake.url, panel("down"))
    assert len(fake.queries) == 1


def test_unreachable_prometheus_is_an_error_quickly() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(f"http://127.0.0.1:{port}", panel("ok"))["ok"]
    assert result.state == "error" and "not reachable" in result.message


def test_a_slow_panel_times_out_without_holding_up_the_others(fake: FakePrometheus) -> None:
    results = run(fake.url, panel("slow", timeout_s=0.5), panel("ok"), panel("empty"))
    assert not fake.slow_answered.is_set()  # the panel gave up while Prometheus still held the query
    assert results["slow"].state == "error" and "within 0.5 s" in results["slow"].message
    assert results["ok"].state == "data" and results["empty"].state == "no data"
    fake.release_slow.set()


def test_stale_keeps_the_last_good_rows_with_their_time_then_recovers(fake: FakePrometheus) -> None:
    runner = PanelRunner(PrometheusSource(fake.url), (panel("flaky"),), cache_s=0)
    try:
        good = runner.run(900)[0]
        assert good.state == "data"
        fake.flaky_ok = False
        stale = runner.run(900)[0]
        assert stale.state == "stale"
        assert stale.fetched_at == good.fetched_at and "503" in stale.message
        assert stale.frame.equals(good.frame)
        fake.flaky_ok = True
        assert runner.run(900)[0].state == "data"
    finally:
        runner.close()


def test_instant_panels_use_the_query_endpoint(fake: FakePrometheus) -> None:
    result = run(fake.url, panel("ok", instant=True, kind="bar"))["ok"]
    assert result.state == "data"
    assert "step" not in fake.queries[-1] and "time" in fake.queries[-1]


def test_tidy_handles_vectors_and_label_sets() -> None:
    frame = tidy([{"metric": {"__name__": "ollama_up", "backend": "gpu"}, "value": [1_800_000_000, "1"]},
                  {"metric": {}, "value": [1_800_000_000, "3"]}])
    assert frame["series"].tolist() == ["backend=gpu", "value"]
    assert frame["backend"].tolist()[0] == "gpu"


def test_the_shipped_panels_file_has_the_seeds_four_queries() -> None:
    panels = {p.id: p for p in load_panels(ROOT / "monitoring" / "panels.toml")}
    assert {"requests_per_minute", "error_ratio", "p95_latency", "top_models"} <= set(panels)
    assert "rate(ai_requests_total[1m])" in panels["requests_per_minute"].query
    assert "histogram_quantile(0.95" in panels["p95_latency"].query
    assert panels["top_models"].query.startswith("topk(3,")


@pytest.mark.parametrize(("text", "expected"), [
    ('[[panels]]\nid = "a"\nquery = "up"\ntitle = "unterminated\n', "is not valid TOML"),
    ('[[panels]]\nid = "a"\nquery = "up"\ncolour = "red"\n', "unknown field(s) colour"),
    ('[[panels]]\nid = "a"\nquery = ""\n', "query must be a non-empty PromQL string"),
    ('[[panels]]\nid = "a"\nquery = "up"\n[[panels]]\nid = "a"\nquery = "up"\n', "the id 'a' is used twice"),
    ('[[panels]]\nid = "a"\nquery = "up"\ntimeout_s = -1\n', "timeout_s must be a number of seconds"),
    ('[[panels]]\nid = "A b"\nquery = "up"\n', "id must be 1-64 characters"),
    ('[[panels]]\nid = "a"\nquery = "up"\nkind = "pie"\n', "kind must be one of line, bar"),
    ("[defaults]\ntimeout_s = 5\n", "at least one [[panels]]"),
])
def test_a_bad_panels_file_is_refused_with_a_precise_message(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "panels.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_panels(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "panels.toml"
    path.write_text('[[panels]]\nid = "a"\nquery = "up"\n\n[[panels]\nid = "b"\n')
    with pytest.raises(InvalidInput, match=r"line 5"):
        load_panels(path)


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", str(ROOT / "monitoring" / "panels.toml")]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[[panels]\n")
    assert main(["--check", str(bad)]) == 1
    assert "not valid TOML" in capsys.readouterr().err


def test_the_wall_screen_does_not_wait_on_a_hung_prometheus(fake: FakePrometheus) -> None:
    runner = PanelRunner(PrometheusSource(fake.url), (panel("slow", timeout_s=5.0), panel("ok")), cache_s=0)
    try:
        first = {r.panel.id: r for r in runner.run(900, max_wait_s=0.3)}
        assert not fake.slow_answered.is_set()  # the screen was drawn while the query was still held
        assert first["ok"].state == "data"
        assert first["slow"].state == "error" and "waiting for Prometheus" in first["slow"].message
        runner.run(900, max_wait_s=0.3)  # another refresh while the query is still held...
        assert len([q for q in fake.queries if q["query"] == ["slow"]]) == 1  # ...does not send it twice
        fake.release_slow.set()  # the slow query finishes in the background
        assert fake.slow_answered.wait(10)
        second = first
        deadline = time.monotonic() + 10
        while second["slow"].state != "data" and time.monotonic() < deadline:
            second = {r.panel.id: r for r in runner.run(900, max_wait_s=0.3)}
        assert second["slow"].state == "data"
    finally:
        runner.close()
