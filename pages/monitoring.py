"""Monitoring: live health of every backend, its history, the dashboard's own load and Prometheus panels.

``/monitoring?kiosk=1`` is the wall screen: no sidebar or menus, large type, dark, refreshing itself.
"""

from __future__ import annotations

import streamlit as st

from components import kiosk as kiosk_view
from components import monitoring as view
from components import runtime
from components.router import enter_page

RANGE_KEY = "monitoring.range"

enter_page("monitoring")
settings = runtime.settings()
monitoring = runtime.monitoring()
kiosk = st.query_params.get("kiosk") == "1"

if kiosk:
    kiosk_view.render_kiosk(monitoring, settings)
else:
    st.title("Monitoring", anchor=False)
    top_left, top_right = st.columns([3, 1])
    with top_left:
        st.segmented_control("Time range", list(view.RANGES), key=RANGE_KEY, default=view.DEFAULT_RANGE,
                             help="Range of the charts; the status tiles always show the latest probe.")
    with top_right:
        st.link_button("Open the wall screen", "/monitoring?kiosk=1", icon=":material/tv:")
    view.render_page(monitoring, settings, st.session_state.get(RANGE_KEY) or view.DEFAULT_RANGE)
