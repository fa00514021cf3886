"""What the monitoring page and the wall screen read, owned by the process: the prober writing its rounds to
the probe history, and the Prometheus panels. Built once by the composition root, started with the server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.config import Settings
from services.db import Database
from services.errors import InvalidInput
from services.metrics import REGISTRY
from services.monitoring.exporter import Exporter
from services.monitoring.history import GenerationCounter, ProbeStore
from services.monitoring.probe import Prober, RoundReport
from services.monitoring.prometheus import PanelRunner, PrometheusSource, load_panels

logger = logging.getLogger(__name__)


@dataclass
class Monitoring:
    """The prober, its history, the exporter it publishes through and the Prometheus panels."""

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


def start_monitoring(settings: Settings, db: Database, exporter: Exporter) -> Monitoring:
    """Start the prober (its first round at once) writing to the probe history, and load the panels.

    A broken panels file is logged with its line and turns the panels off; the rest keeps working.
    """
    store = ProbeStore(db, retention_s=settings.probe_retention_days * 86400)
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
    return Monitoring(settings, prober, store, exporter, panels, panels_error)
