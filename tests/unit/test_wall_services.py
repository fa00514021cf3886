"""What the wall screen reads besides the prober: fault words, the activity window over the ai_* metrics,
and the firing-alerts feed against a real HTTP server (answering, hung, oversized, gone)."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.metrics import LATENCY_BUCKETS
from services.monitoring.activity import ActivityWindow, activity_between, bucket_quantile, read_snapshot
from services.monitoring.alerts import MAX_BODY_BYTES, AlertFeed
from services.monitoring.faults import fault_words, reason_words
from tests.standin import SilentHost


# ---- fault words ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "words"), [
    ("Unreachable: cannot connect: [Errno 111] Connection refused", "connection refused"),
    ("Unreachable: connection timed out: timed out", "timed out after 10 s"),
    ("BackendTimeout: read timed out", "timed out after 10 s"),
    ("no answer within 10 s", "timed out after 10 s"),
    ("Unreachable: cannot connect: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
     "certificate (_ssl.c:1000)", "certificate error"),
    ("Unreachable: cannot connect: [Errno -3] Temporary failure in name resolution", "host name not found"),
    ("Unreachable: cannot connect: [Errno 113] No route to host", "network unreachable"),
    ("Unreachable: connection dropped: Server disconnected without sending a response.", "connection dropped"),
    ("HTTP 401: unauthorized", "credentials refused (HTTP 401)"),
    ("HTTP 503: server overloaded", "overloaded (HTTP 503)"),
    ("HTTP 500: runner crashed", "server error (HTTP 500)"),
    ("probe failed: RuntimeError('boom')", "not answering"),
])
def test_faults_read_as_words_never_as_the_raw_cause(raw: str, words: str) -> None:
    assert fault_words(raw, 10.0) == words
    assert "Errno" not in words and "[" not in words


def test_degraded_reasons_read_as_words() -> None:
    assert reason_words("slow: 12,400 ms (threshold 5,000 ms)", 10) == "slow: 12 s"
    canary = reason_words("canary on m:1b failed: BackendTimeout: read timed out", 30)
    assert canary == "canary failed: timed out after 30 s"


# ---- activity window -----------------------------------------------------------------------------------
@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def metrics(registry: CollectorRegistry) -> tuple[Counter, Histogram, Histogram, Counter]:
    requests = Counter("ai_requests_total", "r", ["status", "model"], registry=registry)
    duration = Histogram("ai_request_duration_seconds", "d", ["model"], buckets=LATENCY_BUCKETS, registry=registry)
    ttft = Histogram("ai_time_to_first_token_seconds", "t", ["model"], buckets=LATENCY_BUCKETS, registry=registry)
    tokens = Counter("ai_tokens_total", "k", ["model", "kind"], registry=registry)
    return requests, duration, ttft, tokens


def test_the_window_gives_rate_errors_quantiles_and_throughput(registry: CollectorRegistry) -> None:
    requests, duration, ttft, tokens = metrics(registry)
    requests.labels("success", "old:1b").inc(50)  # before the window: must not count
    clock = [1000.0]
    window = ActivityWindow(registry, window_s=300, sample_every_s=10, clock=lambda: clock[0])
    clock[0] += 300
    for index in range(20):
        status = "error" if index < 2 else "success"
        requests.labels(status, "a:1b" if index % 2 else "b:1b").inc()
        duration.labels("a:1b").observe(7.0 if index < 2 else 0.8)  # p95 inside (5, 10]
        ttft.labels("a:1b").observe(0.2)
    tokens.labels("a:1b", "completion").inc(3000)
    tokens.labels("a:1b", "prompt").inc(999)  # prompt tokens are not generated tokens
    activity = window.current()
    assert activity.span_s == pytest.approx(300)
    assert activity.requests == 20 and activity.per_minute == pytest.approx(4.0)
    assert activity.error_ratio == pytest.approx(0.1)
    assert activity.p95_latency_s == pytest.approx(5.0 + 5.0 * (19 - 18) / 2)  # rank 19 of 20, 2 in (5, 10]
    assert 0.1 < activity.median_ttft_s <= 0.25
    assert activity.tokens_per_s == pytest.approx(10.0)


def test_an_idle_window_has_no_ratio_and_no_quantiles(registry: CollectorRegistry) -> None:
    metrics(registry)
    window = ActivityWindow(registry, window_s=60)
    activity = window.current()
    assert activity.requests == 0 and activity.error_ratio is None
    assert activity.p95_latency_s is None and activity.median_ttft_s is None and activity.tokens_per_s == 0


def test_a_counter_reset_counts_from_zero(registry: CollectorRegistry) -> None:
    requests, *_ = metrics(registry)
    requests.labels("success", "a").inc(100)
    old = read_snapshot(registry, at=0.0)
    fresh = CollectorRegistry()
    again, *_ = metrics(fresh)
    again.labels("success", "a").inc(6)
    assert activity_between(old, read_snapshot(fresh, at=60.0)).requests == 6


def test_quantiles_match_prometheus_histogram_quantile() -> None:
    assert bucket_quantile(0.95, {1.0: 0, 5.0: 0, 10.0: 6, math.inf: 6}) == pytest.approx(9.75)  # alerts.test.yml
    assert bucket_quantile(0.99, {1.0: 0, 300.0: 0, math.inf: 3}) == 300.0


def test_the_sampler_thread_keeps_a_bounded_window(registry: CollectorRegistry) -> None:
    metrics(registry)
    window = ActivityWindow(registry, window_s=0.5, sample_every_s=0.05).start()
    deadline = time.monotonic() + 5
    while len(window._snapshots) < window._snapshots.maxlen and time.monotonic() < deadline:
        time.sleep(0.05)
    window.stop()
    assert len(window._snapshots) == window._snapshots.maxlen == 14


# ---- alert feed -------------------------------------------------------------------------------------------
class FakePrometheus:
    """A loopback HTTP server answering /api/v1/alerts with whatever the test sets."""

    def __init__(self) -> None:
        self.body: bytes = b'{"status":"success","data":{"alerts":[]}}'
        self.status = 200
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, alerts: list[dict]) -> None:
        self.body = json.dumps({"status": "success", "data": {"alerts": alerts}}).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_prometheus() -> Iterator[FakePrometheus]:
    server = FakePrometheus()
    yield server
    server.close()


def alert(name: str, severity: str, since: str, state: str = "firing", **labels: str) -> dict:
    return {"labels": {"alertname": name, "severity": severity, **labels},
            "annotations": {"summary": f"{name} summary"}, "state": state, "activeAt": since}


def test_firing_alerts_most_severe_first_and_pending_counted(fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.answer([
        alert("OllamaSlowResponses", "warning", "2026-01-05T10:00:00Z", model="a"),
        alert("OllamaBackendDown", "critical", "2026-01-05T10:05:00Z", backend="gpu"),
        alert("OllamaHighErrorRatio", "warning", "2026-01-05T10:01:00Z", state="pending"),
    ])
    feed = AlertFeed(fake_prometheus.url, refresh_s=60)
    view = feed.current()
    again = feed.current()  # cached: no second request within refresh_s
    feed.close()
    assert [a.name for a in view.alerts] == ["OllamaBackendDown", "OllamaSlowResponses"]
    assert view.pending == 1 and view.known and not view.stale
    assert again is view and fake_prometheus.requests == 1


def test_an_error_keeps_the_last_alerts_and_says_why(fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.answer([alert("OllamaBackendDown", "critical", "2026-01-05T10:05:00Z")])
    feed = AlertFeed(fake_prometheus.url, refresh_s=0)
    assert feed.current().alerts
    fake_prometheus.status = 503
    view = feed.current()
    fake_prometheus.status, fake_prometheus.body = 200, b"<html>not json</html>"
    garbled = feed.current()
    feed.close()
    assert view.stale and view.error == "Prometheus answered HTTP 503" and view.alerts[0].name == "OllamaBackendDown"
    assert garbled.error == "Prometheus's answer is not JSON"


def test_an_oversized_answer_is_refused_before_parsing(fake_prometheus: FakePrometheus) -> None:
    fake_prometheus.body = b"[" + b" " * (MAX_BODY_BYTES + 10) + b"]"
    feed = AlertFeed(fake_prometheus.url, refresh_s=0)
    view = feed.current(max_wait_s=10)
    feed.close()
    assert view.stale and "over 2 MB" in view.error and not view.known


def test_a_hung_prometheus_never_holds_the_wall_longer_than_its_wait() -> None:
    with SilentHost() as host:
        feed = AlertFeed(host.url, timeout_s=2.0, refresh_s=0)
        view = feed.current(max_wait_s=0.2)
        deadline = time.monotonic() + 10
        while not feed.current(max_wait_s=0.2).stale and time.monotonic() < deadline:
            time.sleep(0.1)
        later = feed.current(max_wait_s=0)
        feed.close()
    # It returned before the read could end (a hung host ends only at the timeout): the wall kept refreshing.
    assert not view.known and view.checked_at == 0
    assert later.error == "Prometheus did not answer within 2 s"
