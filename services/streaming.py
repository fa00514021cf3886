"""Turn an Ollama stream into a few UI updates a second, measured honestly.

A reader thread drains the HTTP stream into a queue, so the page thread never blocks on a socket: it
wakes at least every ``heartbeat_s`` (showing "loading model… 12 s" during a cold load, and giving
Streamlit a point where a Stop click can interrupt it), and it coalesces tokens into one update per
``interval_s`` instead of one per token (Streamlit re-sends the whole text on every update, so per-token
updates are quadratic). Closing the update generator aborts the HTTP stream at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from services import metrics
from services.errors import BackendError, DashboardError, StreamInterrupted
from services.ollama import ChatChunk, GenerationStats, NDJSONStream

_END = object()


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
        if self.first_token_s is None or self.chunks < 2:
            return None
        span = self.elapsed_s - self.first_token_s
        return (self.chunks - 1) / span if span > 0 else None


class StreamFailed(DashboardError):
    """A stream failed after some output: carries the partial update so nothing is lost."""

    def __init__(self, cause: BackendError, partial: StreamUpdate) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.partial = partial


def stream_updates(
    stream: NDJSONStream,
    *,
    model: str,
    interval_s: float = 0.05,
    interval_per_char_s: float = 1e-5,
    heartbeat_s: float = 0.25,
    clock: Callable[[], float] = time.perf_counter,
    record_metrics: bool = True,
) -> Iterator[StreamUpdate]:
    """Yield coalesced snapshots; the last one has ``done=True`` and the final counters.

    Failures raise ``StreamFailed`` carrying what had arrived. Closing the generator early (a Stop
    click, a rerun) aborts the HTTP stream and counts the request as ``stopped``.
    """
    started = clock()
    update = StreamUpdate()
    # Pieces are joined only when a snapshot is taken: appending to a string that snapshots also hold
    # would copy the whole text on every token.
    content_parts: list[str] = []
    thinking_parts: list[str] = []
    content_chars = 0
    pump = StreamPump(stream, name=f"stream-{model}")
    last_emit = started
    status = "stopped"

    def snapshot() -> StreamUpdate:
        update.content = "".join(content_parts)
        update.thinking = "".join(thinking_parts)
        return replace(update)

    try:
        finished = False
        while not finished:
            # Each update re-sends and re-renders the whole text, so the pause between updates grows with it
            # (10 µs a character: 50 ms up to 5,000 characters, 200 ms at 20,000): total work stays linear.
            pause = max(interval_s, content_chars * interval_per_char_s)
            wait = heartbeat_s if update.waiting else max(pause - (clock() - last_emit), 0.001)
            try:
                lines, finished = pump.drain(wait)
            except BackendError as exc:
                update.elapsed_s = clock() - started
                status = "error"
                raise StreamFailed(exc, snapshot()) from None
            now = clock()
            was_waiting = update.waiting
            for line in lines:
                chunk = ChatChunk.from_line(line)
                if chunk.content or chunk.thinking:
                    if update.first_token_s is None:
                        update.first_token_s = now - started
                    update.chunks += 1
                    content_parts.append(chunk.content)
                    thinking_parts.append(chunk.thinking)
                    content_chars += len(chunk.content)
                if chunk.done:
                    update.final = dict(line)
            update.elapsed_s = now - started
            if update.final:
                update.done = True
                update.stats = GenerationStats.from_final(
                    update.final, ttft_s=update.first_token_s, wall_s=update.elapsed_s
                )
                status = "success"
                yield snapshot()
                return
            if finished:
                status = "error"
                raise StreamFailed(StreamInterrupted("the stream ended without its final line"), snapshot())
            if update.waiting or was_waiting or now - last_emit >= pause:
                last_emit = now
                yield snapshot()
    finally:
        if status != "success":
            pump.cancel()
        if record_metrics:
            metrics.record_generation(
                model=model,
                status=status,
                duration_s=clock() - started,
                ttft_s=update.first_token_s,
                stats=update.stats,
            )
