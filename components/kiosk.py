"""The wall screen (``/monitoring?kiosk=1``): dark, large type, no sidebar or menus, refreshing itself.

It draws from the same process-wide ``Monitoring`` as the operator page, so a refresh reads memory and
SQLite and never waits on a backend.
"""

from __future__ import annotations

import streamlit as st

from components.auth import enter_fragment
from components.charts import bucket_for
from components.monitoring import (
    KIOSK_RANGE_S,
    render_freshness,
    render_history_charts,
    render_panels,
    render_summary,
    render_tiles,
    section,
)
from services.config import Settings
from services.monitoring.service import Monitoring

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

