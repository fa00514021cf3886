"""The monitoring charts, pure: DataFrames from the probe history and Prometheus in, plotly figures out.

No Streamlit here, so every figure is testable on its own; the page and the wall screen both draw them
(``dark=True`` for the wall). Data shaping (buckets, per-minute rates) lives beside the figures it feeds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import plotly.graph_objects as go

from services.config import Backend
from services.monitoring.probe import ProbeResult
from services.monitoring.prometheus import PanelResult

logger = logging.getLogger(__name__)

PALETTE = ["#60a5fa", "#f472b6", "#34d399", "#fbbf24", "#a78bfa", "#f87171", "#22d3ee", "#a3e635"]


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


