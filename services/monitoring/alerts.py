"""Firing alerts from Prometheus (``/api/v1/alerts``), for the wall screen, never holding up its refresh.

``monitoring/alerts.yml`` holds the rules; Prometheus evaluates them. ``AlertFeed.current`` returns the
last answer at once and refreshes it on a worker thread when it is older than ``refresh_s`` (waiting at
most ``max_wait_s`` for that refresh), so a hung Prometheus costs the wall one short wait, then nothing.
When Prometheus stops answering, the last known alerts stay listed, marked with when they were read and
why the read fails now: "no alerts" is never shown for "cannot tell".

The answer is bounded (``MAX_BODY_BYTES``, ``MAX_ALERTS``) before it is parsed.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import httpx

MAX_BODY_BYTES = 2_000_000
MAX_ALERTS = 500
SEVERITY_RANK = {"critical": 0, "page": 0, "error": 1, "warning": 2, "info": 3}


@dataclass(frozen=True)
class FiringAlert:
    name: str
    severity: str
    summary: str
    labels: dict[str, str] = field(default_factory=dict)
    active_since: float | None = None


@dataclass(frozen=True)
class AlertsView:
    """What the wall shows: firing alerts (most severe, then oldest first) and whether they are current."""

    alerts: tuple[FiringAlert, ...] = ()
    pending: int = 0
    fetched_at: float = 0.0  # the last good answer (0: never)
    checked_at: float = 0.0  # the last attempt
    error: str = ""  # why the last attempt failed ("" when it answered)

    @property
    def known(self) -> bool:
        return self.fetched_at > 0

    @property
    def stale(self) -> bool:
        return bool(self.error)


def _since(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def parse_alerts(document: Any) -> tuple[tuple[FiringAlert, ...], int]:
    """Firing alerts and the number pending, from the API's JSON; ``ValueError`` when it is not that API.

    >>> doc = {"status": "success", "data": {"alerts": [
    ...     {"labels": {"alertname": "OllamaBackendDown", "severity": "critical", "backend": "gpu"},
    ...      "annotations": {"summary": "Backend gpu is down"}, "state": "firing",
    ...      "activeAt": "2026-01-05T10:00:00Z"},
    ...     {"labels": {"alertname": "OllamaSlowResponses"}, "annotations": {}, "state": "pending"}]}}
    >>> firing, pending = parse_alerts(doc)
    >>> [(a.name, a.severity, a.summary) for a in firing], pending
    ([('OllamaBackendDown', 'critical', 'Backend gpu is down')], 1)
    """
    if not isinstance(document, dict) or document.get("status") != "success":
        raise ValueError("not a successful Prometheus API answer")
    raw = (document.get("data") or {}).get("alerts")
    if not isinstance(raw, list):
        raise ValueError("the answer has no alert list")
    firing, pending = [], 0
    for item in raw[:MAX_ALERTS]:
        if not isinstance(item, dict):
            continue
        if item.get("state") != "firing":
            pending += item.get("state") == "pending"
            continue
        labels = {str(k): str(v)[:200] for k, v in (item.get("labels") or {}).items()}
        annotations = item.get("annotations") or {}
        name = labels.get("alertname", "alert")
        firing.append(FiringAlert(name=name, severity=labels.get("severity", ""),
                                  summary=str(annotations.get("summary") or name)[:200], labels=labels,
                                  active_since=_since(item.get("activeAt"))))
    firing.sort(key=lambda a: (SEVERITY_RANK.get(a.severity, 9), a.active_since or 0.0, a.name))
    return tuple(firing), pending


class AlertFeed:
    """One Prometheus's alerts, read in the background and cached for ``refresh_s``."""

    def __init__(self, url: str, *, timeout_s: float = 3.0, refresh_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.refresh_s = refresh_s
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts")
        self._lock = threading.Lock()
        self._view = AlertsView()
        self._inflight: Future[None] | None = None

    def fetch(self) -> tuple[tuple[FiringAlert, ...], int]:
        """One read of ``/api/v1/alerts``; raises ``ValueError`` with the reason a person should read."""
        try:
            with self._client.stream("GET", f"{self.url}/api/v1/alerts") as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise ValueError(f"Prometheus's alert list is over {MAX_BODY_BYTES // 1_000_000} MB")
                status = response.status_code
        except httpx.TimeoutException:
            raise ValueError(f"Prometheus did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError:
            raise ValueError(f"Prometheus is not reachable at {self.url}") from None
        if status != 200:
            raise ValueError(f"Prometheus answered HTTP {status}")
        try:
            return parse_alerts(json.loads(bytes(body)))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("Prometheus's answer is not JSON") from None

    def _refresh(self) -> None:
        now = time.time()
        try:
            alerts, pending = self.fetch()
        except ValueError as exc:
            with self._lock:
                self._view = replace(self._view, checked_at=now, error=str(exc))
            return
        with self._lock:
            self._view = AlertsView(alerts, pending, fetched_at=now, checked_at=now)

    def current(self, max_wait_s: float = 1.0) -> AlertsView:
        """The latest view; starts a refresh when due and waits for it at most ``max_wait_s``."""
        with self._lock:
            due = time.time() - self._view.checked_at >= self.refresh_s
            if due and (self._inflight is None or self._inflight.done()):
                self._inflight = self._pool.submit(self._refresh)
            inflight = self._inflight
        if due and inflight is not None and max_wait_s > 0:
            with contextlib.suppress(TimeoutError):
                inflight.result(timeout=max_wait_s)
        with self._lock:
            return self._view

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
