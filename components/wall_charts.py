"""The wall screen's charts, pure: probe and generation frames in, one row of SVG images out.

The wall is a 1920x1080 canvas scaled to the screen by a CSS transform (``static/wall.js``). Interactive
chart libraries measure their own box on the page and draw at the wrong size under a transform, so the
wall's charts are static SVG (pygal), shown as ``<img>``: an image scales with the canvas like text does,
sharp at 4K, and its text stays ``WALL_FONT_PX`` on the 1080p canvas. The operator page keeps its
interactive plotly charts (``components.charts``). A large fleet is drawn by its worst ``WALL_TOP``
backends; the tiles name every one.
"""

from __future__ import annotations

import base64
import html
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from datetime import tzinfo

import pandas as pd
import pygal
from pygal.style import Style

WALL_FONT_PX = 20
WALL_TITLE_PX = 26
WALL_TOP = 8
LEGEND_MAX = 3  # past this many series a legend would eat the plot
CHART_WIDTH, CHART_HEIGHT = 455, 300
PALETTE = ("#60a5fa", "#f472b6", "#34d399", "#fbbf24", "#a78bfa", "#f87171", "#22d3ee", "#a3e635")
GOOD, BAD, THRESHOLD = "#16a34a", "#dc2626", "#f59e0b"
STYLE_SETTINGS = dict(
    background="#0b1220", plot_background="#0b1220", foreground="#f1f5f9", foreground_strong="#f8fafc",
    foreground_subtle="#334155", opacity=".9", opacity_hover="1", colors=PALETTE, font_family="DejaVu Sans, sans-serif",
    label_font_size=WALL_FONT_PX, major_label_font_size=WALL_FONT_PX, title_font_size=WALL_TITLE_PX,
    legend_font_size=WALL_FONT_PX, value_font_size=WALL_FONT_PX, value_label_font_size=WALL_FONT_PX,
    tooltip_font_size=WALL_FONT_PX, no_data_font_size=WALL_FONT_PX, stroke_width="3",
)


def _style(colors: Sequence[str] = PALETTE) -> Style:
    """The wall's chart style; ``colors`` in series order (pygal colours series by position only)."""
    return Style(**{**STYLE_SETTINGS, "colors": tuple(colors)})


def _chart(kind: type, title: str, series: int, **config: object) -> pygal.Graph:
    settings: dict[str, object] = {
        "style": _style(), "width": CHART_WIDTH, "height": CHART_HEIGHT, "title": title, "js": [],
        "show_legend": 1 < series <= LEGEND_MAX, "legend_at_bottom": True, "legend_at_bottom_columns": LEGEND_MAX,
        "truncate_legend": 14, "truncate_label": 14, "margin": 8, "margin_right": 28, "spacing": 8,
        "show_minor_x_labels": False, "no_data_text": "No data yet", "disable_xml_declaration": True}
    if series == 0:
        settings.update(show_x_labels=False, show_y_labels=False)
    return kind(**{**settings, **config})


def _times(index: pd.Index, zone: tzinfo) -> list[str]:
    return [pd.Timestamp(t).tz_convert(zone).strftime("%H:%M") if pd.Timestamp(t).tzinfo else
            pd.Timestamp(t).strftime("%H:%M") for t in index]


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """A few round values from 0 past ``top`` (steps of 1, 2, 2.5 or 5 times a power of ten).

    >>> nice_ticks(0.0), nice_ticks(3.0), nice_ticks(512.0), nice_ticks(100.0)
    ([0, 1], [0, 1, 2, 3], [0, 200, 400, 600], [0, 25, 50, 75, 100])
    """
    if not top or top <= 0 or math.isnan(top):
        return [0, 1]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [round(i * step, 10) for i in range(math.ceil(top / step - 1e-9) + 1)]
    return [int(t) if float(t).is_integer() else t for t in ticks]


def _label_axis(chart: pygal.Graph, labels: Sequence[str], wanted: int = 4) -> None:
    """About ``wanted`` time labels along the axis, the others blank and hidden (one per bucket would overlap)."""
    step = max(len(labels) // wanted, 1)
    chart.x_labels = [label if index % step == 0 else "" for index, label in enumerate(labels)]
    chart.config.x_labels_major = [label for label in chart.x_labels if label]


def _values(column: pd.Series) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in column]


def _over(table: pd.DataFrame, span: tuple[pd.Timestamp, pd.Timestamp] | None, step_s: float) -> pd.DataFrame:
    """The rows on the whole time window (empty buckets as gaps), so the chart's axis is the window's."""
    if span is None or table.empty:
        return table
    grid = pd.date_range(span[0], span[1], freq=pd.Timedelta(seconds=step_s), tz="UTC")
    index = pd.DatetimeIndex(pd.to_datetime(table.index, utc=True))
    return table.set_axis(index).reindex(grid.union(index)).sort_index()


def latency_chart(history: pd.DataFrame, slow_ms: float, zone: tzinfo,
                  span: tuple[pd.Timestamp, pd.Timestamp] | None = None, step_s: float = 10.0) -> pygal.Graph:
    """Probe latency per backend (the slowest ``WALL_TOP`` of a large fleet), with the slow threshold."""
    data = history.dropna(subset=["latency_ms"]) if not history.empty else history
    backends = data["backend"].nunique() if not data.empty else 0
    title = "Latency ms" + (f" · worst {WALL_TOP} of {backends}" if backends > WALL_TOP
                            else f" · slow > {slow_ms:,.0f}")
    if data.empty:
        return _chart(pygal.Line, title, 0)
    if backends > WALL_TOP:
        slowest = data.groupby("backend")["latency_ms"].max().sort_values(ascending=False).index[:WALL_TOP]
        data = data[data["backend"].isin(slowest)]
    table = _over(data.pivot_table(index="time", columns="backend", values="latency_ms", aggfunc="max").sort_index(),
                  span, step_s)
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(table.columns))] + [THRESHOLD]
    threshold = float(data["latency_ms"].max()) >= slow_ms / 3
    ticks = nice_ticks(max(float(data["latency_ms"].max()), slow_ms if threshold else 0.0))
    chart = _chart(pygal.Line, title, len(table.columns), show_dots=int(table.notna().sum().max()) < 4, dots_size=4,
                   allow_interruptions=True, show_x_guides=False, style=_style(colors), y_labels=ticks,
                   range=(0, ticks[-1]))
    _label_axis(chart, _times(table.index, zone))
    for name in table.columns:
        chart.add(str(name), _values(table[name]))
    if threshold:
        chart.add(f"slow ({slow_ms:,.0f} ms)", [slow_ms] * len(table), show_dots=False,
                  stroke_style={"dasharray": "10, 8", "width": 3})
    return chart


def per_minute(rates: pd.DataFrame, span: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> pd.DataFrame:
    """Requests and errors per whole minute over the window (the wall shows minutes, not 10 s buckets)."""
    if rates.empty:
        return pd.DataFrame(columns=["time", "requests", "errors"])
    frame = rates.assign(time=pd.to_datetime(rates["time"], utc=True).dt.floor("min"))
    minutes = frame.groupby("time", sort=True)[["requests", "errors"]].sum()
    if span is not None:
        grid = pd.date_range(span[0].floor("min"), span[1].floor("min"), freq="min", tz="UTC")
        minutes = minutes.reindex(grid.union(minutes.index), fill_value=0)
    return minutes.rename_axis("time").reset_index()


def requests_chart(rates: pd.DataFrame, zone: tzinfo,
                   span: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> pygal.Graph:
    minutes = per_minute(rates, span)
    if minutes.empty:
        return _chart(pygal.Bar, "Requests per minute", 0)
    ticks = nice_ticks(float(minutes["requests"].max()))
    chart = _chart(pygal.Bar, "Requests per minute", 1, y_labels=ticks, range=(0, ticks[-1]))
    _label_axis(chart, _times(pd.Index(minutes["time"]), zone))
    chart.add("requests", _values(minutes["requests"]))
    return chart


def error_chart(rates: pd.DataFrame, zone: tzinfo,
                span: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> pygal.Graph:
    minutes = per_minute(rates, span)
    if minutes.empty:
        return _chart(pygal.Line, "Error ratio, %", 0)
    ratio = (minutes["errors"] / minutes["requests"].where(minutes["requests"] > 0)) * 100
    chart = _chart(pygal.Line, "Error ratio, %", 1, range=(0, 100), y_labels=[0, 25, 50, 75, 100], dots_size=5,
                   allow_interruptions=True, style=_style([BAD]))
    _label_axis(chart, _times(pd.Index(minutes["time"]), zone))
    chart.add("errors", _values(ratio))
    return chart


def availability_chart(availability: pd.DataFrame, target: float = 0.99) -> pygal.Graph:
    """Share of probes answered per backend over the day, lowest first, against the 99 % target."""
    count = len(availability)
    title = "Availability 24h" + (f", worst {WALL_TOP}" if count > WALL_TOP else "")
    if availability.empty:
        return _chart(pygal.HorizontalBar, title, 0)
    lowest = availability.sort_values("availability", ascending=True).head(WALL_TOP).iloc[::-1]
    # The figure goes in the label: a bar at 0 % has no room for it, and it is the one that matters.
    chart = _chart(pygal.HorizontalBar, title, 1, range=(0, 100), y_labels=[0, 50, 100], show_y_guides=False,
                   truncate_label=24, show_minor_x_labels=True)
    chart.x_labels = [f"{str(b)[:14]} {v * 100:.1f} %" for b, v in zip(lowest["backend"], lowest["availability"],
                                                                       strict=True)]
    chart.add("availability", [{"value": float(v) * 100, "color": GOOD if v >= target else BAD}
                               for v in lowest["availability"]])
    return chart


SVG_NS = "http://www.w3.org/2000/svg"
ElementTree.register_namespace("", SVG_NS)


def static_svg(chart: pygal.Graph) -> bytes:
    """The chart's SVG without the configuration script pygal always embeds (an image never runs it anyway)."""
    root = ElementTree.fromstring(chart.render(is_unicode=True))
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in (f"{{{SVG_NS}}}script", "script"):
                parent.remove(child)
    return ElementTree.tostring(root, encoding="utf-8")


def svg_image(chart: pygal.Graph, alt: str, key: str) -> str:
    """One chart as an ``<img>`` with a data URI (no script, nothing fetched) and a text alternative."""
    encoded = base64.b64encode(static_svg(chart)).decode("ascii")
    return (f'<img class="wall-chart" data-chart="{key}" alt="{html.escape(alt, quote=True)}" '
            f'src="data:image/svg+xml;base64,{encoded}">')


def charts_html(history: pd.DataFrame, rates: pd.DataFrame, availability: pd.DataFrame, *, slow_ms: float,
                zone: tzinfo, start: float, end: float, bucket_s: float) -> str:
    span = (pd.Timestamp(start, unit="s", tz="UTC"), pd.Timestamp(end, unit="s", tz="UTC"))
    images = [
        svg_image(latency_chart(history, slow_ms, zone, span, bucket_s), "Probe latency per backend over 15 minutes",
                  "latency"),
        svg_image(requests_chart(rates, zone, span), "Requests per minute over 15 minutes", "requests"),
        svg_image(error_chart(rates, zone, span), "Error ratio per minute over 15 minutes", "errors"),
        svg_image(availability_chart(availability), "Availability per backend over 24 hours", "availability"),
    ]
    return f'<section class="wall-charts">{"".join(images)}</section>'
