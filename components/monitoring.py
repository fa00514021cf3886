"""Monitoring views: per-backend status tiles, charts from the probe history, Prometheus panels.

``render_*`` functions emit Streamlit elements from the process-wide ``services.monitoring.service.Monitoring``
(started with the server), so a refresh reads memory and SQLite, never waits on a backend. The figures are
pure functions in ``components.charts``; the wall screen is ``components.kiosk``. Text from backends (model
names, versions, errors) only reaches the page escaped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from components.auth import enter_fragment
from components.charts import (
    bucket_for,
    build_availability_figure,
    build_error_ratio_figure,
    build_latency_figure,
    build_panel_figure,
    build_throughput_figure,
    build_top_models_figure,
    build_vram_figure,
    fleet_summary,
    generation_rates,
    tile_state,
)
from services import format as fmt
from services.config import Backend, Settings
from services.monitoring.probe import ProbeResult
from services.monitoring.prometheus import PanelResult
from services.monitoring.service import Monitoring
from services.safe_text import plain_label

logger = logging.getLogger(__name__)

RANGES: dict[str, float] = {"15 min": 900, "1 h": 3600, "6 h": 6 * 3600, "24 h": 86400, "7 days": 7 * 86400}
DEFAULT_RANGE = "1 h"
KIOSK_RANGE_S = 900.0
STATE_LOOK = {  # symbol, word, colour: the word and symbol carry the state for colour-blind viewers too
    "online": ("✔", "ONLINE", "#16a34a"),
    "degraded": ("▲", "DEGRADED", "#d97706"),
    "offline": ("✖", "OFFLINE", "#dc2626"),
    "waiting": ("…", "WAITING", "#64748b"),
}

TILE_CSS = """
<style>
[class*="st-key-mon-tile-online"] { border-left: 8px solid #16a34a !important; }
[class*="st-key-mon-tile-degraded"] { border-left: 8px solid #d97706 !important; }
[class*="st-key-mon-tile-offline"] { border-left: 8px solid #dc2626 !important; background: #fef2f2; }
[class*="st-key-mon-tile-waiting"] { border-left: 8px solid #64748b !important; }
</style>
"""


@contextlib.contextmanager
def section(what: str) -> Iterator[None]:
    """One failing part of the page shows a clear note; the rest of the page still renders."""
    try:
        yield
    except Exception as exc:
        logger.exception("Monitoring section %r failed", what)
        st.warning(f"{what} is unavailable right now ({type(exc).__name__}); it retries on the next refresh.",
                   icon=":material/error:")



# ---- rendering -----------------------------------------------------------------------------------------
def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_tile(backend: Backend, result: ProbeResult | None, *, index: int, now: float) -> None:
    """One backend: state in a word and a symbol, latency, version, loaded models with VRAM and unload time,
    and the raw cause of a fault (the wall screen words it for a room; the operator needs the cause)."""
    state = tile_state(result)
    symbol, word, _ = STATE_LOOK[state]
    with st.container(border=True, key=f"mon-tile-{state}-{index}"):
        st.markdown(f"**{plain_label(backend.name, 40)}**  \n`{backend.url}`")
        colour = {"online": "green", "degraded": "orange", "offline": "red", "waiting": "gray"}[state]
        st.subheader(f":{colour}[{symbol} {word}]", anchor=False)
        if result is None:
            st.markdown("First probe in progress…")
            return
        lines = []
        if result.up:
            version = plain_label(result.version or "?", 20)
            lines.append(f"Latency **{fmt.milliseconds(result.latency_ms)}** · Ollama {version}")
            vram = fmt.size(result.vram_bytes) if result.loaded else "none"
            lines.append(f"{len(result.loaded)} loaded · VRAM {vram} · {result.installed_models} installed")
            if result.canary_model:
                ttft = fmt.milliseconds(result.canary_ttft_ms)
                tps = f"{result.canary_tps:.0f} tok/s" if result.canary_tps else "–"
                lines.append(f"Canary {plain_label(result.canary_model, 30)}: first token {ttft}, {tps}")
        for reason in result.reasons[:2]:
            lines.append(plain_label(reason, 160))
        lines.append(f"Probed {_age(max(now - result.at, 0))}")
        st.markdown("  \n".join(lines))
        if result.up and result.loaded:
            shown = result.loaded[:8]
            st.markdown("\n".join(
                f"- {plain_label(m.name, 40)}: {fmt.size(m.size_vram)} VRAM ({m.processor}), "
                f"{fmt.unload_phrase(m.unload_in_s)}" for m in shown))
            if len(result.loaded) > len(shown):
                st.markdown(f"and {len(result.loaded) - len(shown)} more")


def render_tiles(backends: Sequence[Backend], latest: dict[str, ProbeResult]) -> None:
    now = time.time()
    per_row = 3 if len(backends) <= 6 else 4 if len(backends) <= 12 else 6
    for start in range(0, len(backends), per_row):
        columns = st.columns(per_row)
        for offset, backend in enumerate(backends[start:start + per_row]):
            with columns[offset]:
                render_tile(backend, latest.get(backend.name), index=start + offset, now=now)


def data_freshness(monitoring: Monitoring, now: float) -> tuple[float | None, bool]:
    """Seconds since the last probe round, and whether that is too old to trust (the prober stalled)."""
    report = monitoring.prober.last_round()
    if report is None:
        return None, False
    age = now - report.started
    limit = 3 * monitoring.settings.probe_interval_s + monitoring.settings.probe_timeout_s + 5
    return age, age > limit


def render_freshness(monitoring: Monitoring) -> None:
    now = time.time()
    age, stale = data_freshness(monitoring, now)
    local = datetime.fromtimestamp(now, UTC).astimezone(monitoring.settings.zone())
    clock = f"{local:%H:%M:%S} {local.tzname() or ''}".rstrip()
    health = monitoring.store.health()
    st.caption(f"Last updated {clock} · probes every {monitoring.settings.probe_interval_s:g} s"
               + (f" · last round {_age(age)}" if age is not None else " · first round running"))
    if stale and age is not None:
        with st.container(key="mon-stale"):
            st.error(f"Probe data is stale: the last round finished {_age(age)}. The tiles show the last known "
                     "state.", icon=":material/schedule:")
    if not health.ok:
        st.warning(f"The probe history cannot be written ({plain_label(health.last_error, 120)}); "
                   f"{health.pending_rows} samples wait in memory and are written when it recovers.",
                   icon=":material/database:")


def render_summary(backends: Sequence[Backend], latest: dict[str, ProbeResult]) -> None:
    counts = fleet_summary(backends, latest)
    parts = [f"{counts['online']} online"]
    if counts["degraded"]:
        parts.append(f"{counts['degraded']} degraded")
    if counts["offline"]:
        parts.append(f"{counts['offline']} OFFLINE")
    if counts["waiting"]:
        parts.append(f"{counts['waiting']} waiting")
    st.markdown(f"{len(backends)} backend{'s' if len(backends) != 1 else ''}: " + " · ".join(parts))


@st.cache_data(ttl=4, max_entries=64, show_spinner=False)
def history(_monitoring: Monitoring, key: str, start: float, end: float, bucket_s: float) -> tuple[pd.DataFrame, str]:
    return _monitoring.store.history(start, end, bucket_s)


@st.cache_data(ttl=4, max_entries=64, show_spinner=False)
def availability(_monitoring: Monitoring, key: str, start: float, end: float) -> tuple[pd.DataFrame, str]:
    return _monitoring.store.availability(start, end)


@st.cache_data(ttl=4, max_entries=64, show_spinner=False)
def generations(_monitoring: Monitoring, key: str, start: float, end: float, bucket_s: float
                 ) -> tuple[pd.DataFrame, str]:
    return _monitoring.store.generation_history(start, end, bucket_s)


def window(range_s: float) -> tuple[float, float, float]:
    bucket = bucket_for(range_s)
    end = (time.time() // bucket + 1) * bucket  # aligned, so the cache is shared between refreshes
    return end - range_s, end, bucket


def chart(fig: go.Figure, key: str, *, dark: bool = False) -> None:
    # The wall screen keeps plotly's dark template (Streamlit's theme would repaint it light-on-dark grey).
    st.plotly_chart(fig, key=key, config={"displayModeBar": False}, theme=None if dark else "streamlit")


def render_history_charts(monitoring: Monitoring, range_s: float) -> None:
    """Latency, availability and VRAM from the embedded store (no Prometheus needed)."""
    start, end, bucket = window(range_s)
    key = str(monitoring.settings.data_dir)
    probes, source = history(monitoring, key, start, end, bucket)
    x_range = (datetime.fromtimestamp(time.time() - range_s, UTC), datetime.fromtimestamp(time.time(), UTC))
    until = (time.time() // 10 + 1) * 10  # aligned, so refreshes share the cached answer
    shares, _ = availability(monitoring, key, until - range_s, until)
    range_label = next((k for k, v in RANGES.items() if v == range_s), "")
    slow = monitoring.settings.slow_response_ms
    left, right = st.columns(2)
    with left:
        chart(build_latency_figure(probes, slow, x_range=x_range), "mon-latency")
    with right:
        chart(build_availability_figure(shares, range_label=range_label), "mon-availability")
    chart(build_vram_figure(probes, x_range=x_range), "mon-vram")
    if source == "memory":
        st.caption("The history file is unavailable: these charts show the samples kept in memory.")
    if not shares.empty:
        table = shares.assign(availability=(shares["availability"] * 100).round(2),
                              latency_ms=shares["latency_ms"].round(1),
                              latency_max_ms=shares["latency_max_ms"].round(1))
        st.dataframe(table, hide_index=True, column_config={
            "availability": st.column_config.NumberColumn("availability %", format="%.2f"),
            "latency_ms": st.column_config.NumberColumn("mean latency (ms)"),
            "latency_max_ms": st.column_config.NumberColumn("max latency (ms)"),
        })


def render_generation_charts(monitoring: Monitoring, range_s: float) -> None:
    """Requests per minute, error ratio and top models of the dashboard's own generations (from SQLite)."""
    start, end, bucket = window(range_s)
    frame, _ = generations(monitoring, str(monitoring.settings.data_dir), start, end, bucket)
    rates = generation_rates(frame, bucket)
    columns = st.columns(3)
    with columns[0]:
        chart(build_throughput_figure(rates), "mon-throughput")
    with columns[1]:
        chart(build_error_ratio_figure(rates), "mon-errors")
    with columns[2]:
        chart(build_top_models_figure(rates), "mon-top")


PANEL_NOTES = {
    "no data": "No data: the query ran and returned nothing for this range.",
}


def render_panel(result: PanelResult, *, index: int) -> None:
    """One Prometheus panel with its state spelled out: data, no data, partial, error, or stale."""
    with st.container(key=f"mon-panel-{result.state.replace(' ', '-')}-{index}"):
        _render_panel_body(result, index=index)


def _render_panel_body(result: PanelResult, *, index: int) -> None:
    title = plain_label(result.panel.title, 60)
    state = result.state
    if state == "error":
        st.markdown(f"**{title}**")
        st.error(f"Error: {plain_label(result.message, 300)}", icon=":material/error:")
        return
    if state == "stale":
        when = datetime.fromtimestamp(result.fetched_at, UTC).strftime("%H:%M:%S UTC")
        st.warning(f"Stale: showing the last good data from {when}. Now: {plain_label(result.message, 200)}",
                   icon=":material/history:")
    elif state == "partial":
        st.warning(f"Partial: Prometheus warned that data may be missing: {plain_label(result.message, 200)}",
                   icon=":material/warning:")
    elif state == "no data":
        st.markdown(f"**{title}**")
        st.info(PANEL_NOTES["no data"], icon=":material/hourglass_empty:")
        return
    chart(build_panel_figure(result), f"mon-panel-{index}")


def render_panels(monitoring: Monitoring, range_s: float) -> None:
    if monitoring.panels_error:
        st.error(f"The panels file is refused: {plain_label(monitoring.panels_error, 400)}",
                 icon=":material/settings:")
        return
    if monitoring.panels is None:
        st.info("Prometheus is not configured (set PROMETHEUS_URL to show its panels). The charts above come "
                "from the dashboard's own probe history.", icon=":material/info:")
        return
    results = monitoring.panels.run(range_s)
    per_row = 2
    for start in range(0, len(results), per_row):
        columns = st.columns(per_row)
        for offset, result in enumerate(results[start:start + per_row]):
            with columns[offset]:
                render_panel(result, index=start + offset)


def render_page(monitoring: Monitoring, settings: Settings, range_label: str) -> None:
    """The operator's view: tiles refresh themselves; charts follow the chosen time range."""
    st.html(TILE_CSS)
    range_s = RANGES.get(range_label, RANGES[DEFAULT_RANGE])

    @st.fragment(run_every=max(settings.kiosk_refresh_s, 5.0))
    def live_tiles() -> None:
        enter_fragment()
        with section("The clock"):
            render_freshness(monitoring)
        latest = monitoring.prober.latest()
        with section("The summary"):
            render_summary(settings.backends, latest)
        with section("The status tiles"):
            render_tiles(settings.backends, latest)

    live_tiles()
    st.subheader("Backends over time", anchor=False)
    with section("The history charts"):
        render_history_charts(monitoring, range_s)
    st.subheader("Generations made by the dashboard", anchor=False)
    with section("The generation charts"):
        render_generation_charts(monitoring, range_s)
    st.subheader("Prometheus", anchor=False)
    with section("The Prometheus panels"):
        render_panels(monitoring, range_s)
