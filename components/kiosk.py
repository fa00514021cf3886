"""The wall screen (``/monitoring?kiosk=1``): a room-sized view of the fleet that nobody touches.

A 1920x1080 canvas (``static/wall.js`` zooms it to the screen, so 720p, 1080p and 4K all show the whole
wall without scrolling): the head (clock in ``DASHBOARD_TZ``, firing alerts when Prometheus is
configured), a top row of large numbers (backends up, requests per minute, error ratio, p95 latency,
median time to first token, tokens/s, pulls and batch jobs with their progress), the backend tiles
(``components.wall``), and a row of charts. Two fragments refresh it: the status area every
``DASHBOARD_KIOSK_REFRESH_S``, the charts every bucket. Everything is read from process-wide objects
(prober, activity window, job managers, alert feed), so a refresh never waits on a backend. The browser's
watchdog (``static/wall.js``) turns the wall STALE when refreshes stop arriving.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import streamlit as st

from components import runtime
from components.auth import enter_fragment
from components.charts import bucket_for, generation_rates
from components.monitoring import (
    KIOSK_RANGE_S,
    availability,
    data_freshness,
    generations,
    history,
    window,
)
from components.wall import JobLine, WallData, wall_html, zone_label
from components.wall_charts import charts_html
from services.config import Settings
from services.monitoring.service import Monitoring
from services.resources import WALL_SCRIPT_FILE, WALL_STYLE_FILE

log = logging.getLogger(__name__)


@contextlib.contextmanager
def wall_section(what: str) -> Iterator[None]:
    """A failing part of the wall says so in the wall's own style; the rest keeps refreshing."""
    try:
        yield
    except Exception as exc:
        log.exception("Wall screen: %s failed", what)
        st.html(f'<div class="wall-note">{what} unavailable right now ({type(exc).__name__}); retrying at the next '
                "refresh.</div>")


def _jobs() -> tuple[list[JobLine], list[JobLine]]:
    """Pulls and batch jobs running now, from the process-wide managers (memory and SQLite)."""
    pulls = [JobLine(f"{p.model} on {p.backend}", p.fraction, p.eta_s)
             for p in runtime.pull_manager().jobs(limit=20) if p.active]
    batches = []
    manager = runtime.batch_manager()
    for job in manager.jobs(limit=20):
        if job.state == "running" and manager.is_running(job.id):
            progress = manager.progress(job.id)
            batches.append(JobLine(f"{job.task} {progress.finished_rows:,}/{progress.total:,} rows",
                                   progress.fraction, progress.eta_s))
    return pulls, batches


def wall_data(monitoring: Monitoring, settings: Settings) -> WallData:
    now = time.time()
    age, stale = data_freshness(monitoring, now)
    local = datetime.fromtimestamp(now, UTC).astimezone(settings.zone())
    health = monitoring.store.health()
    notes = [] if health.ok else [f"Probe history not writable: {health.pending_rows} samples wait in memory"]
    feed = runtime.alert_feed()
    pulls, batches = _jobs()
    return WallData(
        backends=settings.backends, latest=monitoring.prober.latest(), activity=runtime.activity().current(),
        now=local, zone_label=zone_label(local, settings.timezone), refresh_s=settings.kiosk_refresh_s,
        probe_timeout_s=settings.probe_timeout_s, slow_ms=settings.slow_response_ms, probe_age_s=age,
        probe_stale=stale, pulls=pulls, batches=batches,
        alerts=feed.current(max_wait_s=0.5) if feed is not None else None, notes=notes)


def render_charts(monitoring: Monitoring, settings: Settings) -> None:
    """Latency and requests over 15 minutes, the error ratio, availability over the day: four charts, one row."""
    start, end, bucket = window(KIOSK_RANGE_S)
    key = str(settings.data_dir)
    probes, _ = history(monitoring, key, start, end, bucket)
    frame, _ = generations(monitoring, key, start, end, bucket)
    until = (time.time() // 10 + 1) * 10
    shares, _ = availability(monitoring, key, until - 86400.0, until)
    st.html(charts_html(probes, generation_rates(frame, bucket), shares, slow_ms=settings.slow_response_ms,
                        zone=settings.zone(), start=end - KIOSK_RANGE_S, end=time.time(), bucket_s=bucket))


def render_kiosk(monitoring: Monitoring, settings: Settings) -> None:
    """The wall screen: the status area and the charts, each refreshing itself without a full rerun."""
    st.html(f"<style>{WALL_STYLE_FILE.read_text(encoding='utf-8')}</style>")
    # Our own static script (no input from anyone): the zoom to the screen and the stale watchdog.
    st.html(f"<script>{WALL_SCRIPT_FILE.read_text(encoding='utf-8')}</script>", unsafe_allow_javascript=True)

    @st.fragment(run_every=settings.kiosk_refresh_s)
    def live_status() -> None:
        enter_fragment()
        with wall_section("The status area"):
            st.html(wall_html(wall_data(monitoring, settings)))

    # Charts are bucketed (10 s over 15 min): redrawing them more often than a bucket only costs CPU.
    @st.fragment(run_every=max(settings.kiosk_refresh_s, bucket_for(KIOSK_RANGE_S)))
    def live_charts() -> None:
        enter_fragment()
        with wall_section("The charts"):
            render_charts(monitoring, settings)

    live_status()
    live_charts()
