"""Fleet scale: 50 stand-in backends (some slow, some dead). One probe round against the per-backend timeout
(the probes run concurrently, so the ratio should stay near 1, not near 50), and the monitoring page's
render time (AppTest script run, normal and wall-screen mode) against the 2 s target."""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

FLEET = 50
SLOW = 6  # answer each call after 0.3 s: degraded against a 250 ms threshold
HUNG = 4  # answer after 10 s: beyond the timeout, offline
DEAD = 5  # nothing listens: connection refused
TIMEOUT_S = 2.0


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def main() -> None:
    from services.config import Backend, load_settings
    from services.monitoring.probe import Prober
    from tests.standin import StandinServer

    servers = [StandinServer().start() for _ in range(FLEET - DEAD)]
    for server in servers:  # probes that give up close their connection: not worth a stack trace here
        server.httpd.handle_error = lambda *args: None  # type: ignore[method-assign]
    for server in servers[:SLOW]:
        server.state.configure(read_delay_s=0.3)
    for server in servers[SLOW:SLOW + HUNG]:
        server.state.configure(read_delay_s=10.0)
    for server in servers[SLOW + HUNG:SLOW + HUNG + 10]:
        server.state.mark_loaded("llama3.2:1b", "5m")
    urls = [s.url for s in servers] + [_dead_url() for _ in range(DEAD)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    backends_file = tmp / "backends.toml"
    backends_file.write_text("".join(f'[[backends]]\nname = "node-{i:02d}"\nurl = "{url}"\n'
                                     for i, url in enumerate(urls)))
    env = {"DASHBOARD_BACKENDS_FILE": str(backends_file), "DASHBOARD_DATA_DIR": str(tmp / "data"),
           "DASHBOARD_PROBE_TIMEOUT": str(TIMEOUT_S), "DASHBOARD_SLOW_MS": "250", "DASHBOARD_METRICS_PORT": "0",
           "DASHBOARD_PROBE_INTERVAL": "3600"}
    try:
        settings = load_settings(env)
        prober = Prober(settings)
        rounds = [prober.run_round() for _ in range(3)]
        prober.stop()
        statuses: dict[str, int] = {}
        for result in rounds[-1].results.values():
            statuses[result.status] = statuses.get(result.status, 0) + 1
        durations = [r.duration_s for r in rounds]
        worst = max(durations)
        print(f"fleet: {FLEET} backends ({SLOW} slow, {HUNG} beyond the timeout, {DEAD} dead): {statuses}")
        print(f"probe round: median {statistics.median(durations):.2f} s, worst {worst:.2f} s "
              f"for a {TIMEOUT_S:.1f} s per-backend timeout -> ratio {worst / TIMEOUT_S:.2f} "
              f"(one after the other it would be about {HUNG * TIMEOUT_S + SLOW * 0.9:.0f} s or more)")
        print(f"page render: {_render_times(env, Backend)}")
    finally:
        for server in servers:
            server.halt()


def _render_times(env: dict[str, str], _backend: object) -> str:
    import streamlit as st
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    from services import exporter

    root = Path(__file__).resolve().parents[1]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({**env, "DASHBOARD_PROBE_INTERVAL": "30"})
    cwd = os.getcwd()
    os.chdir(root)
    try:
        PagesManager.uses_pages_directory = False
        st.cache_resource.clear()
        st.cache_data.clear()
        at = AppTest.from_file(str(root / "app.py"), default_timeout=60)
        at.run()
        at.switch_page("pages/monitoring.py")
        at.run()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            monitoring = exporter.current_monitoring()
            if monitoring is not None and monitoring.prober.last_round() is not None:
                break
            time.sleep(0.1)
        figures = []
        for kiosk in (False, True):
            if kiosk:
                at.query_params["kiosk"] = "1"
            times = []
            for _ in range(3):
                started = time.perf_counter()
                at.run()
                times.append(time.perf_counter() - started)
            assert not at.exception, at.exception
            worst = max(times)
            figures.append(f"{'wall screen' if kiosk else 'operator page'} {worst:.2f} s (ratio to 2 s: "
                           f"{worst / 2.0:.2f})")
        return "; ".join(figures)
    finally:
        exporter.stop_monitoring()
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if __name__ == "__main__":
    main()
