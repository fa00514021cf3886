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


def render_tile(backend: Backend, result: ProbeResult | None, *, kiosk: bool, index: int, now: float,
                compact: bool = False) -> None:
    """One backend: state in a word and a symbol, latency, version, loaded models with VRAM and unload time."""
    state = tile_state(result)
    symbol, word, _ = STATE_LOOK[state]
    prefix = "kiosk-tile" if kiosk else "mon-tile"
    if compact:
        # A large fleet on one screen: name, state and one line each.
        with st.container(border=True, key=f"{prefix}-{state}-compact-{index}"):
            st.markdown(f"### {plain_label(backend.name, 24)}")
            st.header(f"{symbol} {word}", anchor=False)
            if result is not None:
                detail = (f"{fmt.milliseconds(result.latency_ms)} · {len(result.loaded)} loaded" if state == "online"
                          else plain_label(result.reasons[0] if result.reasons else result.error, 48))
                st.markdown(detail)
        return
    with st.container(border=True, key=f"{prefix}-{state}-{index}"):
        if kiosk:
            st.markdown(f"### {plain_label(backend.name, 40)}")
        else:
            st.markdown(f"**{plain_label(backend.name, 40)}**  \n`{backend.url}`")
        if kiosk:
            st.header(f"{symbol} {word}", anchor=False)
        else:
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
            lines.append(plain_label(reason, 160 if not kiosk else 90))
        lines.append(f"Probed {_age(max(now - result.at, 0))}")
        st.markdown("  \n".join(lines))
        if result.up and result.loaded:
            shown = result.loaded[: 3 if kiosk else 8]
            st.markdown("\n".join(
                f"- {plain_label(m.name, 40)}: {fmt.size(m.size_vram)} VRAM ({m.processor}), "
                f"{fmt.unload_phrase(m.unload_in_s)}" for m in shown))
            if len(result.loaded) > len(shown):
                st.markdown(f"and {len(result.loaded) - len(shown)} more")


def render_tiles(backends: Sequence[Backend], latest: dict[str, ProbeResult], *, kiosk: bool) -> None:
    now = time.time()
    compact = kiosk and len(backends) > 6
    per_row = 8 if compact else 3 if len(backends) <= 6 else 4 if len(backends) <= 12 else 6
    for start in range(0, len(backends), per_row):
        columns = st.columns(per_row)
        for offset, backend in enumerate(backends[start:start + per_row]):
            with columns[offset]:
                render_tile(backend, latest.get(backend.name), kiosk=kiosk, index=start + offset, now=now,
                            compact=compact)


def data_freshness(monitoring: Monitoring, now: float) -> tuple[float | None, bool]:
    """Seconds since the last probe round, and whether that is too old to trust (the prober stalled)."""
    report = monitoring.prober.last_round()
    if report is None:
        return None, False
    age = now - report.started
    limit = 3 * monitoring.settings.probe_interval_s + monitoring.settings.probe_timeout_s + 5
    return age, age > limit


def render_freshness(monitoring: Monitoring, *, kiosk: bool) -> None:
    now = time.time()
    age, stale = data_freshness(monitoring, now)
    clock = datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S UTC")
    health = monitoring.store.health()
    if kiosk:
        with st.container(key="kiosk-clock"):
            st.markdown(f"Last updated {clock}")
    else:
        st.caption(f"Last updated {clock} · probes every {monitoring.settings.probe_interval_s:g} s"
                   + (f" · last round {_age(age)}" if age is not None else " · first round running"))
    if stale and age is not None:
        with st.container(key="kiosk-stale" if kiosk else "mon-stale"):
            st.error(f"Probe data is stale: the last round finished {_age(age)}. The tiles show the last known "
                     "state.", icon=":material/schedule:")
    if not health.ok:
        st.warning(f"The probe history cannot be written ({plain_label(health.last_error, 120)}); "
                   f"{health.pending_rows} samples wait in memory and are written when it recovers.",
                   icon=":material/database:")


def render_summary(backends: Sequence[Backend], latest: dict[str, ProbeResult], *, kiosk: bool) -> None:
    counts = fleet_summary(backends, latest)
    parts = [f"{counts['online']} online"]
    if counts["degraded"]:
        parts.append(f"{counts['degraded']} degraded")
    if counts["offline"]:
        parts.append(f"{counts['offline']} OFFLINE")
    if counts["waiting"]:
        parts.append(f"{counts['waiting']} waiting")
    text = f"{len(backends)} backend{'s' if len(backends) != 1 else ''}: " + " · ".join(parts)
    if kiosk:
        st.markdown(f"**{text}**")
    else:
        st.markdown(text)


@st.cache_data(ttl=4, max_entries=64, show_spinner=False)
def _history(_monitoring: Monitoring, key: str, start: float, end: float, bucket_s: float) -> tuple[pd.DataFrame, str]:
    return _monitoring.store.history(start, end, bucket_s)


@st.cache_data(ttl=4, max_entries=64, show_spinner=False)
def _availability(_monitoring: Monitoring, key: str, start: float, end: float) -> tuple[pd.DataFrame, str]:
    return _monitoring.store.availability(start, end)


@st.cache_data(ttl=4, max_entries=64, show_spinner=False)
def _generations(_monitoring: Monitoring, key: str, start: float, end: float, bucket_s: float
                 ) -> tuple[pd.DataFrame, str]:
    return _monitoring.store.generation_history(start, end, bucket_s)


def _window(range_s: float) -> tuple[float, float, float]:
    bucket = bucket_for(range_s)
    end = (time.time() // bucket + 1) * bucket  # aligned, so the cache is shared between refreshes
    return end - range_s, end, bucket


def _chart(fig: go.Figure, key: str, *, dark: bool = False) -> None:
    # The wall screen keeps plotly's dark template (Streamlit's theme would repaint it light-on-dark grey).
    st.plotly_chart(fig, key=key, config={"displayModeBar": False}, theme=None if dark else "streamlit")


def render_history_charts(monitoring: Monitoring, range_s: float, *, kiosk: bool) -> None:
    """Latency, availability and VRAM from the embedded store (no Prometheus needed)."""
    start, end, bucket = _window(range_s)
    key = str(monitoring.settings.data_dir)
    history, source = _history(monitoring, key, start, end, bucket)
    x_range = (datetime.fromtimestamp(time.time() - range_s, UTC), datetime.fromtimestamp(time.time(), UTC))
    # The wall screen has no range control: latency over 15 minutes, availability over the day.
    availability_s = 86400.0 if kiosk else range_s
    until = (time.time() // 10 + 1) * 10  # aligned, so refreshes share the cached answer
    availability, _ = _availability(monitoring, key, until - availability_s, until)
    availability_label = next((k for k, v in RANGES.items() if v == availability_s), "")
    slow = monitoring.settings.slow_response_ms
    if kiosk:
        left, right = st.columns([2, 1])
        with left:
            _chart(build_latency_figure(history, slow, dark=True, x_range=x_range), "kiosk-latency", dark=True)
        with right:
            _chart(build_availability_figure(availability, dark=True, range_label=availability_label),
                   "kiosk-availability", dark=True)
        return
    left, right = st.columns(2)
    with left:
        _chart(build_latency_figure(history, slow, x_range=x_range), "mon-latency")
    with right:
        _chart(build_availability_figure(availability, range_label=availability_label), "mon-availability")
    _chart(build_vram_figure(history, x_range=x_range), "mon-vram")
    if source == "memory":
        st.caption("The history file is unavailable: these charts show the samples kept in memory.")
    if not availability.empty:
        table = availability.assign(availability=(availability["availability"] * 100).round(2),
                                    latency_ms=availability["latency_ms"].round(1),
                                    latency_max_ms=availability["latency_max_ms"].round(1))
        st.dataframe(table, hide_index=True, column_config={
            "availability": st.column_config.NumberColumn("availability %", format="%.2f"),
            "latency_ms": st.column_config.NumberColumn("mean latency (ms)"),
            "latency_max_ms": st.column_config.NumberColumn("max latency (ms)"),
        })


def render_generation_charts(monitoring: Monitoring, range_s: float) -> None:
    """Requests per minute, error ratio and top models of the dashboard's own generations (from SQLite)."""
    start, end, bucket = _window(range_s)
    frame, _ = _generations(monitoring, str(monitoring.settings.data_dir), start, end, bucket)
    rates = generation_rates(frame, bucket)
    columns = st.columns(3)
    with columns[0]:
        _chart(build_throughput_figure(rates), "mon-throughput")
    with columns[1]:
        _chart(build_error_ratio_figure(rates), "mon-errors")
    with columns[2]:
        _chart(build_top_models_figure(rates), "mon-top")


PANEL_NOTES = {
    "no data": "No data: the query ran and returned nothing for this range.",
}


def render_panel(result: PanelResult, *, kiosk: bool, index: int) -> None:
    """One Prometheus panel with its state spelled out: data, no data, partial, error, or stale."""
    with st.container(key=f"{'kiosk' if kiosk else 'mon'}-panel-{result.state.replace(' ', '-')}-{index}"):
        _render_panel_body(result, kiosk=kiosk, index=index)


def _render_panel_body(result: PanelResult, *, kiosk: bool, index: int) -> None:
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
    _chart(build_panel_figure(result, dark=kiosk), f"{'kiosk' if kiosk else 'mon'}-panel-{index}", dark=kiosk)


def render_panels(monitoring: Monitoring, range_s: float, *, kiosk: bool) -> None:
    if monitoring.panels_error:
        st.error(f"The panels file is refused: {plain_label(monitoring.panels_error, 400)}",
                 icon=":material/settings:")
        return
    if monitoring.panels is None:
        if not kiosk:
            st.info("Prometheus is not configured (set PROMETHEUS_URL to show its panels). The charts above come "
                    "from the dashboard's own probe history.", icon=":material/info:")
        return
    # The wall screen never waits on a slow Prometheus: a panel still loading shows its previous result.
    results = monitoring.panels.run(range_s, max_wait_s=1.0 if kiosk else None)
    per_row = 2
    for start in range(0, len(results), per_row):
        columns = st.columns(per_row)
        for offset, result in enumerate(results[start:start + per_row]):
            with columns[offset]:
                render_panel(result, kiosk=kiosk, index=start + offset)



def render_page(monitoring: Monitoring, settings: Settings, range_label: str) -> None:
    """The operator's view: tiles refresh themselves; charts follow the chosen time range."""
    st.html(TILE_CSS)
    range_s = RANGES.get(range_label, RANGES[DEFAULT_RANGE])

    @st.fragment(run_every=max(settings.kiosk_refresh_s, 5.0))
    def live_tiles() -> None:
        enter_fragment()
        with section("The clock"):
            render_freshness(monitoring, kiosk=False)
        latest = monitoring.prober.latest()
        with section("The summary"):
            render_summary(settings.backends, latest, kiosk=False)
        with section("The status tiles"):
            render_tiles(settings.backends, latest, kiosk=False)

    live_tiles()
    st.subheader("Backends over time", anchor=False)
    with section("The history charts"):
        render_history_charts(monitoring, range_s, kiosk=False)
    st.subheader("Generations made by the dashboard", anchor=False)
    with section("The generation charts"):
        render_generation_charts(monitoring, range_s)
    st.subheader("Prometheus", anchor=False)
    with section("The Prometheus panels"):
        render_panels(monitoring, range_s, kiosk=False)
