"""Fleet scale: 50 stand-in backends (some slow, some dead). One probe round against the per-backend timeout
(the probes run concurrently, so the ratio should stay near 1, not near 50); the monitoring page's render
time (AppTest script run) against 2 s; and the wall screen with 50 backends and its top row: one refresh of
its status area (what the fragment does every DASHBOARD_KIOSK_REFRESH_S) and one of its charts, each against
the 1 s target, the median and worst of several."""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from bench import scoped_env

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
    from streamlit.testing.v1 import AppTest

    from components import runtime

    root = Path(__file__).resolve().parents[1]
    with scoped_env(**{**env, "DASHBOARD_PROBE_INTERVAL": "30"}):
        cwd = os.getcwd()
        os.chdir(root)
        try:
            st.cache_resource.clear()
            st.cache_data.clear()
            at = AppTest.from_file(str(root / "app.py"), default_timeout=60)
            at.run()
            at.switch_page("pages/monitoring.py")
            at.run()
            runtime.monitoring().prober.wait_for_round(FLEET, timeout_s=30)
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
                figures.append(f"{'wall screen (whole page)' if kiosk else 'operator page'} {worst:.2f} s "
                               f"(ratio to 2 s: {worst / 2.0:.2f})")
            tiles = sum(h.value.count('class="wall-tile ') for h in at.html)
            figures.append(f"wall tiles drawn: {tiles}")
            return "; ".join(figures) + "\n" + _wall_refresh()
        finally:
            st.cache_resource.clear()
            os.chdir(cwd)


def _wall_refresh(repeats: int = 9) -> str:
    """One refresh of each wall fragment, outside Streamlit's runner: the work a refresh does, 50 backends."""
    from components import kiosk, runtime
    from components.wall import wall_html
    from services.metrics import record_generation

    monitoring, settings = runtime.monitoring(), runtime.settings()
    for index in range(200):  # a busy five minutes, so the top row has quantiles to compute
        record_generation(model=f"bench-{index % 4}:1b", status="error" if index % 25 == 0 else "success",
                          duration_s=0.5 + index % 7, ttft_s=0.05 * (index % 9), completion_tokens=120)
    status, charts, sizes = [], [], []
    import streamlit as st

    for _ in range(repeats):
        started = time.perf_counter()
        markup = wall_html(kiosk.wall_data(monitoring, settings))
        status.append(time.perf_counter() - started)
        sizes.append(len(markup))
        st.cache_data.clear()  # the charts' history reads are cached for 4 s: measure the real read
        started = time.perf_counter()
        kiosk.render_charts(monitoring, settings)
        charts.append(time.perf_counter() - started)
    line = []
    for name, times in (("status area (top row + 50 tiles)", status), ("charts (4 SVG, history read)", charts)):
        median, worst = statistics.median(times), max(times)
        line.append(f"wall {name}: median {median * 1000:.0f} ms, worst {worst * 1000:.0f} ms "
                    f"-> ratio to the 1 s target {worst:.3f}")
    return "\n".join(line) + f" ({max(sizes) / 1000:.0f} kB of status markup per refresh)"


if __name__ == "__main__":
    main()
