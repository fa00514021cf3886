"""The process-wide monitoring services: the ``/metrics`` exporter, the prober, its history and the panels.

The exporter listens on its own port (``DASHBOARD_METRICS_PORT``, default 9464, ``/metrics``).

It serves ``services.metrics.REGISTRY``: the ``ai_*`` generation metrics and the prober's ``ollama_*``
gauges. Streamlit reruns call ``start_exporter`` again and again; only the first call binds. When the
port is taken (a second dashboard on the host, a test run), it logs one line and the dashboard carries on.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from services.config import Settings
from services.db import Database
from services.errors import InvalidInput
from services.metrics import REGISTRY
from services.probe import Prober, RoundReport
from services.prometheus import PanelRunner, PrometheusSource, load_panels
from services.store import GenerationCounter, ProbeStore

logger = logging.getLogger(__name__)


@dataclass
class Exporter:
    addr: str
    port: int
    server: WSGIServer | None
    thread: threading.Thread | None
    error: str = ""

    @property
    def running(self) -> bool:
        return self.server is not None

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}/metrics"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


_lock = threading.Lock()
_exporter: Exporter | None = None


def start_exporter(port: int, addr: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> Exporter:
    """Bind once per process; later calls return the same (possibly failed) exporter. Port 0 disables it."""
    global _exporter
    with _lock:
        if _exporter is not None:
            return _exporter
        if port == 0:
            _exporter = Exporter(addr, port, None, None, error="disabled (DASHBOARD_METRICS_PORT=0)")
            return _exporter
        try:
            server, thread = start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            logger.warning("Metrics exporter not started on %s:%d (%s); the dashboard carries on without it.",
                           addr, port, exc.strerror or exc)
            _exporter = Exporter(addr, port, None, None, error=f"port {port} unavailable: {exc.strerror or exc}")
            return _exporter
        logger.info("Prometheus metrics on http://%s:%d/metrics", addr, port)
        _exporter = Exporter(addr, port, server, thread)
        return _exporter


def current_exporter() -> Exporter | None:
    return _exporter


def reset_for_tests() -> None:
    """Stop the exporter so the next ``start_exporter`` binds again (tests only)."""
    global _exporter
    with _lock:
        if _exporter is not None:
            _exporter.stop()
        _exporter = None


@dataclass
class Monitoring:
    """Everything the monitoring page reads, owned by the process: prober, history, panels, exporter."""

    settings: Settings
    prober: Prober
    store: ProbeStore
    exporter: Exporter
    panels: PanelRunner | None
    panels_error: str

    def stop(self) -> None:
        self.prober.stop()
        if self.panels is not None:
            self.panels.close()


_monitoring: Monitoring | None = None


def start_monitoring(settings: Settings) -> Monitoring:
    """Start (once per process and settings) the exporter, the prober writing to SQLite, and the panels.

    Called by app.py on every run; cheap after the first call. New settings (tests) replace the prober.
    """
    global _monitoring
    with _lock:
        current = _monitoring
    if current is not None and current.settings == settings:
        return current
    exporter = start_exporter(settings.metrics_port, settings.metrics_addr)
    with _lock:
        if _monitoring is not None and _monitoring.settings == settings:
            return _monitoring
        if _monitoring is not None:
            _monitoring.stop()
        store = ProbeStore(Database.in_dir(settings.data_dir), retention_s=settings.probe_retention_days * 86400)
        counter = GenerationCounter(REGISTRY)

        def on_round(report: RoundReport) -> None:
            store.record(report.results.values(), counter.deltas(report.started))

        panels, panels_error = None, ""
        try:
            loaded = load_panels(settings.panels_file, settings.prometheus_timeout_s)
        except InvalidInput as exc:
            panels_error = str(exc)
            logger.error("%s The Prometheus panels are off until it is fixed.", exc)
        else:
            if settings.prometheus_url:
                panels = PanelRunner(PrometheusSource(settings.prometheus_url), loaded)
        prober = Prober(settings, on_round=on_round).start()
        _monitoring = Monitoring(settings, prober, store, exporter, panels, panels_error)
        return _monitoring


def current_monitoring() -> Monitoring | None:
    with _lock:
        return _monitoring


def stop_monitoring() -> None:
    """Stop the prober and panels (tests, benchmarks); the exporter keeps its port."""
    global _monitoring
    with _lock:
        if _monitoring is not None:
            _monitoring.stop()
        _monitoring = None
