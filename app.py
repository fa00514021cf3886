"""The dashboard's entry point, two ways at once.

Imported by the server (``streamlit run app.py``, ``python serve.py``, the Docker image), it is the
``st.App``: the process's services (prober, ``/metrics`` exporter, pull and batch runners) start with the
server, in ``components.runtime.lifespan``, before any browser connects. Run by Streamlit for every page
view, it is the router: page config, the sign-in gate, the sidebar, the navigation built from the page
registry (``services.access.pages``). Nothing else lives here.
"""

from __future__ import annotations

import logging

import streamlit as st

if __name__ == "__main__":  # a script run: Streamlit executes this file for every page view
    from components import router

    router.run()
else:  # imported by the server: one st.App per process (its lifespan starts the process's services)
    from components import runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: on a fleet probed every few seconds that drowns the useful lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = st.App(__file__, lifespan=runtime.lifespan)
