"""The ``/metrics`` exporter on its own port (``DASHBOARD_METRICS_PORT``, default 9464).

It serves ``services.metrics.REGISTRY``: the ``ai_*`` generation metrics and the prober's ``ollama_*``
gauges. The composition root starts it once per process; when the port is taken (a second dashboard on
the host, a test run), it logs one line and the dashboard carries on without it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from services.metrics import REGISTRY

logger = logging.getLogger(__name__)


@dataclass
class Exporter:
    """The exporter as it started: listening, or why not (``error``)."""

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


def start_exporter(port: int, addr: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY) -> Exporter:
    """Bind and serve on a daemon thread; port 0 disables it; a taken port is logged, never raised."""
    if port == 0:
        return Exporter(addr, port, None, None, error="disabled (DASHBOARD_METRICS_PORT=0)")
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        logger.warning("Metrics exporter not started on %s:%d (%s); the dashboard carries on without it.",
                       addr, port, exc.strerror or exc)
        return Exporter(addr, port, None, None, error=f"port {port} unavailable: {exc.strerror or exc}")
    logger.info("Prometheus metrics on http://%s:%d/metrics", addr, port)
    return Exporter(addr, port, server, thread)
