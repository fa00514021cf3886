"""The wall's markup and charts, pure: every fleet size fits the grid, names are escaped, faults read as words,
the top row says what is wrong, and every chart text is at least 20 px with a contrast of at least 4.5:1."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from components.wall import MAX_TILES, JobLine, WallData, grid_for, tiles_shown, wall_html, zone_label
from components.wall_charts import STYLE_SETTINGS, WALL_FONT_PX, charts_html
from services.config import Backend
from services.monitoring.activity import Activity
from services.monitoring.alerts import AlertsView, FiringAlert
from services.monitoring.probe import ProbeResult

NOW = datetime(2026, 1, 5, 9, 30, 15, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
IDLE = Activity(span_s=300, requests=0, per_minute=0, error_ratio=None, p95_latency_s=None, median_ttft_s=None,
                tokens_per_s=0)


def fleet(count: int, offline: set[int] = frozenset(), degraded: set[int] = frozenset()) -> WallData:
    backends = [Backend(name=f"node-{i:02d}", kind="ollama", url=f"http://10.0.0.{i}:11434") for i in range(count)]
    latest = {}
    for i, b in enumerate(backends):
        if i in offline:
            latest[b.name] = ProbeResult(b.name, b.url, 0, "offline", False,
                                         error="Unreachable: cannot connect: [Errno 111] Connection refused")
        elif i in degraded:
            latest[b.name] = ProbeResult(b.name, b.url, 0, "degraded", True, latency_ms=6240.0,
                                         reasons=("slow: 6,240 ms (threshold 5,000 ms)",))
        else:
            latest[b.name] = ProbeResult(b.name, b.url, 0, "online", True, latency_ms=42.0, version="0.33.0")
    return WallData(backends=backends, latest=latest, activity=IDLE, now=NOW,
                    zone_label=zone_label(NOW, "Europe/Paris"), refresh_s=5, probe_timeout_s=10, slow_ms=5000,
                    probe_age_s=3)


@pytest.mark.parametrize("count", [1, 2, 4, 5, 8, 12, 18, 24, 32, 40, 50])
def test_every_fleet_up_to_fifty_fits_its_grid(count: int) -> None:
    columns, rows, _ = grid_for(count)
    assert columns * rows >= count and rows <= 5 and columns <= 10
    assert wall_html(fleet(count)).count('class="wall-tile ') == count


def test_past_fifty_the_broken_ones_come_first_and_the_healthy_are_summarised() -> None:
    data = fleet(80, offline={70, 75}, degraded={79})
    shown, rest = tiles_shown(data.backends, data.latest)
    assert len(shown) == MAX_TILES - 1 and [b.name for b in shown[:3]] == ["node-70", "node-75", "node-79"]
    assert rest == {"online": 31}
    markup = wall_html(data)
    assert markup.count('class="wall-tile ') == MAX_TILES and "+31 more" in markup and "31 online" in markup


def test_faults_are_words_on_the_wall_and_the_top_row_says_what_is_wrong() -> None:
    markup = wall_html(fleet(3, offline={1}, degraded={2}))
    assert "connection refused" in markup and "Errno" not in markup and "slow: 6.2 s" in markup
    assert 'stat-backends level-bad' in markup and "2/3" in markup and "1 offline · 1 degraded" in markup
    small = wall_html(fleet(30, offline={1}))
    assert ">refused<" in small  # the smallest tiles have room for a word


def test_names_from_the_configuration_are_escaped() -> None:
    data = fleet(1)
    evil = Backend(name='<img src=x onerror=alert(1)>', kind="ollama", url="http://x:1")
    data = WallData(**{**data.__dict__, "backends": [evil], "latest": {}})
    markup = wall_html(data)
    assert "<img src=x" not in markup and "&lt;img src=x onerror=alert(1)&gt;" in markup


def test_the_clock_shows_its_zone_and_the_heartbeat_the_watchdog_reads() -> None:
    markup = wall_html(fleet(1))
    assert ">10:30:15<" in markup and "Europe/Paris · CET" in markup
    assert 'data-refresh="5"' in markup and 'data-clock="10:30:15"' in markup
    assert zone_label(datetime(2026, 1, 5, tzinfo=UTC), "") == "UTC (server time)"


def test_firing_alerts_head_the_wall_and_a_silent_prometheus_is_not_all_clear() -> None:
    down = FiringAlert("OllamaBackendDown", "critical", "Backend node-01 is down", {"backend": "node-01"},
                       active_since=NOW.timestamp() - 300)
    firing = WallData(**{**fleet(2).__dict__, "alerts": AlertsView((down,), fetched_at=NOW.timestamp(),
                                                                   checked_at=NOW.timestamp())})
    markup = wall_html(firing)
    assert "1 firing" in markup and "Backend node-01 is down (5 min 00 s)" in markup and "level-bad" in markup
    stale = WallData(**{**firing.__dict__, "alerts": AlertsView((down,), fetched_at=NOW.timestamp() - 60,
                                                                checked_at=NOW.timestamp(),
                                                                error="Prometheus is not reachable at http://p")})
    assert "as of 10:29:15: Prometheus is not reachable" in wall_html(stale)
    unknown = WallData(**{**firing.__dict__, "alerts": AlertsView(error="Prometheus did not answer within 3 s",
                                                                  checked_at=1.0)})
    assert "Alerts unknown: Prometheus did not answer within 3 s" in wall_html(unknown)
    assert "wall-alerts" not in wall_html(fleet(2))  # no Prometheus configured: nothing claimed either way


def test_running_jobs_show_progress_and_eta() -> None:
    data = WallData(**{**fleet(1).__dict__, "pulls": [JobLine("gemma2:2b on gpu", 0.5, 95.0)],
                       "batches": [JobLine("description 340/1,000 rows", 0.34, None)]})
    markup = wall_html(data)
    assert "50 % · ETA 1 min 35 s · gemma2:2b on gpu" in markup and 'style="width:50.0%"' in markup
    assert "34 % · description 340/1,000 rows" in markup


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_chart_text_is_at_least_20_px_and_contrasted() -> None:
    times = pd.date_range("2026-01-05 09:20", periods=30, freq="10s", tz="UTC")
    history = pd.DataFrame({"time": list(times) * 2, "backend": ["a"] * 30 + ["b"] * 30,
                            "latency_ms": [40.0] * 30 + [6000.0] * 30})
    rates = pd.DataFrame({"time": times, "model": "m", "requests": 2.0, "errors": 1.0})
    shares = pd.DataFrame({"backend": ["a", "b"], "availability": [1.0, 0.5]})
    markup = charts_html(history, rates, shares, slow_ms=5000, zone=ZoneInfo("Europe/Paris"),
                         start=times[0].timestamp() - 600, end=times[-1].timestamp(), bucket_s=10)
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', markup)
    assert len(images) == 4
    for encoded in images:
        svg = base64.b64decode(encoded).decode()
        sizes = [float(s) for s in re.findall(r"font-size:\s*([\d.]+)px", svg)]
        assert sizes and min(sizes) >= WALL_FONT_PX, sizes
        assert "<script" not in svg and "http://" not in svg.replace("http://www.w3.org", "")
    assert contrast(STYLE_SETTINGS["foreground"], STYLE_SETTINGS["background"]) >= 4.5
