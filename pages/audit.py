"""Audit log (admins only): who pulled, deleted, copied, loaded or unloaded what, where, when, and how it went."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import streamlit as st

from components import runtime
from components.router import enter_page
from services.access.audit import ACTIONS

enter_page("audit")
audit = runtime.audit_log()
st.title("Audit log", anchor=False)
st.caption("Every pull, delete, copy, load and unload made through this dashboard. Append-only.")

cols = st.columns([2, 2, 2, 3, 3])
action = cols[0].selectbox("Action", ["all", *ACTIONS], key="audit.action")
who = cols[1].selectbox("Who", ["anyone", *audit.distinct("who")], key="audit.who")
backend = cols[2].selectbox("Backend", ["all", *audit.distinct("backend")], key="audit.backend")
model = cols[3].text_input("Model contains", key="audit.model", max_chars=256)
today = datetime.now(UTC).date()
period = cols[4].date_input("Between", (today - timedelta(days=30), today), key="audit.period",
                            max_value=today + timedelta(days=1))
outcome = st.segmented_control("Outcome", ["any", "ok", "failed", "cancelled", "already deleted"],
                               key="audit.outcome", default="any")

since = until = None
if isinstance(period, tuple) and len(period) == 2 and all(isinstance(d, date) for d in period):
    since = datetime.combine(period[0], time.min, UTC).timestamp()
    until = datetime.combine(period[1] + timedelta(days=1), time.min, UTC).timestamp()
elif isinstance(period, tuple) and len(period) == 1:
    since = datetime.combine(period[0], time.min, UTC).timestamp()

entries = audit.query(
    action=None if action == "all" else action, who=None if who == "anyone" else who,
    backend=None if backend == "all" else backend, model_contains=model or None,
    outcome_contains=None if outcome in (None, "any") else outcome, since=since, until=until, limit=2_000,
)
frame = pd.DataFrame(
    [{"When (UTC)": datetime.fromtimestamp(e.at, UTC), "Who": e.who, "Backend": e.backend, "Action": e.action,
      "Model": e.model, "Outcome": e.outcome, "Detail": e.detail} for e in entries],
    columns=["When (UTC)", "Who", "Backend", "Action", "Model", "Outcome", "Detail"],
)
st.caption(f"{len(frame)} event(s)" + (" (the newest 2,000)" if len(frame) >= 2_000 else ""))
if frame.empty:
    st.info("No audit events match these filters.", icon=":material/info:")
else:
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"When (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
    st.download_button("Download CSV", frame.to_csv(index=False), file_name="audit-log.csv", mime="text/csv",
                       icon=":material/download:")
