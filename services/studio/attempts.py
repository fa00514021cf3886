"""One request to a model, made until its answer is accepted: transport retries through the shared backoff
gate, the answer repaired and checked by the caller's ``accept``, a refused answer retried with feedback, a
bounded number of times. ``run_task`` sends one such request per product; the level-by-level classification
sends one per level, all counted in the same ``TaskResult``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any

from services.errors import BackendError, Cancelled, InvalidInput, OutputRejected, StreamFailed, user_message
from services.ollama.client import OllamaClient
from services.ollama.stream import StreamUpdate, collect, stream_updates
from services.ollama.wire import GenerationStats
from services.studio.backoff import TRANSIENT_ERRORS, BackoffGate

MAX_ECHOED_ANSWER = 1_500  # the failed answer sent back with the feedback, at most
PHOTO_NOTE = ("A photo of the product is attached: use what it shows (type, colour, material, style) together with "
              "the product data above, and do not contradict either.")
STATUS_LABELS = {"done": "done", "repaired": "done after repair", "failed": "failed"}
_SUMMED = ("eval_count", "eval_duration", "prompt_eval_count", "prompt_eval_duration", "load_duration",
           "total_duration")


@dataclass(frozen=True)
class TaskRequest:
    messages: list[dict[str, Any]]
    options: dict[str, Any]
    format: dict[str, Any] | None = None
    headers: list[str] | None = None
    source_text: str = ""
    shortlist: tuple[str, ...] = ()  # classification: the candidates the prompt offered


@dataclass
class TaskResult:
    """One product's outcome; ``ok`` False means ``error`` says why, and ``output`` is not to be trusted.

    ``attempts`` counts every request sent for the product (retries and, for a level-by-level classification,
    every level); ``stats`` adds up their counters (``requests`` says how many answered)."""

    task: str
    template_ref: str
    model: str
    ok: bool
    output: str = ""
    parsed: Any = None
    raw: str = ""
    error: str = ""
    attempts: int = 0
    duration_s: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    repairs: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)  # why each failed attempt was refused, in order
    handed_back: BaseException | None = None  # the backend failure that gave the product back (``hand_back``)

    @property
    def tokens_per_second(self) -> float | None:
        return self.stats.get("tokens_per_second")

    @property
    def status(self) -> str:
        """"done" (used as it came), "repaired" (done after repair) or "failed"."""
        if not self.ok:
            return "failed"
        return "repaired" if self.repairs else "done"

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    def add_stats(self, stats: GenerationStats) -> None:
        """Add one answered request's counters to the product's totals."""
        current = stats.as_dict()
        if not self.stats:
            self.stats = {**current, "requests": 1}
            return
        for key in _SUMMED:
            self.stats[key] = int(self.stats.get(key) or 0) + int(current.get(key) or 0)
        self.stats.update(done_reason=current["done_reason"], requests=int(self.stats.get("requests", 1)) + 1,
                          wall_time_s=(self.stats.get("wall_time_s") or 0) + (current.get("wall_time_s") or 0))
        evals, duration = self.stats["eval_count"], self.stats["eval_duration"]
        self.stats["tokens_per_second"] = evals / duration * 1e9 if evals and duration else None


@dataclass(frozen=True)
class Attempt:
    """What a live view shows while an answer streams: which attempt, and the reply so far."""

    number: int
    max_attempts: int
    update: StreamUpdate
    feedback: str = ""  # what the previous answer was told (empty on the first attempt)
    step: str = ""  # a level-by-level classification: where it is ("Home & Garden > …")


@dataclass
class Asking:
    """What every request made for one product shares: where to send it, how to stop it, how to retry."""

    client: OllamaClient
    model: str
    max_attempts: int = 3
    gate: BackoffGate = field(default_factory=BackoffGate)
    cancelled: threading.Event | None = None
    register: Any = None
    max_transport_attempts: int = 4
    feedback: bool = True
    on_attempt: Callable[[Attempt], None] | None = None
    images: Sequence[str] = ()  # raw base64 pictures (a product photo) sent with every request's prompt
    hand_back: bool = False  # a transient backend failure ends the product at once (another backend takes it)


# (raw answer, its stats, the request) -> (output, parsed, repairs); raises OutputRejected to refuse it.
Accept = Callable[[str, GenerationStats, TaskRequest], tuple[str, Any, tuple[str, ...]]]


def with_feedback(request: TaskRequest, answer: str, feedback: str) -> TaskRequest:
    """The original request plus the last answer and what was wrong with it (earlier failed turns are not
    kept: the prompt stays bounded, and the model sees one clear correction)."""
    echoed = answer if len(answer) <= MAX_ECHOED_ANSWER else answer[:MAX_ECHOED_ANSWER] + "…"
    return replace(request, messages=[*request.messages, {"role": "assistant", "content": echoed},
                                      {"role": "user", "content": feedback}])


def with_images(request: TaskRequest, images: Sequence[str]) -> TaskRequest:
    """The request with ``images`` (checked by ``services.images``) on its last user turn, and a line telling the
    model to use them; unchanged without images or when that turn carries them already."""
    if not images or not request.messages or request.messages[-1].get("images"):
        return request
    *head, last = request.messages
    prompt = {**last, "content": f"{last['content']}\n\n{PHOTO_NOTE}", "images": list(images)}
    return replace(request, messages=[*head, prompt])


def generate_once(client: OllamaClient, model: str, request: TaskRequest, *, register: Any = None,
                  on_update: Callable[[StreamUpdate], None] | None = None) -> tuple[str, GenerationStats]:
    """One streamed chat request collected into text; ``register(stream)`` lets a canceller abort it, and
    ``on_update`` (the single-product page) sees coalesced snapshots as they stream."""
    stream = client.chat(model, request.messages, options=request.options, format=request.format)
    if on_update is not None:
        final: StreamUpdate | None = None
        try:
            with closing(stream_updates(stream, model=model)) as updates:
                for update in updates:
                    on_update(update)
                    final = update
        except StreamFailed as failed:
            raise failed.cause from None
        if final is None or final.stats is None:
            raise Cancelled("cancelled")
        return final.content, final.stats
    if register is not None:
        register(stream)
    try:
        collector = collect(stream, model)
    finally:
        if register is not None:
            register(None)
    if collector.status == "stopped" or collector.stats is None:
        raise Cancelled("cancelled")
    return collector.content, collector.stats


def was_truncated(stats: GenerationStats, request: TaskRequest) -> bool:
    """The answer stopped at the token limit (Ollama says ``length``; a proxy that drops the reason still
    reports as many tokens as were allowed)."""
    limit = request.options.get("num_predict")
    return stats.done_reason == "length" or bool(limit and stats.eval_count >= int(limit))


def ask(asking: Asking, request: TaskRequest, accept: Accept, result: TaskResult, *,
        step: str = "") -> tuple[str, Any, tuple[str, ...]] | None:
    """Send ``request`` until ``accept`` takes an answer: (output, parsed, repairs), or None with
    ``result.error`` (and ``result.cancelled``) saying why. Never raises for a backend or model failure."""
    request = with_images(request, asking.images)
    current, told = request, ""
    check_failures = transport_failures = 0
    while True:
        if not asking.gate.wait(asking.cancelled):
            result.cancelled, result.error = True, "cancelled"
            return None
        result.attempts += 1
        number, tell = result.attempts, told
        on_update = None if asking.on_attempt is None else (
            lambda update, n=number, t=tell: asking.on_attempt(  # type: ignore[misc]
                Attempt(n, asking.max_attempts, update, t, step)))
        try:
            raw, stats = generate_once(asking.client, asking.model, current, register=asking.register,
                                       on_update=on_update)
        except Cancelled:
            result.cancelled, result.error = True, "cancelled"
            return None
        except TRANSIENT_ERRORS as exc:
            if asking.cancelled is not None and asking.cancelled.is_set():
                result.cancelled, result.error = True, "cancelled"
                return None
            transport_failures += 1
            result.error = user_message(exc)
            if asking.hand_back:
                result.handed_back = exc
                return None
            if transport_failures >= asking.max_transport_attempts:
                result.error = f"gave up after {transport_failures} attempts: {result.error}"
                return None
            asking.gate.trip(transport_failures)
            continue
        except BackendError as exc:
            result.error = user_message(exc)
            return None
        except InvalidInput as exc:
            result.error = str(exc)
            return None
        result.raw = raw
        result.add_stats(stats)
        try:
            accepted = accept(raw, stats, current)
        except OutputRejected as exc:
            check_failures += 1
            result.rejections.append(str(exc))
            result.error = f"check failed: {exc}"
            if check_failures >= asking.max_attempts:
                result.error = f"check failed {check_failures} times; last: {exc}"
                return None
            if asking.feedback and exc.feedback:
                current, told = with_feedback(request, raw, exc.feedback), exc.feedback
            continue
        result.error = ""
        return accepted
