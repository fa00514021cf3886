"""Monitoring views: per-backend status tiles, charts from the probe history, Prometheus panels, wall screen.

Pure ``build_*_figure(df)`` functions turn DataFrames into plotly figures (testable without Streamlit);
``render_*`` functions emit Streamlit elements. Everything shown comes from the process-wide
``services.monitoring.exporter.Monitoring`` (started once from app.py), so a refresh reads memory and SQLite, never
waits on a backend. Text from backends (model names, versions, errors) only reaches the page escaped.
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
PALETTE = ["#60a5fa", "#f472b6", "#34d399", "#fbbf24", "#a78bfa", "#f87171", "#22d3ee", "#a3e635"]

KIOSK_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], header[data-testid="stHeader"],
[data-testid="stToolbar"], [data-testid="stDecoration"], [data-testid="stStatusWidget"],
footer { display: none !important; }
[data-testid="stApp"], [data-testid="stMain"], [data-testid="stAppViewContainer"] {
  background: #05070a !important; color: #f8fafc !important; }
[data-testid="stMainBlockContainer"] { padding: 1.2rem 2rem 1rem 2rem !important; max-width: 100% !important; }
[data-testid="stApp"] p, [data-testid="stApp"] li, [data-testid="stApp"] span,
[data-testid="stApp"] h1, [data-testid="stApp"] h2, [data-testid="stApp"] h3 { color: #f8fafc !important; }
[data-testid="stApp"] p, [data-testid="stApp"] li { font-size: 1.55rem !important; line-height: 1.35 !important; }
[data-testid="stApp"] h1 { font-size: 3rem !important; }
[data-testid="stApp"] h2 { font-size: 3.4rem !important; font-weight: 800 !important; letter-spacing: .05em; }
[data-testid="stApp"] h3 { font-size: 2rem !important; }
[class*="st-key-kiosk-tile-"] { border-radius: 14px; padding: 1rem 1.3rem !important; border: 4px solid #334155; }
[class*="st-key-kiosk-tile-online"] { background: #052e16 !important; border-color: #22c55e !important; }
[class*="st-key-kiosk-tile-degraded"] { background: #451a03 !important; border-color: #f59e0b !important; }
[class*="st-key-kiosk-tile-offline"] { background: #7f1d1d !important; border-color: #ff4d4d !important; }
[class*="st-key-kiosk-tile-waiting"] { background: #1e293b !important; border-color: #64748b !important; }
[class*="st-key-kiosk-clock"] p { font-size: 2.2rem !important; font-weight: 700 !important; text-align: right; }
[class*="st-key-kiosk-stale"] { background: #7f1d1d !important; border-radius: 10px; padding: .6rem 1rem; }
[data-testid="stAlertContainer"] { background: #334155 !important; }
[class*="st-key-kiosk-tile-"][class*="-compact-"] { padding: .5rem .8rem !important; border-width: 3px; }
[class*="-compact-"] h2 { font-size: 1.6rem !important; letter-spacing: .02em; }
[class*="-compact-"] h3 { font-size: 1.3rem !important; }
[class*="-compact-"] p { font-size: 1.1rem !important; }
[class*="st-key-kiosk-panel-error"] [data-testid="stAlertContainer"],
[class*="st-key-kiosk-stale"] [data-testid="stAlertContainer"] { background: #7f1d1d !important; }
[class*="st-key-kiosk-panel-stale"] [data-testid="stAlertContainer"],
[class*="st-key-kiosk-panel-partial"] [data-testid="stAlertContainer"] { background: #78350f !important; }
</style>
"""
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


# ---- data shaping (pure) -------------------------------------------------------------------------------
def bucket_for(range_s: float) -> float:
    """About 120 points per chart, never finer than 10 s.

    >>> bucket_for(900), bucket_for(3600), bucket_for(7 * 86400)
    (10.0, 30.0, 5040.0)
    """
    return float(max(10, int(range_s // 120)))


def tile_state(result: ProbeResult | None) -> str:
    return "waiting" if result is None else result.status


def fleet_summary(backends: Sequence[Backend], latest: dict[str, ProbeResult]) -> dict[str, int]:
    counts = {"online": 0, "degraded": 0, "offline": 0, "waiting": 0}
    for backend in backends:
        counts[tile_state(latest.get(backend.name))] += 1
    return counts


def generation_rates(frame: pd.DataFrame, bucket_s: float) -> pd.DataFrame:
    """Requests per minute, error ratio and mean latency per bucket and model, from the store's deltas."""
    if frame.empty:
        return pd.DataFrame(columns=["time", "model", "per_minute", "error_ratio", "mean_s", "tokens_per_min"])
    out = frame.copy()
    minutes = bucket_s / 60.0
    out["per_minute"] = out["requests"] / minutes
    out["error_ratio"] = out["errors"] / out["requests"]
    out["mean_s"] = out["duration_s"] / out["requests"]
    out["tokens_per_min"] = out["completion_tokens"] / minutes
    return out


# ---- figures (pure) ----------------------------------------------------------------------------------
def _layout(fig: go.Figure, title: str, *, dark: bool, y_title: str = "", height: int = 320,
            time_axis: bool = True) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 26 if dark else 16}},
        template="plotly_dark" if dark else "plotly_white", height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10}, legend={"orientation": "h", "y": -0.2},
        font={"size": 18 if dark else 13},
        paper_bgcolor="#0b1220" if dark else None, plot_bgcolor="#0b1220" if dark else None,
        yaxis_title=y_title,
    )
    if time_axis:
        # Legend above the plot: below it, it collides with the date line of the time axis.
        fig.update_layout(legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1.0, "xanchor": "right"})
    return fig


def _empty(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 16})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def build_latency_figure(history: pd.DataFrame, slow_ms: float = 5000.0, *, dark: bool = False,
                         x_range: tuple[datetime, datetime] | None = None) -> go.Figure:
    """Probe latency per backend over time, with the slow threshold; offline buckets are gaps."""
    fig = go.Figure()
    if history.empty or history["latency_ms"].dropna().empty:
        return _layout(_empty(fig, "No probe samples in this range yet"), "Probe latency", dark=dark)
    for index, (backend, rows) in enumerate(history.groupby("backend", sort=True)):
        fig.add_trace(go.Scatter(x=rows["time"], y=rows["latency_ms"], mode="lines+markers", name=str(backend),
                                 line={"color": PALETTE[index % len(PALETTE)], "width": 3}, connectgaps=False))
    peak = float(history["latency_ms"].max())
    if peak >= slow_ms / 3:  # the threshold line would otherwise squash every point against the axis
        fig.add_hline(y=slow_ms, line_dash="dash", line_color="#f59e0b",
                      annotation_text=f"slow ({slow_ms:,.0f} ms)", annotation_position="top left")
    fig.update_yaxes(rangemode="tozero")
    if x_range is not None:
        fig.update_xaxes(range=list(x_range))
    title = "Probe latency" if peak >= slow_ms / 3 else f"Probe latency (slow above {slow_ms:,.0f} ms)"
    return _layout(fig, title, dark=dark, y_title="ms")


def build_availability_figure(availability: pd.DataFrame, target: float = 0.99, *, dark: bool = False,
                              range_label: str = "") -> go.Figure:
    """Share of probes answered per backend over the range, against the seed's 99 % target."""
    fig = go.Figure()
    if availability.empty:
        return _layout(_empty(fig, "No probe samples in this range yet"), "Availability", dark=dark,
                       time_axis=False)
    values = availability["availability"].astype(float) * 100
    colours = ["#16a34a" if v >= target * 100 else "#dc2626" for v in values]
    fig.add_trace(go.Bar(x=availability["backend"], y=values, marker_color=colours,
                         text=[f"{v:.2f} %" for v in values], textposition="auto", name="availability"))
    fig.add_hline(y=target * 100, line_dash="dash", line_color="#94a3b8")
    fig.update_yaxes(range=[0, 100.5])
    title = f"Availability{', last ' + range_label if range_label else ''} (target {target:.0%})"
    return _layout(fig, title, dark=dark, y_title="% of probes answered", time_axis=False)


def build_vram_figure(history: pd.DataFrame, *, dark: bool = False,
                      x_range: tuple[datetime, datetime] | None = None) -> go.Figure:
    """VRAM held by loaded models per backend over time."""
    fig = go.Figure()
    data = history.dropna(subset=["vram_bytes"]) if not history.empty else history
    if data.empty:
        return _layout(_empty(fig, "No loaded-model samples in this range"), "VRAM in use", dark=dark)
    for index, (backend, rows) in enumerate(data.groupby("backend", sort=True)):
        fig.add_trace(go.Scatter(x=rows["time"], y=rows["vram_bytes"] / 1024**3, mode="lines", name=str(backend),
                                 line={"color": PALETTE[index % len(PALETTE)], "width": 3}))
    fig.update_yaxes(rangemode="tozero")
    if x_range is not None:
        fig.update_xaxes(range=list(x_range))
    return _layout(fig, "VRAM in use", dark=dark, y_title="GB")


def build_throughput_figure(rates: pd.DataFrame, *, dark: bool = False) -> go.Figure:
    """The dashboard's generations per minute, stacked by model."""
    fig = go.Figure()
    if rates.empty:
        return _layout(_empty(fig, "No generations in this range"), "Requests per minute", dark=dark)
    for index, (model, rows) in enumerate(rates.groupby("model", sort=True)):
        fig.add_trace(go.Bar(x=rows["time"], y=rows["per_minute"], name=str(model),
                             marker_color=PALETTE[index % len(PALETTE)]))
    fig.update_layout(barmode="stack")
    return _layout(fig, "Requests per minute", dark=dark, y_title="req/min")


def build_error_ratio_figure(rates: pd.DataFrame, *, dark: bool = False) -> go.Figure:
    """Errors over requests per bucket, all models together."""
    fig = go.Figure()
    if rates.empty:
        return _layout(_empty(fig, "No generations in this range"), "Error ratio", dark=dark)
    total = rates.groupby("time", sort=True)[["requests", "errors"]].sum().reset_index()
    ratio = total["errors"] / total["requests"]
    fig.add_trace(go.Scatter(x=total["time"], y=ratio * 100, mode="lines+markers", name="errors",
                             line={"color": "#dc2626", "width": 3}))
    fig.update_yaxes(range=[0, 100])
    return _layout(fig, "Error ratio", dark=dark, y_title="% of requests")


def build_top_models_figure(rates: pd.DataFrame, *, dark: bool = False, top: int = 3) -> go.Figure:
    """The most used models over the range (the seed's top 3)."""
    fig = go.Figure()
    if rates.empty:
        return _layout(_empty(fig, "No generations in this range"), f"Top {top} models", dark=dark)
    totals = rates.groupby("model")["requests"].sum().sort_values(ascending=True).tail(top)
    fig.add_trace(go.Bar(x=totals.values, y=totals.index.astype(str), orientation="h", marker_color=PALETTE[0],
                         text=[f"{v:.0f}" for v in totals.values], textposition="auto"))
    return _layout(fig, f"Top {top} models", dark=dark, y_title="", time_axis=False)


def build_panel_figure(result: PanelResult, *, dark: bool = False) -> go.Figure:
    """One Prometheus panel's tidy frame as a line chart (or bars for instant/bar panels)."""
    fig = go.Figure()
    panel, frame = result.panel, result.frame
    if frame.empty:
        return _layout(_empty(fig, "No data"), panel.title, dark=dark, height=280)
    for index, (series, rows) in enumerate(frame.groupby("series", sort=True)):
        colour = PALETTE[index % len(PALETTE)]
        if panel.kind == "bar" or panel.instant:
            last = rows.sort_values("time").iloc[-1]
            fig.add_trace(go.Bar(x=[str(series)], y=[last["value"]], name=str(series), marker_color=colour))
        else:
            fig.add_trace(go.Scatter(x=rows["time"], y=rows["value"], mode="lines", name=str(series),
                                     line={"color": colour, "width": 3}))
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, panel.title, dark=dark, y_title=panel.unit, height=280,
                   time_axis=not (panel.kind == "bar" or panel.instant))


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


def render_kiosk(monitoring: Monitoring, settings: Settings) -> None:
    """The wall screen: dark, large, refreshing itself without a full rerun."""
    st.html(KIOSK_CSS)

    @st.fragment(run_every=settings.kiosk_refresh_s)
    def live_status() -> None:
        enter_fragment()
        latest = monitoring.prober.latest()
        top_left, top_right = st.columns([3, 2])
        with top_left:
            st.title("Ollama fleet", anchor=False)
            with section("The summary"):
                render_summary(settings.backends, latest, kiosk=True)
        with top_right, section("The clock"):
            render_freshness(monitoring, kiosk=True)
        with section("The status tiles"):
            render_tiles(settings.backends, latest, kiosk=True)

    # Charts are bucketed (10 s over 15 min): redrawing them more often than a bucket only costs CPU.
    @st.fragment(run_every=max(settings.kiosk_refresh_s, bucket_for(KIOSK_RANGE_S)))
    def live_charts() -> None:
        enter_fragment()
        with section("The history charts"):
            render_history_charts(monitoring, KIOSK_RANGE_S, kiosk=True)
        if monitoring.panels is not None or monitoring.panels_error:
            with section("The Prometheus panels"):
                render_panels(monitoring, KIOSK_RANGE_S, kiosk=True)

    live_status()
    live_charts()


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
