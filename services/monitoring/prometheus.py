"""Prometheus panels: the seed's PromQL, read through prometheus-api-client into tidy DataFrames.

The panels live in a TOML file (``monitoring/panels.toml``, or ``DASHBOARD_PANELS_FILE``), checked when
the dashboard starts: a syntax error or a bad field is refused with the file, line and field named.

Every panel runs on its own worker with its own timeout, so one slow or failing query never holds up
the others, and ends in exactly one state:

    data      rows to chart
    no data   the query succeeded and returned nothing
    partial   rows, but Prometheus attached warnings (some data may be missing)
    error     the reason (unreachable, timed out, 422 bad PromQL, 503, status "error", ...)
    stale     the query failed now; the last good rows are shown with their time and the reason

The client is built with an explicit timeout and no urllib3 retries (the library's default retries
3 times with backoff on 5xx, which multiplies every panel's latency while Prometheus is down).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
import time
import tomllib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from services.errors import InvalidInput

logger = logging.getLogger(__name__)

PanelState = Literal["data", "no data", "partial", "error", "stale"]
PANEL_KINDS = ("line", "bar")
PANEL_KEYS = {"id", "title", "query", "unit", "kind", "timeout_s", "legend", "instant", "description"}
FRAME_COLUMNS = ["time", "series", "value"]
MAX_POINTS = 240


@dataclass(frozen=True)
class Panel:
    """One chart: a PromQL query and how to show it."""

    id: str
    title: str
    query: str
    unit: str = ""
    kind: str = "line"
    timeout_s: float = 5.0
    legend: str = ""  # label whose value names a series (default: all labels)
    instant: bool = False  # an instant query (a bar per series) instead of a range
    description: str = ""


def load_panels(path: Path, default_timeout_s: float = 5.0) -> tuple[Panel, ...]:
    """Read and check the panels file; raises ``InvalidInput`` naming the file, line or field at fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"Panels file {path} does not exist (DASHBOARD_PANELS_FILE).") from None
    except OSError as exc:
        raise InvalidInput(f"Panels file {path} cannot be read: {exc.strerror or exc}.") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"Panels file {path} is not valid TOML: {exc}.") from None
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InvalidInput(f"Panels file {path}: [defaults] must be a table.")
    timeout_default = _positive(defaults.get("timeout_s", default_timeout_s), f"{path} [defaults] timeout_s")
    entries = document.get("panels")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput(f"Panels file {path} must contain at least one [[panels]] table.")
    panels: list[Panel] = []
    for index, entry in enumerate(entries, start=1):
        where = f"{path} panel #{index}"
        if not isinstance(entry, dict):
            raise InvalidInput(f"{where} must be a table.")
        unknown = sorted(set(entry) - PANEL_KEYS)
        if unknown:
            allowed = ", ".join(sorted(PANEL_KEYS))
            raise InvalidInput(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {allowed}).")
        panel_id = str(entry.get("id", "")).strip()
        if not re.fullmatch(r"[a-z0-9_]{1,64}", panel_id):
            raise InvalidInput(f"{where}: id must be 1-64 characters of a-z, 0-9 and _ (got {panel_id!r}).")
        if any(p.id == panel_id for p in panels):
            raise InvalidInput(f"{where}: the id {panel_id!r} is used twice.")
        query = entry.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput(f"{where} ({panel_id}): query must be a non-empty PromQL string.")
        kind = str(entry.get("kind", "line"))
        if kind not in PANEL_KINDS:
            raise InvalidInput(f"{where} ({panel_id}): kind must be one of {', '.join(PANEL_KINDS)} (got {kind!r}).")
        instant = entry.get("instant", False)
        if not isinstance(instant, bool):
            raise InvalidInput(f"{where} ({panel_id}): instant must be true or false.")
        panels.append(Panel(
            id=panel_id, title=str(entry.get("title") or panel_id), query=query.strip(),
            unit=str(entry.get("unit", "")), kind=kind,
            timeout_s=_positive(entry.get("timeout_s", timeout_default), f"{where} ({panel_id}) timeout_s"),
            legend=str(entry.get("legend", "")), instant=instant, description=str(entry.get("description", "")),
        ))
    return tuple(panels)


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 120:
        raise InvalidInput(f"{where} must be a number of seconds between 0 and 120 (got {value!r}).")
    return float(value)


@dataclass(frozen=True)
class PanelResult:
    panel: Panel
    state: PanelState
    frame: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FRAME_COLUMNS))
    message: str = ""
    warnings: tuple[str, ...] = ()
    fetched_at: float = 0.0  # when these rows were fetched (for stale: the last good time)
    elapsed_s: float = 0.0


class QueryFailed(Exception):
    """A panel's query did not produce data; the message is what the panel shows."""


def step_for(range_s: float) -> float:
    """A step giving at most ``MAX_POINTS`` points, never under one second.

    >>> step_for(900), step_for(60), step_for(86400)
    (4.0, 1.0, 360.0)
    """
    return float(max(1, int(-(-range_s // MAX_POINTS))))


def _series_name(labels: dict[str, str], legend: str) -> str:
    labels = {k: v for k, v in labels.items() if k != "__name__"}
    if legend and legend in labels:
        return labels[legend]
    if not labels:
        return "value"
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def tidy(result: list[dict[str, Any]], legend: str = "") -> pd.DataFrame:
    """Prometheus ``data.result`` (matrix or vector) to rows of time, series, value plus one column per label."""
    rows: list[dict[str, Any]] = []
    for item in result:
        labels = dict(item.get("metric") or {})
        series = _series_name(labels, legend)
        points = item.get("values") or ([item["value"]] if "value" in item else [])
        for ts, raw in points:
            try:
                value = float(raw)
            except (TypeError, ValueError):
                continue
            rows.append({"time": datetime.fromtimestamp(float(ts), UTC), "series": series, "value": value,
                         **{k: v for k, v in labels.items() if k not in ("__name__", "time", "series", "value")}})
    if not rows:
        return pd.DataFrame(columns=FRAME_COLUMNS)
    frame = pd.DataFrame(rows)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.sort_values(["series", "time"]).reset_index(drop=True)


class PrometheusSource:
    """One Prometheus server; thread-safe (one client per worker thread)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._local = threading.local()

    def _client(self) -> tuple[PrometheusConnect, dict[str, Any]]:
        client = getattr(self._local, "client", None)
        if client is None:
            session = requests.Session()
            seen: dict[str, Any] = {}

            def remember(response: requests.Response, *args: Any, **kwargs: Any) -> None:
                # The library keeps only data.result; the status and warnings are read here.
                seen.clear()
                seen["status_code"] = response.status_code
                try:
                    seen["body"] = response.json()
                except ValueError:
                    seen["body"] = None

            session.hooks["response"].append(remember)
            client = PrometheusConnect(url=self.url, session=session, retry=Retry(total=0, read=False, redirect=0))
            self._local.client, self._local.seen = client, seen
        return client, self._local.seen

    def query(self, panel: Panel, start: float, end: float) -> tuple[pd.DataFrame, tuple[str, ...]]:
        """Run one panel's query; raises ``QueryFailed`` with the reason a person should read."""
        client, seen = self._client()
        timeout = panel.timeout_s
        params = {"timeout": f"{timeout:g}s"}  # ask Prometheus to give up too
        try:
            if panel.instant:
                result = client.custom_query(panel.query, params={**params, "time": end}, timeout=timeout)
            else:
                result = client.custom_query_range(
                    panel.query, start_time=datetime.fromtimestamp(start, UTC),
                    end_time=datetime.fromtimestamp(end, UTC), step=f"{step_for(end - start):g}s",
                    params=params, timeout=timeout)
        except requests.exceptions.Timeout:
            raise QueryFailed(f"Prometheus did not answer within {timeout:g} s.") from None
        except requests.exceptions.ConnectionError:
            raise QueryFailed(f"Prometheus is not reachable at {self.url}.") from None
        except requests.exceptions.RequestException as exc:
            raise QueryFailed(f"request to Prometheus failed: {type(exc).__name__}.") from None
        except PrometheusApiClientException:
            raise QueryFailed(_error_message(seen)) from None
        except (KeyError, TypeError, ValueError):
            raise QueryFailed(_error_message(seen)) from None
        body = seen.get("body") if isinstance(seen.get("body"), dict) else {}
        if body.get("status") == "error":
            raise QueryFailed(_error_message(seen))
        warnings = tuple(str(w) for w in (body.get("warnings") or []) + (body.get("infos") or []))
        if not isinstance(result, list):
            raise QueryFailed("Prometheus answered with an unexpected result.")
        return tidy(result, panel.legend), warnings


def _error_message(seen: dict[str, Any]) -> str:
    status = seen.get("status_code")
    body = seen.get("body")
    detail = ""
    if isinstance(body, dict):
        detail = str(body.get("error") or "")[:300]
        kind = str(body.get("errorType") or "")
        if kind and detail:
            detail = f"{kind}: {detail}"
    if status == 422:
        return f"Prometheus could not run the query (422, check its PromQL in the panels file): {detail}"
    if status == 400:
        return f"Prometheus refused the query (400): {detail}"
    if status == 503:
        return f"Prometheus is unavailable or the query timed out (503){': ' + detail if detail else ''}"
    if status == 200:
        return f"Prometheus answered status \"error\": {detail or 'no reason given'}"
    if status:
        return f"Prometheus answered HTTP {status}{': ' + detail if detail else ''}"
    return "Prometheus answered with something that is not a query result."


class PanelRunner:
    """Runs every panel concurrently, each bounded by its own timeout; remembers last good rows (stale)."""

    def __init__(self, source: PrometheusSource, panels: tuple[Panel, ...], *, cache_s: float = 2.0) -> None:
        self.source = source
        self.panels = panels
        self.cache_s = cache_s
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(len(panels), 8)), thread_name_prefix="panel")
        self._lock = threading.Lock()
        self._last_good: dict[tuple[str, int], PanelResult] = {}
        self._last_result: dict[tuple[str, int], PanelResult] = {}
        self._cache: dict[int, tuple[float, list[PanelResult]]] = {}
        self._inflight: dict[tuple[str, int], tuple[Future[PanelResult], float]] = {}

    def _run_one(self, panel: Panel, start: float, end: float) -> PanelResult:
        began = time.perf_counter()
        try:
            frame, warnings = self.source.query(panel, start, end)
        except QueryFailed as exc:
            return PanelResult(panel, "error", message=str(exc), fetched_at=time.time(),
                               elapsed_s=time.perf_counter() - began)
        elapsed = time.perf_counter() - began
        if frame.empty:
            state: PanelState = "no data"
        else:
            state = "partial" if warnings else "data"
        message = "; ".join(warnings)[:500] if warnings else ""
        return PanelResult(panel, state, frame, message, warnings, time.time(), elapsed)

    def run(self, range_s: float, end: float | None = None, *, max_wait_s: float | None = None) -> list[PanelResult]:
        """Results for every panel over the last ``range_s``; returns within the largest panel timeout.

        With ``max_wait_s`` (the wall screen), a query still running after that long keeps running in the
        background and the panel shows its previous result meanwhile, so a hung Prometheus never holds up
        the refresh of the status tiles.
        """
        key = int(range_s)
        now = time.time()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and end is None and now - cached[0] < self.cache_s:
                return cached[1]
        end = now if end is None else end
        start = end - range_s
        futures: list[tuple[Panel, Future[PanelResult], float]] = []
        with self._lock:
            for panel in self.panels:
                # A query still running from an earlier call (a hung Prometheus) is not started twice.
                inflight = self._inflight.get((panel.id, key))
                if inflight is not None and not inflight[0].done():
                    futures.append((panel, inflight[0], inflight[1]))
                    continue
                future = self._pool.submit(self._run_one, panel, start, end)
                self._inflight[(panel.id, key)] = (future, time.monotonic())
                futures.append((panel, future, time.monotonic()))
        results = []
        called = time.monotonic()
        for panel, future, submitted in futures:
            deadline = submitted + panel.timeout_s + 0.5
            if max_wait_s is not None and called + max_wait_s < deadline:
                try:
                    results.append(self._with_stale(future.result(timeout=max(0.0, called + max_wait_s
                                                                               - time.monotonic())), key))
                    continue
                except TimeoutError:
                    # When it finishes, its result becomes what the next refresh shows.
                    future.add_done_callback(lambda f, k=key: self._absorb(f, k))
                    with self._lock:
                        previous = self._last_result.get((panel.id, key))
                    results.append(previous or PanelResult(
                        panel, "error", message=f"waiting for Prometheus (up to {panel.timeout_s:g} s).",
                        fetched_at=time.time()))
                    continue
                except Exception:
                    pass  # reported below, like any other failure
            try:
                result = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                result = PanelResult(panel, "error", message=f"Prometheus did not answer within {panel.timeout_s:g} s.",
                                     fetched_at=time.time())
            except Exception as exc:
                logger.exception("Panel %s failed unexpectedly", panel.id)
                result = PanelResult(panel, "error", message=f"unexpected failure ({type(exc).__name__}).",
                                     fetched_at=time.time())
            results.append(self._with_stale(result, key))
        with self._lock:
            self._cache[key] = (time.time(), results)
        return results

    def _absorb(self, future: Future[PanelResult], key: int) -> None:
        if not future.cancelled() and future.exception() is None:
            self._with_stale(future.result(), key)

    def _with_stale(self, result: PanelResult, key: int) -> PanelResult:
        slot = (result.panel.id, key)
        with self._lock:
            if result.state in ("data", "partial", "no data"):
                self._last_good[slot] = self._last_result[slot] = result
                return result
            good = self._last_good.get(slot)
        if good is not None and not good.frame.empty:
            result = PanelResult(result.panel, "stale", good.frame, result.message, good.warnings, good.fetched_at,
                                 result.elapsed_s)
        with self._lock:
            self._last_result[slot] = result
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m services.monitoring.prometheus --check [FILE]``: validate a panels file before deploying it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--check", nargs="?", const="monitoring/panels.toml", required=True, metavar="FILE")
    args = parser.parse_args(argv)
    try:
        panels = load_panels(Path(args.check))
    except InvalidInput as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(f"{args.check}: {len(panels)} panels OK ({', '.join(p.id for p in panels)})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
