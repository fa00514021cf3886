"""Reading a reply as it streams: one collector for every reader, a reader thread, and coalesced page updates.

``StreamCollector`` is the one place where Ollama's lines become a reply: text and thinking, the first
token's time, the chunk count, the final line's counters, a stream that ended without its final line, and
the ``ai_*`` metrics, recorded exactly once whatever the outcome. The chat page, the product studio and
the compare stage all read streams through it.

``StreamPump`` drains the HTTP stream on a daemon thread into a queue, so a page thread never blocks on a
socket. ``stream_updates`` turns a pump into a few page updates a second: it wakes at least every
``heartbeat_s`` (showing "loading model… 12 s" during a cold load, and giving Streamlit a point where a
Stop click can interrupt it), and coalesces tokens into one update per interval instead of one per token
(Streamlit re-sends the whole text on every update, so per-token updates are quadratic). Closing the
update generator aborts the HTTP stream at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from services import metrics
from services.errors import BackendError, StreamFailed, StreamInterrupted
from services.ollama.ndjson import NDJSONStream
from services.ollama.wire import ChatChunk, GenerationStats

_END = object()

Status = str  # "success", "error" or "stopped": the ``status`` label of ai_requests_total


class StreamCollector:
    """One reply as its lines arrive, with every figure measured from ``started`` (the request's instant)."""

    def __init__(self, model: str, *, started: float, record_metrics: bool = True) -> None:
        self.model = model
        self.started = started
        self.first_token_s: float | None = None
        self.last_chunk_s: float | None = None
        self.chunks = 0
        self.content_chars = 0
        self.final: dict[str, Any] = {}
        self.stats: GenerationStats | None = None
        self.status: Status | None = None
        self._record = record_metrics
        # Pieces are joined only when asked: appending to a string that snapshots also hold would copy the
        # whole text on every token.
        self._content: list[str] = []
        self._thinking: list[str] = []

    def feed(self, line: Mapping[str, Any], at: float) -> None:
        """One parsed line, received at ``at`` (same clock as ``started``)."""
        chunk = ChatChunk.from_line(line)
        if chunk.content or chunk.thinking:
            offset = at - self.started
            if self.first_token_s is None:
                self.first_token_s = offset
            self.last_chunk_s = offset
            self.chunks += 1
            self._content.append(chunk.content)
            self._thinking.append(chunk.thinking)
            self.content_chars += len(chunk.content)
        if chunk.done:
            self.final = dict(line)
            self.stats = GenerationStats.from_final(self.final, ttft_s=self.first_token_s,
                                                    wall_s=at - self.started)

    @property
    def done(self) -> bool:
        return bool(self.final)

    @property
    def waiting(self) -> bool:
        return self.first_token_s is None

    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def thinking(self) -> str:
        return "".join(self._thinking)

    def check_complete(self) -> None:
        """The stream has ended: without its final line, what arrived is partial, never a complete answer."""
        if not self.done:
            raise StreamInterrupted("the stream ended without its final line")

    def finish(self, status: Status, now: float) -> None:
        """Count the request once (later calls do nothing), with its outcome and wall time."""
        if self.status is not None:
            return
        self.status = status
        if self._record:
            counted = self.stats if status == "success" else None
            metrics.record_generation(model=self.model, status=status, duration_s=now - self.started,
                                      ttft_s=self.first_token_s,
                                      prompt_tokens=counted.prompt_eval_count if counted else 0,
                                      completion_tokens=counted.eval_count if counted else 0)


def collect(stream: NDJSONStream, model: str, *, clock: Callable[[], float] = time.perf_counter,
            started: float | None = None, record_metrics: bool = True) -> StreamCollector:
    """Read a whole stream on this thread (the studio's workers): the finished collector, or the error.

    An aborted stream (a cancel from another thread) ends as ``stopped`` and returns what arrived.
    """
    collector = StreamCollector(model, started=clock() if started is None else started,
                                record_metrics=record_metrics)
    status: Status = "error"
    try:
        for line in stream:
            collector.feed(line, clock())
        if stream.aborted:
            status = "stopped"
            return collector
        collector.check_complete()
        status = "success"
        return collector
    finally:
        collector.finish(status, clock())


class StreamPump:
    """Reads an ``NDJSONStream`` on a daemon thread; the owner polls ``drain`` and may ``cancel``."""

    def __init__(self, stream: NDJSONStream, *, name: str = "ollama-stream") -> None:
        self._stream = stream
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        iterator = iter(self._stream)
        try:
            for line in iterator:
                self._queue.put(line)
                if self._stream.aborted:
                    break
        except BaseException as exc:  # handed to the owner thread, which re-raises it
            self._queue.put(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            self._queue.put(_END)

    def drain(self, timeout_s: float) -> tuple[list[dict[str, Any]], bool]:
        """Lines that arrived within ``timeout_s`` (waiting for the first), and whether the stream ended."""
        lines: list[dict[str, Any]] = []
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return lines, False
        while True:
            if item is _END:
                return lines, True
            if isinstance(item, BaseException):
                if lines:  # hand over what arrived before the error first, so nothing is lost
                    self._pending_error = item
                    return lines, False
                raise item
            lines.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return lines, False

    def cancel(self) -> None:
        self._stream.abort()

    def join(self, timeout_s: float = 2.0) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


@dataclass
class StreamUpdate:
    """What the page shows at one instant of a reply."""

    content: str = ""
    thinking: str = ""
    elapsed_s: float = 0.0
    first_token_s: float | None = None
    chunks: int = 0
    done: bool = False
    stats: GenerationStats | None = None
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        return self.first_token_s is None

    @property
    def live_tokens_per_s(self) -> float | None:
        """Chunks per second since the first token: a live estimate until the final counters arrive."""
        return live_rate(self.chunks, self.first_token_s, self.elapsed_s)


def live_rate(chunks: int, first_token_s: float | None, end_s: float) -> float | None:
    """Tokens per second between the first chunk and ``end_s`` (one chunk is one token in Ollama's stream), the
    figure shown while a reply streams, before Ollama's own ``eval_count / eval_duration`` arrives."""
    if first_token_s is None or chunks < 2:
        return None
    span = end_s - first_token_s
    return (chunks - 1) / span if span > 0 else None


def _snapshot(collector: StreamCollector, elapsed_s: float) -> StreamUpdate:
    return StreamUpdate(content=collector.content, thinking=collector.thinking, elapsed_s=elapsed_s,
                        first_token_s=collector.first_token_s, chunks=collector.chunks, done=collector.done,
                        stats=collector.stats, final=dict(collector.final))


def stream_updates(
    stream: NDJSONStream,
    *,
    model: str,
    interval_s: float = 0.05,
    interval_per_char_s: float = 2e-6,
    heartbeat_s: float = 0.25,
    clock: Callable[[], float] = time.perf_counter,
    record_metrics: bool = True,
) -> Iterator[StreamUpdate]:
    """Yield coalesced snapshots; the last one has ``done=True`` and the final counters.

    Failures raise ``StreamFailed`` carrying what had arrived. Closing the generator early (a Stop
    click, a rerun) aborts the HTTP stream and counts the request as ``stopped``.
    """
    started = clock()
    collector = StreamCollector(model, started=started, record_metrics=record_metrics)
    pump = StreamPump(stream, name=f"stream-{model}")
    last_emit = started
    status: Status = "stopped"
    try:
        finished = False
        while not finished:
            # Each update re-sends and re-renders the whole text, so the pause between updates grows with it
            # (2 µs a character: 50 ms up to 25,000 characters, 200 ms at 100,000), so total work stays linear
            # on very long replies; bench_chat measured 10 µs losing to a fixed 50 ms on 3,000-token replies.
            pause = max(interval_s, collector.content_chars * interval_per_char_s)
            wait = heartbeat_s if collector.waiting else max(pause - (clock() - last_emit), 0.001)
            try:
                lines, finished = pump.drain(wait)
            except BackendError as exc:
                status = "error"
                raise StreamFailed(exc, _snapshot(collector, clock() - started)) from None
            now = clock()
            was_waiting = collector.waiting
            for line in lines:
                collector.feed(line, now)
            if collector.done:
                status = "success"
                yield _snapshot(collector, now - started)
                return
            if finished:
                status = "error"
                try:
                    collector.check_complete()
                except StreamInterrupted as exc:
                    raise StreamFailed(exc, _snapshot(collector, now - started)) from None
            if collector.waiting or was_waiting or now - last_emit >= pause:
                last_emit = now
                yield _snapshot(collector, now - started)
    finally:
        if status != "success":
            pump.cancel()
        collector.finish(status, clock())
