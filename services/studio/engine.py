"""One product through one task: the request built from the template, the answer collected and checked, and
bounded retries.

``run_task`` is the one way to run a task on one product, for the single-product form, the compare view
and the batch engine alike: it builds the request (with Ollama's ``format`` JSON schema for the structured
tasks), checks the output, retries a failed check a bounded number of times, and retries transient backend
errors with jittered exponential backoff through a gate shared by every worker of a batch, so a dead or
busy backend sees a trickle of probes, not a retry storm.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.errors import (
    BackendError,
    BackendTimeout,
    Busy,
    Cancelled,
    InBandError,
    InvalidInput,
    OutputRejected,
    ServerError,
    StreamInterrupted,
    Unreachable,
    user_message,
)
from services.ollama.client import OllamaClient
from services.ollama.stream import collect
from services.ollama.wire import GenerationStats
from services.studio.checks import (
    category_candidates,
    check_output,
    classification_schema,
    extraction_schema,
    mapping_schema,
)
from services.studio.tasks import LANGUAGES, MAPPING_TARGETS, MAX_FIELD_CHARS, TASK_FIELDS, TaskParams
from services.studio.templates import Template, render

PHOTO_NOTE = ("A photo of the product is attached: use what it shows (type, colour, material, style) together with "
              "the product data above, and do not contradict either.")


@dataclass(frozen=True)
class TaskRequest:
    messages: list[dict[str, Any]]
    options: dict[str, Any]
    format: dict[str, Any] | None = None
    headers: list[str] | None = None
    source_text: str = ""


def clean_inputs(task: str, inputs: Mapping[str, Any]) -> dict[str, str]:
    """The task's fields as trimmed text; a missing required field is refused before any request."""
    values: dict[str, str] = {}
    for spec in TASK_FIELDS.get(task, ()):
        raw = inputs.get(spec.name)
        text = "" if raw is None else str(raw).strip()
        if len(text) > MAX_FIELD_CHARS:
            raise InvalidInput(f"{spec.label} is {len(text):,} characters long; at most {MAX_FIELD_CHARS:,}.")
        if spec.required and not text:
            raise InvalidInput(f"{spec.label} is empty; it is required for this task.")
        values[spec.name] = text
    return values


def product_block(task: str, values: Mapping[str, str]) -> str:
    lines = [f"- {spec.label}: {values[spec.name]}" for spec in TASK_FIELDS.get(task, ()) if values.get(spec.name)]
    return "\n".join(lines)


def build_request(template: Template, inputs: Mapping[str, Any], params: TaskParams,
                  images: Sequence[str] = ()) -> TaskRequest:
    """The request for one product; ``images`` (raw base64 pictures, checked by ``services.images``) go with the
    prompt, for a vision model."""
    task = template.task
    params.validate()
    if task == "column_mapping":
        headers = [str(h) for h in inputs.get("headers") or []]
        if not headers:
            raise InvalidInput("Column mapping needs the file's header row.")
        values: dict[str, Any] = {"targets": ", ".join(MAPPING_TARGETS), "headers": json.dumps(headers,
                                  ensure_ascii=False), "sample": str(inputs.get("sample", ""))[:MAX_FIELD_CHARS]}
        fmt: dict[str, Any] | None = mapping_schema(headers)
    else:
        values = clean_inputs(task, inputs)
        headers = None
        values.update(language=LANGUAGES[params.language], tone=params.tone, max_sentences=params.max_sentences,
                      max_chars=params.max_chars, product=product_block(task, values))
        fmt = None
        if task == "extraction":
            fmt = extraction_schema()
            values["schema"] = json.dumps(fmt, ensure_ascii=False)
        elif task == "classification":
            fmt = classification_schema()
            values["candidates"] = "\n".join(category_candidates(f"{values['name']} {values.get('description', '')}"))
    messages = []
    system = render(template.system, values).strip()
    if system:
        messages.append({"role": "system", "content": system})
    prompt: dict[str, Any] = {"role": "user", "content": render(template.prompt, values).strip()}
    if images:
        prompt["content"] += "\n\n" + PHOTO_NOTE
        prompt["images"] = list(images)
    messages.append(prompt)
    return TaskRequest(messages=messages, options=template.options(), format=fmt, headers=headers,
                       source_text=str(values.get("text", "")))


# ---- running -----------------------------------------------------------------------------------------

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (Busy, ServerError, Unreachable, BackendTimeout,
                                                      StreamInterrupted, InBandError)


class BackoffGate:
    """A pause shared by every worker of a batch: one transient failure slows them all down together."""

    def __init__(self, base_s: float = 0.5, max_s: float = 8.0, clock: Any = time.monotonic) -> None:
        self.base_s, self.max_s = base_s, max_s
        self._clock = clock
        self._until = 0.0
        self._lock = threading.Lock()

    def delay_for(self, attempt: int) -> float:
        """Exponential in the attempt number, with full jitter in its upper half."""
        ceiling = min(self.max_s, self.base_s * 2 ** max(attempt - 1, 0))
        return ceiling * random.uniform(0.5, 1.0)

    def trip(self, attempt: int) -> float:
        delay = self.delay_for(attempt)
        with self._lock:
            self._until = max(self._until, self._clock() + delay)
        return delay

    def remaining(self) -> float:
        with self._lock:
            return max(self._until - self._clock(), 0.0)

    def wait(self, cancelled: threading.Event | None = None) -> bool:
        """Sleep out the pause; False when cancelled meanwhile."""
        while (left := self.remaining()) > 0:
            if cancelled is not None:
                if cancelled.wait(min(left, 0.25)):
                    return False
            else:
                time.sleep(min(left, 0.25))
        return not (cancelled is not None and cancelled.is_set())


@dataclass
class TaskResult:
    """One product's outcome; ``ok`` False means ``error`` says why, and ``output`` is not to be trusted."""

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

    @property
    def tokens_per_second(self) -> float | None:
        return self.stats.get("tokens_per_second")


def generate_once(client: OllamaClient, model: str, request: TaskRequest, *,
                  register: Any = None) -> tuple[str, GenerationStats]:
    """One streamed chat request collected into text; ``register(stream)`` lets a canceller abort it."""
    stream = client.chat(model, request.messages, options=request.options, format=request.format)
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


def run_task(
    client: OllamaClient,
    template: Template,
    model: str,
    inputs: Mapping[str, Any],
    params: TaskParams,
    *,
    gate: BackoffGate | None = None,
    cancelled: threading.Event | None = None,
    register: Any = None,
    max_transport_attempts: int = 4,
    images: Sequence[str] = (),
) -> TaskResult:
    """Run one product through a task with bounded retries; never raises for a backend or model failure.

    ``images`` are raw base64 pictures sent with the prompt (a product photo, for a vision model).
    """
    result = TaskResult(task=template.task, template_ref=template.ref, model=model, ok=False)
    started = time.perf_counter()
    gate = gate or BackoffGate()
    try:
        request = build_request(template, inputs, params, images)
    except InvalidInput as exc:
        result.error = str(exc)
        return result
    check_failures = 0
    transport_failures = 0
    while True:
        if not gate.wait(cancelled):
            result.cancelled, result.error = True, "cancelled"
            break
        result.attempts += 1
        try:
            raw, stats = generate_once(client, model, request, register=register)
        except Cancelled:
            result.cancelled, result.error = True, "cancelled"
            break
        except TRANSIENT_ERRORS as exc:
            if cancelled is not None and cancelled.is_set():
                result.cancelled, result.error = True, "cancelled"
                break
            transport_failures += 1
            result.error = user_message(exc)
            if transport_failures >= max_transport_attempts:
                result.error = f"gave up after {transport_failures} attempts: {result.error}"
                break
            gate.trip(transport_failures)
            continue
        except BackendError as exc:
            result.error = user_message(exc)
            break
        except InvalidInput as exc:
            result.error = str(exc)
            break
        result.raw = raw
        result.stats = stats.as_dict()
        try:
            result.output, result.parsed = check_output(template.task, raw, params, headers=request.headers,
                                                        source_text=request.source_text)
        except OutputRejected as exc:
            check_failures += 1
            result.error = f"check failed: {exc}"
            if check_failures >= template.max_attempts:
                result.error = f"check failed {check_failures} times; last: {exc}"
                break
            continue
        result.ok, result.error = True, ""
        break
    result.duration_s = time.perf_counter() - started
    return result


