"""Run one prompt on 2 to 4 models at once, each column streaming on its own, measured fairly.

A ``ComparisonRun`` prepares every column in parallel (model name check, digest and Ollama version of
its backend, and with ``warm_up`` a preload through ``client.load`` so no cold load is timed), then
opens every stream at the same instant, one ``StreamPump`` per column. One loop (``frames``) polls all
pumps without blocking on any of them, so a slow, stalled or failing column never delays the others,
and yields a snapshot of every column at a bounded rate for the page to redraw. Arrival times are
stamped on the reader threads, so time to first token and the live tokens/s do not depend on how often
the page polls. Closing ``frames`` (a Stop click, a rerun) aborts every stream at once.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from services.config import Backend
from services.errors import DashboardError, ModelNotFound, user_message
from services.ollama.client import OllamaClient
from services.ollama.ndjson import NDJSONStream
from services.ollama.stream import StreamCollector, StreamPump
from services.ollama.wire import InstalledModel
from services.stage.lineup import (
    DEMO_KEEP_ALIVE,
    METADATA_WAIT_S,
    TERMINAL,
    ColumnSnapshot,
    Contestant,
    RoundSpec,
    validate_lineup,
    validate_round,
)

log = logging.getLogger(__name__)


class _StampedStream:
    """Wraps an ``NDJSONStream`` so each line carries the instant the reader thread received it."""

    def __init__(self, stream: NDJSONStream, clock: Callable[[], float]) -> None:
        self._stream = stream
        self._clock = clock

    @property
    def aborted(self) -> bool:
        return self._stream.aborted

    def abort(self) -> None:
        self._stream.abort()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for line in self._stream:
            yield {"line": line, "at": self._clock()}


@dataclass
class _Prepared:
    digest: str = ""
    ollama_version: str = ""
    warmup_s: float | None = None


class _Column:
    """Mutable state of one column; touched only by the thread running ``frames``."""

    def __init__(self, contestant: Contestant) -> None:
        self.contestant = contestant
        self.snapshot = ColumnSnapshot(slot=contestant.slot, model=contestant.model,
                                       backend=contestant.backend.name, backend_kind=contestant.backend.kind)
        self.prepare: Future[_Prepared] | None = None
        self.pump: StreamPump | None = None
        self.collector: StreamCollector | None = None
        self.started_at = 0.0
        self.metadata_done = False

    def update(self, **changes: Any) -> None:
        self.snapshot = replace(self.snapshot, **changes)


ClientFor = Callable[[Backend], OllamaClient]


class ComparisonRun:
    """One round: the same ``RoundSpec`` sent to every contestant; iterate ``frames()`` to drive it."""

    def __init__(
        self,
        spec: RoundSpec,
        contestants: Sequence[Contestant],
        client_for: ClientFor,
        *,
        clock: Callable[[], float] = time.perf_counter,
        record_metrics: bool = True,
    ) -> None:
        validate_lineup(contestants)
        self.spec = validate_round(spec)
        self._client_for = client_for
        self._clock = clock
        self._record_metrics = record_metrics
        self._columns = [_Column(c) for c in contestants]
        self._executor = ThreadPoolExecutor(max_workers=2 * len(contestants), thread_name_prefix="compare-prep")
        self._backend_info: dict[str, Future[tuple[str, dict[str, InstalledModel] | None]]] = {}
        self._lock = threading.Lock()
        # poll() and stop() may run on two threads: a Stop click starts the next script run at once,
        # while the interrupted one is still unwinding.
        self._state_lock = threading.RLock()
        self._stopped = False
        self._streams_started = False
        self.started_at_utc = ""
        self.t0 = 0.0

    # ---- preparation (worker threads) ----------------------------------------------------------
    def _describe_backend(self, backend: Backend) -> tuple[str, dict[str, InstalledModel] | None]:
        """Ollama version and installed models of one backend; what cannot be read stays unknown."""
        client = self._client_for(backend)
        version = ""
        try:
            version = client.version()
        except DashboardError as exc:
            log.info("compare: no version from %s: %s", backend.name, exc)
        try:
            installed: dict[str, InstalledModel] | None = {m.name: m for m in client.tags()}
        except DashboardError as exc:
            log.info("compare: no model list from %s: %s", backend.name, exc)
            installed = None
        return version, installed

    def _info_for(self, backend: Backend) -> Future[tuple[str, dict[str, InstalledModel] | None]]:
        with self._lock:
            future = self._backend_info.get(backend.name)
            if future is None:
                future = self._executor.submit(contextvars.copy_context().run, self._describe_backend, backend)
                self._backend_info[backend.name] = future
            return future

    def _prepare(self, column: _Column) -> _Prepared:
        """With warm-up: check the model is installed (a missing one is never loaded), then load it."""
        contestant = column.contestant
        version, installed = self._info_for(contestant.backend).result()
        prepared = _Prepared(ollama_version=version)
        if installed is not None:
            model = _find_installed(installed, contestant.model)
            if model is None:
                raise ModelNotFound(f"{contestant.model} is not installed on backend {contestant.backend.name}",
                                    404, backend_url=contestant.backend.url)
            prepared.digest = model.digest
        if not self._stopped:
            started = self._clock()
            self._client_for(contestant.backend).load(contestant.model, keep_alive=DEMO_KEEP_ALIVE)
            prepared.warmup_s = self._clock() - started
        return prepared

    # ---- the loop (caller's thread) ------------------------------------------------------------
    def start(self) -> None:
        if self.t0:
            return
        self.t0 = self._clock()
        self.started_at_utc = datetime.now(UTC).isoformat(timespec="seconds")
        for column in self._columns:
            if self.spec.warm_up:
                column.prepare = self._executor.submit(contextvars.copy_context().run, self._prepare, column)
                column.update(status="warming")
            else:
                # No round trip before the streams: digest and version are filled in as they arrive.
                self._info_for(column.contestant.backend)
                column.update(status="ready")

    def _collect_preparations(self) -> None:
        for column in self._columns:
            future = column.prepare
            if future is None or not future.done() or column.snapshot.status not in ("pending", "warming"):
                continue
            try:
                prepared = future.result()
            except DashboardError as exc:
                column.update(status="error", error=self._explain(column, exc), elapsed_s=self._clock() - self.t0)
                self._record(column, "error")
                continue
            except Exception:
                log.exception("compare: preparing %s failed", column.contestant.model)
                column.update(status="error", error=user_message(RuntimeError()))
                self._record(column, "error")
                continue
            column.update(status="ready", digest=prepared.digest,
                          ollama_version=prepared.ollama_version, warmup_s=prepared.warmup_s)
            column.prepare = None

    def _collect_metadata(self) -> None:
        for column in self._columns:
            if column.snapshot.ollama_version or column.snapshot.digest or column.metadata_done:
                continue
            future = self._backend_info.get(column.contestant.backend.name)
            if future is None or not future.done():
                continue
            column.metadata_done = True
            try:
                version, installed = future.result()
            except Exception:
                log.exception("compare: describing %s failed", column.contestant.backend.name)
                continue
            model = _find_installed(installed or {}, column.contestant.model)
            column.update(ollama_version=version, digest=model.digest if model else "")

    def _await_metadata(self, timeout_s: float) -> None:
        """Replies can finish before the version and digest lookups; give those a moment, never longer."""
        deadline = time.monotonic() + timeout_s
        for future in list(self._backend_info.values()):
            with contextlib.suppress(Exception):
                future.result(timeout=max(deadline - time.monotonic(), 0))
        self._collect_metadata()

    def _start_streams(self) -> None:
        """Open every prepared stream at the same instant, once no column is still preparing."""
        if self._streams_started or any(c.snapshot.status in ("pending", "warming") for c in self._columns):
            return
        self._streams_started = True
        request = self.spec.request_options()
        messages = self.spec.messages()
        for column in self._columns:
            if column.snapshot.status != "ready":
                continue
            contestant = column.contestant
            try:
                stream = self._client_for(contestant.backend).chat(
                    contestant.model, messages, options=request, keep_alive=DEMO_KEEP_ALIVE)
            except DashboardError as exc:
                column.update(status="error", error=user_message(exc))
                self._record(column, "error")
                continue
            column.started_at = self._clock()
            column.collector = StreamCollector(contestant.model, started=column.started_at,
                                               record_metrics=self._record_metrics)
            column.pump = StreamPump(_StampedStream(stream, self._clock),  # type: ignore[arg-type]
                                     name=f"compare-{contestant.slot}")
            column.update(status="waiting")

    def _drain(self, column: _Column, now: float) -> None:
        pump, collector = column.pump, column.collector
        if pump is None or collector is None or column.snapshot.terminal:
            return
        try:
            items, finished = pump.drain(0)
        except DashboardError as exc:
            column.update(status="error", error=self._explain(column, exc), **self._figures(column, now))
            self._record(column, "error")
            return
        except Exception:
            log.exception("compare: stream of %s failed", column.contestant.model)
            column.update(status="error", error=user_message(RuntimeError()), **self._figures(column, now))
            self._record(column, "error")
            return
        for item in items:
            collector.feed(item["line"], item["at"])
        changes = self._figures(column, now, text=bool(items))
        if collector.done:
            column.update(status="done", stats=collector.stats, **changes)
            self._record(column, "success")
            return
        if finished:
            column.update(status="error", error="The stream ended without its final line; what arrived is kept.",
                          **changes)
            self._record(column, "error")
            return
        column.update(status="streaming" if not collector.waiting else column.snapshot.status, **changes)

    @staticmethod
    def _figures(column: _Column, now: float, *, text: bool = True) -> dict[str, Any]:
        """The collector's figures for a snapshot (the text only when it changed: joining it costs)."""
        collector = column.collector
        figures: dict[str, Any] = {"elapsed_s": now - (column.started_at or now)}
        if collector is None:
            return figures
        figures.update(first_token_s=collector.first_token_s, last_chunk_s=collector.last_chunk_s,
                       chunks=collector.chunks)
        if text:
            figures.update(content=collector.content, thinking=collector.thinking)
        return figures

    @staticmethod
    def _explain(column: _Column, exc: DashboardError) -> str:
        if isinstance(exc, ModelNotFound):
            contestant = column.contestant
            return (f"{contestant.model} is not installed on backend {contestant.backend.name}. "
                    "Pull it on the Models page, or compare another model.")
        return user_message(exc)

    def _record(self, column: _Column, status: str) -> None:
        """Count the column's request once, through its collector (one made for a column that never streamed)."""
        now = self._clock()
        if column.collector is None:
            column.collector = StreamCollector(column.contestant.model, started=column.started_at or now,
                                               record_metrics=self._record_metrics)
        column.collector.finish(status, now)

    def poll(self) -> list[ColumnSnapshot]:
        """Advance every column by what has arrived so far, without waiting on any of them."""
        with self._state_lock:
            if self._stopped:
                return self.snapshots()
            self.start()
            self._collect_preparations()
            self._start_streams()
            self._collect_metadata()
            now = self._clock()
            for column in self._columns:
                self._drain(column, now)
            return self.snapshots()

    def snapshots(self) -> list[ColumnSnapshot]:
        return [c.snapshot for c in self._columns]

    @property
    def finished(self) -> bool:
        return all(c.snapshot.terminal for c in self._columns)

    def frames(self, *, interval_s: float = 0.08, tick_s: float = 0.01,
               redraw_chars_per_s: float = 80_000.0) -> Iterator[list[ColumnSnapshot]]:
        """Snapshots of every column, at most one per interval (plus one at each first token and end).

        The interval grows with the text on screen (``interval_s`` plus its length over
        ``redraw_chars_per_s``): every redraw re-sends and re-renders each column's whole text, and a
        browser that falls behind shows the words late. Closing the generator early stops the
        comparison: every open stream is aborted.
        """
        last_emit = self._clock()
        last_marks = [""] * len(self._columns)  # the first frame waits for a first token or the interval
        try:
            while True:
                snaps = self.poll()
                # A first token or an end is shown at once; anything else waits for the next frame.
                marks = [s.status if s.status in TERMINAL or s.status == "streaming" else "" for s in snaps]
                now = self._clock()
                if self.finished:
                    self._await_metadata(METADATA_WAIT_S)
                    yield self.snapshots()
                    return
                on_screen = sum(len(snap.content) + len(snap.thinking) for snap in snaps)
                if marks != last_marks or now - last_emit >= interval_s + on_screen / redraw_chars_per_s:
                    last_emit, last_marks = now, marks
                    yield snaps
                time.sleep(tick_s)
        finally:
            if not self.finished:
                self.stop()
            self._executor.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> list[ColumnSnapshot]:
        """Abort every stream still open; columns that had not finished end as ``stopped``."""
        with self._state_lock:
            self._stopped = True
            now = self._clock()
            for column in self._columns:
                if column.pump is not None:
                    column.pump.cancel()
                if not column.snapshot.terminal:
                    figures = self._figures(column, now)
                    if not column.started_at:
                        figures["elapsed_s"] = now - (self.t0 or now)
                    column.update(status="stopped", **figures)
                    self._record(column, "stopped")
            self._executor.shutdown(wait=False, cancel_futures=True)
            return self.snapshots()

    def close(self) -> None:
        if not self.finished:
            self.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _find_installed(installed: Mapping[str, InstalledModel], name: str) -> InstalledModel | None:
    """Ollama resolves names case-insensitively, with ``:latest`` as the default tag."""
    wanted = name if ":" in name.split("/")[-1] else f"{name}:latest"
    for key, model in installed.items():
        if key.lower() in (wanted.lower(), name.lower()):
            return model
    return None


def run_to_end(run: ComparisonRun, *, timeout_s: float = 120.0) -> list[ColumnSnapshot]:
    """Drive a run without a page (tests, re-runs from a report); stops it if it overruns."""
    deadline = time.monotonic() + timeout_s
    frames = run.frames()
    try:
        for _ in frames:
            if time.monotonic() > deadline:
                return run.stop()
    finally:
        frames.close()
    return run.snapshots()
