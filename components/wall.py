"""The wall screen's markup, pure: a ``WallData`` in, one HTML string out (no Streamlit here, so it is testable).

Laid out on a 1920x1080 canvas (``static/wall.js`` zooms it to the real screen): a head with the clock
and its time zone, a strip of firing alerts when Prometheus has any, a top row of large numbers, and the
backend tiles in a grid that holds 1 to 50 backends (past 50, the ones in trouble first and the healthy
rest summarised). Every piece of text that came from configuration or a backend is escaped here.
Colours keep a contrast of at least 4.5:1 against their own background.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from components.charts import fleet_summary, tile_state
from services import format as fmt
from services.config import Backend
from services.monitoring.activity import Activity
from services.monitoring.alerts import AlertsView
from services.monitoring.faults import fault_words, reason_words
from services.monitoring.probe import ProbeResult

MAX_TILES = 50
TILES_HEIGHT_PX = 440
SEVERITY_ORDER = {"offline": 0, "degraded": 1, "waiting": 2, "online": 3}
STATE_WORDS = {"online": ("✔", "ONLINE"), "degraded": ("▲", "DEGRADED"), "offline": ("✖", "OFFLINE"),
               "waiting": ("…", "WAITING")}
# (up to this many tiles, columns, rows, density): the largest tiles that hold the fleet on one screen.
GRIDS = ((4, 4, 1, "full"), (6, 3, 2, "medium"), (8, 4, 2, "medium"), (12, 4, 3, "compact"), (18, 6, 3, "compact"),
         (24, 6, 4, "small"), (32, 8, 4, "small"), (40, 8, 5, "mini"), (50, 10, 5, "mini"))


@dataclass(frozen=True)
class JobLine:
    """A pull or a batch job running now: what it is and how far it got."""

    label: str
    fraction: float
    eta_s: float | None = None


@dataclass(frozen=True)
class WallData:
    backends: Sequence[Backend]
    latest: dict[str, ProbeResult]
    activity: Activity
    now: datetime  # in the wall's time zone
    zone_label: str
    refresh_s: float
    probe_timeout_s: float
    slow_ms: float
    probe_age_s: float | None = None
    probe_stale: bool = False
    pulls: Sequence[JobLine] = ()
    batches: Sequence[JobLine] = ()
    alerts: AlertsView | None = None  # None: Prometheus is not configured
    notes: Sequence[str] = field(default_factory=tuple)  # server-side trouble (history store, ...)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def grid_for(count: int) -> tuple[int, int, str]:
    """Columns, rows and density for ``count`` tiles.

    >>> grid_for(1), grid_for(4), grid_for(6), grid_for(7), grid_for(12)
    ((1, 1, 'full'), (4, 1, 'full'), (3, 2, 'medium'), (4, 2, 'medium'), (4, 3, 'compact'))
    >>> grid_for(30), grid_for(50), grid_for(80)
    ((8, 4, 'small'), (10, 5, 'mini'), (10, 5, 'mini'))
    """
    for limit, columns, rows, density in GRIDS:
        if count <= limit:
            return (max(count, 1), 1, density) if rows == 1 else (columns, rows, density)
    return 10, 5, "mini"


def tiles_shown(backends: Sequence[Backend], latest: dict[str, ProbeResult]) -> tuple[list[Backend], dict[str, int]]:
    """All backends when they fit; past ``MAX_TILES``, the ones in trouble first and a count of the rest by state."""
    if len(backends) <= MAX_TILES:
        return list(backends), {}
    ranked = sorted(backends, key=lambda b: SEVERITY_ORDER[tile_state(latest.get(b.name))])
    shown = ranked[: MAX_TILES - 1]
    rest: dict[str, int] = {}
    for backend in ranked[MAX_TILES - 1:]:
        state = tile_state(latest.get(backend.name))
        rest[state] = rest.get(state, 0) + 1
    return shown, rest


def _tile_detail(result: ProbeResult | None, data: WallData, density: str) -> str:
    """The fault in human words (a word or two on the smallest tiles), or latency and loaded models."""
    short = density in ("small", "mini")
    if result is None:
        return "probing…" if short else "first probe running"
    if result.status == "offline":
        cause = result.error or (result.reasons[0] if result.reasons else "")
        return fault_words(cause, data.probe_timeout_s, short=short)
    if result.status == "degraded" and result.reasons:
        return reason_words(result.reasons[0], data.probe_timeout_s, short=short)
    if short:
        return fmt.milliseconds(result.latency_ms)
    return f"{fmt.milliseconds(result.latency_ms)} · {fmt.count(len(result.loaded), 'model')} loaded"


def _tile(backend: Backend, result: ProbeResult | None, data: WallData, density: str) -> str:
    state = tile_state(result)
    symbol, word = STATE_WORDS[state]
    lines = [f'<div class="tile-name">{_e(backend.name)}</div>',
             f'<div class="tile-state">{symbol} {word}</div>',
             f'<div class="tile-detail">{_e(_tile_detail(result, data, density))}</div>']
    if density in ("full", "medium") and result is not None and result.up:
        facts = [f"Ollama {result.version}" if result.version else "",
                 f"VRAM {fmt.size(result.vram_bytes)}" if result.loaded else ""]
        if result.canary_model and result.canary_ttft_ms is not None:
            facts.append(f"canary {fmt.milliseconds(result.canary_ttft_ms)}")
        lines.append(f'<div class="tile-facts">{_e(" · ".join(f for f in facts if f))}</div>')
        if density == "full":
            for model in result.loaded[:3]:
                lines.append(f'<div class="tile-model">{_e(model.name)} · {_e(fmt.size(model.size_vram))}</div>')
            if len(result.loaded) > 3:
                lines.append(f'<div class="tile-model">and {len(result.loaded) - 3} more</div>')
    return (f'<div class="wall-tile tile-{state}" data-state="{state}" data-backend="{_e(backend.name)}">'
            + "".join(lines) + "</div>")


def tiles_html(data: WallData, height_px: int) -> str:
    shown, rest = tiles_shown(data.backends, data.latest)
    cells = len(shown) + (1 if rest else 0)
    columns, rows, density = grid_for(cells)
    parts = [_tile(b, data.latest.get(b.name), data, density) for b in shown]
    if rest:
        words = " · ".join(f"{n} {state}" for state, n in sorted(rest.items(), key=lambda i: SEVERITY_ORDER[i[0]]))
        parts.append(f'<div class="wall-tile tile-summary" data-state="summary"><div class="tile-name">'
                     f'+{sum(rest.values())} more</div><div class="tile-detail">{_e(words)}</div></div>')
    style = (f"grid-template-columns:repeat({columns},minmax(0,1fr));grid-template-rows:repeat({rows},minmax(0,1fr));"
             f"height:{height_px}px")
    return f'<section class="wall-tiles density-{density}" style="{style}">{"".join(parts)}</section>'


def _stat(key: str, label: str, value: str, sub: str, level: str = "", bar: float | None = None) -> str:
    """One large number; a trailing unit ("242 ms", "3.1 %") is set smaller, as on a Grafana stat panel."""
    number, _, unit = value.partition(" ")
    shown = _e(number) + (f'<span class="stat-unit">{_e(unit)}</span>' if unit else "")
    meter = ""
    if bar is not None:
        meter = f'<div class="stat-bar"><div style="width:{max(0.0, min(bar, 1.0)) * 100:.1f}%"></div></div>'
    return (f'<div class="wall-stat stat-{key} {("level-" + level) if level else ""}" data-stat="{key}">'
            f'<div class="stat-label">{_e(label)}</div><div class="stat-value">{shown}</div>'
            f'{meter}<div class="stat-sub">{_e(sub)}</div></div>')


def _jobs_stat(key: str, label: str, jobs: Sequence[JobLine], noun: str) -> str:
    if not jobs:
        return _stat(key, label, "0", f"no {noun} running")
    overall = sum(j.fraction for j in jobs) / len(jobs)
    etas = [j.eta_s for j in jobs if j.eta_s is not None]
    first = jobs[0].label if len(jobs) == 1 else f"{len(jobs)} {noun}s"
    sub = fmt.percent(overall) + (f" · ETA {fmt.eta(max(etas))}" if etas else "") + f" · {first}"
    return _stat(key, label, str(len(jobs)), sub, "busy", overall)


def stats_html(data: WallData) -> str:
    counts = fleet_summary(data.backends, data.latest)
    total = len(data.backends)
    up = counts["online"] + counts["degraded"]
    trouble = [f"{counts[s]} {s}" for s in ("offline", "degraded", "waiting") if counts[s]]
    fleet_level = "bad" if counts["offline"] else "warn" if counts["degraded"] else "good"
    a = data.activity
    window = f"last {fmt.duration(a.span_s)}" if a.span_s < 299 else "last 5 min"
    trouble_words = " · ".join(trouble) or "all online"
    error_level = "" if a.error_ratio is None else "bad" if a.error_ratio > 0.05 else "good"
    p95_level = "" if a.p95_latency_s is None else "bad" if a.p95_latency_s * 1000 > data.slow_ms else "good"
    cards = [
        _stat("backends", "Backends up", f"{up}/{total}", trouble_words, fleet_level),
        _stat("rpm", "Requests/min", f"{a.per_minute:,.1f}", window),
        _stat("errors", "Error ratio", fmt.percent(a.error_ratio, 1), "target < 5 %", error_level),
        _stat("p95", "p95 latency", fmt.seconds(a.p95_latency_s, 1), f"target < {data.slow_ms / 1000:g} s", p95_level),
        _stat("ttft", "First token", fmt.seconds(a.median_ttft_s, 2), "median"),
        _stat("tps", "Tokens / s", f"{a.tokens_per_s:,.0f}" if a.requests else "0", "generated"),
        _jobs_stat("pulls", "Pulls", data.pulls, "pull"),
        _jobs_stat("batches", "Batch jobs", data.batches, "job"),
    ]
    return f'<section class="wall-stats">{"".join(cards)}</section>'


def alerts_html(view: AlertsView | None, now: datetime) -> str:
    """The head's alert line: firing alerts in red, or whether Prometheus says all is quiet (or cannot say)."""
    if view is None:
        return ""
    if not view.known:
        status = "Alerts: reading Prometheus…" if not view.error else f"Alerts unknown: {view.error}"
        return f'<div class="wall-alerts level-warn">{_e(status)}</div>'
    checked = datetime.fromtimestamp(view.fetched_at, now.tzinfo).strftime("%H:%M:%S")
    stale = f" (as of {checked}: {view.error})" if view.stale else ""
    if not view.alerts:
        level = "warn" if view.stale else "good"
        return f'<div class="wall-alerts level-{level}">{_e("No alert firing" + stale)}</div>'
    items = []
    for alert in view.alerts[:3]:
        age = "" if alert.active_since is None else f" ({fmt.duration(max(now.timestamp() - alert.active_since, 0))})"
        items.append(f'<span class="alert-item sev-{_e(alert.severity or "none")}">{_e(alert.summary + age)}</span>')
    more = f'<span class="alert-more">+{len(view.alerts) - 3} more</span>' if len(view.alerts) > 3 else ""
    title = f"⚠ {len(view.alerts)} firing{stale}:"
    return (f'<div class="wall-alerts level-bad" data-firing="{len(view.alerts)}">'
            f'<span class="alert-title">{_e(title)}</span>{"".join(items)}{more}</div>')


def wall_html(data: WallData) -> str:
    """The whole status area of the wall: head, top row, tiles, and the heartbeat the watchdog reads."""
    epoch = data.now.timestamp()
    probe = ("first probe round running" if data.probe_age_s is None
             else f"probed {fmt.duration(data.probe_age_s)} ago")
    notes = list(data.notes)
    if data.probe_stale:
        notes.insert(0, f"Probe data is stale ({probe}): the tiles show the last known state.")
    middle = alerts_html(data.alerts, data.now) + "".join(f'<div class="wall-note">{_e(n)}</div>' for n in notes[:1])
    clock = data.now.strftime("%H:%M:%S")
    head = (f'<header class="wall-head"><div class="wall-name"><div class="wall-title">Ollama fleet</div>'
            f'<div class="clock-probe{" level-bad" if data.probe_stale else ""}">{_e(probe)}</div></div>'
            f'<div class="wall-middle">{middle}</div>'
            f'<div class="wall-clock"><span class="clock-time">{clock}</span>'
            f'<span class="clock-zone">{_e(data.zone_label)}</span></div></header>')
    beat = (f'<div class="wall-beat" data-beat="{epoch:.3f}" data-refresh="{data.refresh_s:g}" '
            f'data-clock="{clock}" hidden></div>')
    return f'<div class="wall">{head}{stats_html(data)}{tiles_html(data, TILES_HEIGHT_PX)}{beat}</div>'


def zone_label(now: datetime, configured: str) -> str:
    """``Europe/Paris · CET`` for a configured zone; ``UTC (server time)`` for the server's own."""
    abbreviation = now.tzname() or ""
    if configured:
        return configured if abbreviation in ("", configured) else f"{configured} · {abbreviation}"
    return f"{abbreviation or 'local'} (server time)"
