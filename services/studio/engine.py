"""One product through one task: the request built from the template, the answer collected, repaired and
checked, and bounded retries.

``run_task`` is the one way to run a task on one product, for the single-product form, the compare view
and the batch engine alike. The request carries the template's few-shot examples (those that fit this
run's brief), a ``num_predict`` derived from the length asked, the template's stop sequences and, for the
structured tasks, Ollama's ``format`` JSON schema. Each answer goes through the task's deterministic
repair (``services.studio.repair``), then every check; an answer that still fails is retried with
feedback saying what was wrong ("3 sentences: keep 2"), a bounded number of times, then failed with the
reason. Transient backend errors are retried with jittered exponential backoff through a gate shared by
every worker of a batch, so a dead or busy backend sees a trickle of probes, not a retry storm.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any

from services.errors import (
    BackendError,
    Cancelled,
    InvalidInput,
    OutputRejected,
    StreamFailed,
    user_message,
)
from services.ollama.client import OllamaClient
from services.ollama.stream import StreamUpdate, collect, stream_updates
from services.ollama.wire import GenerationStats
from services.studio.backoff import TRANSIENT_ERRORS, BackoffGate
from services.studio.checks import (
    category_candidates,
    check_output,
    classification_schema,
    default_taxonomy,
    extraction_schema,
    mapping_schema,
)
from services.studio.repair import Repair, repair_answer
from services.studio.tasks import LANGUAGES, MAPPING_TARGETS, MAX_FIELD_CHARS, TASK_FIELDS, TaskParams
from services.studio.taxonomy import Taxonomy
from services.studio.templates import Example, Template, render

CHARS_PER_TOKEN = 3.0  # a cautious figure for French and English with small models' tokenizers
MAX_FEW_SHOT = 2
MAX_ECHOED_ANSWER = 1_500  # the failed answer sent back with the feedback, at most


PHOTO_NOTE = ("A photo of the product is attached: use what it shows (type, colour, material, style) together with "
              "the product data above, and do not contradict either.")


@dataclass(frozen=True)
class TaskRequest:
    messages: list[dict[str, Any]]
    options: dict[str, Any]
    format: dict[str, Any] | None = None
    headers: list[str] | None = None
    source_text: str = ""
    shortlist: tuple[str, ...] = ()  # classification: the candidates the prompt offered


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


def derive_num_predict(template: Template, params: TaskParams, values: Mapping[str, Any]) -> int | None:
    """Tokens to allow: the length asked plus a margin (room for a preamble the repair removes), capped by
    the template's own ``num_predict`` when it sets one. Descriptions from the character limit,
    translations from the original's length; other tasks keep the template's figure.

    >>> from services.studio.templates import Template
    >>> derive_num_predict(Template("description", 2, "d", "creative", "", "p"), TaskParams(max_chars=300), {})
    198
    """
    if template.task == "description":
        derived = math.ceil(params.max_chars / CHARS_PER_TOKEN * 1.5) + 48
    elif template.task == "translation":
        derived = math.ceil(len(str(values.get("text", ""))) / CHARS_PER_TOKEN * 1.5) + 64
    else:
        return template.num_predict
    derived = min(max(derived, 32), 8192)
    return min(derived, template.num_predict) if template.num_predict else derived


def _prompt_values(task: str, inputs: Mapping[str, Any], params: TaskParams, taxonomy: Taxonomy,
                   *, shortlist_size: int = 25) -> dict[str, Any]:
    values: dict[str, Any] = clean_inputs(task, inputs)
    values.update(language=LANGUAGES[params.language], tone=params.tone, max_sentences=params.max_sentences,
                  max_chars=params.max_chars, product=product_block(task, values))
    if task == "extraction":
        values["schema"] = json.dumps(extraction_schema(), ensure_ascii=False)
    elif task == "classification":
        shortlist = category_candidates(f"{values['name']} {values.get('description', '')}", shortlist_size,
                                        taxonomy)
        values["candidates"] = "\n".join(shortlist)
        values["_shortlist"] = tuple(shortlist)
    return values


def few_shot_turns(template: Template, params: TaskParams, taxonomy: Taxonomy) -> list[dict[str, str]]:
    """User/assistant turns for the template's examples that fit this run: same language, and an answer
    that itself passes every check of this brief (an example never teaches what the checks refuse)."""
    turns: list[dict[str, str]] = []
    used = 0
    for example in template.examples:
        if used >= MAX_FEW_SHOT:
            break
        if example.language and template.task in ("description", "translation") and \
                example.language != params.language:
            continue
        if not _example_fits(template.task, example, params, taxonomy):
            continue
        try:
            values = _prompt_values(template.task, example.inputs, params, taxonomy, shortlist_size=8)
        except InvalidInput:
            continue
        turns.append({"role": "user", "content": render(template.prompt, values).strip()})
        turns.append({"role": "assistant", "content": example.answer.strip()})
        used += 1
    return turns


def _example_fits(task: str, example: Example, params: TaskParams, taxonomy: Taxonomy) -> bool:
    try:
        check_output(task, example.answer, params, taxonomy=taxonomy,
                     source_text=str(example.inputs.get("text", "")))
    except (OutputRejected, InvalidInput):
        return False
    return True


def build_request(template: Template, inputs: Mapping[str, Any], params: TaskParams, *,
                  taxonomy: Taxonomy | None = None, images: Sequence[str] = ()) -> TaskRequest:
    """The request for one product; ``images`` (raw base64 pictures, checked by ``services.images``) go with the
    prompt, for a vision model."""
    task = template.task
    params.validate()
    taxonomy = taxonomy or default_taxonomy()
    shortlist: tuple[str, ...] = ()
    if task == "column_mapping":
        headers = [str(h) for h in inputs.get("headers") or []]
        if not headers:
            raise InvalidInput("Column mapping needs the file's header row.")
        values: dict[str, Any] = {"targets": ", ".join(MAPPING_TARGETS), "headers": json.dumps(headers,
                                  ensure_ascii=False), "sample": str(inputs.get("sample", ""))[:MAX_FIELD_CHARS]}
        fmt: dict[str, Any] | None = mapping_schema(headers)
    else:
        values = _prompt_values(task, inputs, params, taxonomy)
        headers = None
        fmt = None
        if task == "extraction":
            fmt = extraction_schema()
        elif task == "classification":
            fmt = classification_schema(taxonomy)
            shortlist = values.pop("_shortlist")
    messages = []
    system = render(template.system, values).strip()
    if system:
        messages.append({"role": "system", "content": system})
    if task != "column_mapping":
        messages += few_shot_turns(template, params, taxonomy)
    prompt: dict[str, Any] = {"role": "user", "content": render(template.prompt, values).strip()}
    if images:
        prompt["content"] += "\n\n" + PHOTO_NOTE
        prompt["images"] = list(images)
    messages.append(prompt)
    options = template.options(derive_num_predict(template, params, values))
    return TaskRequest(messages=messages, options=options, format=fmt, headers=headers,
                       source_text=str(values.get("text", "")), shortlist=shortlist)


def with_feedback(request: TaskRequest, answer: str, feedback: str) -> TaskRequest:
    """The original request plus the last answer and what was wrong with it (earlier failed turns are not
    kept: the prompt stays bounded, and the model sees one clear correction)."""
    echoed = answer if len(answer) <= MAX_ECHOED_ANSWER else answer[:MAX_ECHOED_ANSWER] + "…"
    return replace(request, messages=[*request.messages, {"role": "assistant", "content": echoed},
                                      {"role": "user", "content": feedback}])


# ---- running -----------------------------------------------------------------------------------------

STATUS_LABELS = {"done": "done", "repaired": "done after repair", "failed": "failed"}


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


@dataclass(frozen=True)
class Attempt:
    """What a live view shows while an answer streams: which attempt, and the reply so far."""

    number: int
    max_attempts: int
    update: StreamUpdate
    feedback: str = ""  # what the previous answer was told (empty on the first attempt)


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
    repair: bool = True,
    feedback: bool = True,
    taxonomy: Taxonomy | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
    images: Sequence[str] = (),
    hand_back: bool = False,
) -> TaskResult:
    """Run one product through a task: generate, repair, check, and retry with feedback a bounded number of
    times; never raises for a backend or model failure. ``repair``/``feedback`` False is the engine without
    those steps (the benchmark's baseline). ``on_attempt`` streams each attempt to a live view. ``images`` are
    raw base64 pictures sent with the prompt (a product photo, for a vision model). ``hand_back`` returns at
    the first transient backend failure (``handed_back``) instead of retrying on the same backend: a batch
    over several backends gives the product to another one."""
    result = TaskResult(task=template.task, template_ref=template.ref, model=model, ok=False)
    started = time.perf_counter()
    gate = gate or BackoffGate()
    taxonomy = taxonomy or default_taxonomy()
    try:
        request = build_request(template, inputs, params, taxonomy=taxonomy, images=images)
    except InvalidInput as exc:
        result.error = str(exc)
        return result
    current = request
    told = ""
    check_failures = 0
    transport_failures = 0
    while True:
        if not gate.wait(cancelled):
            result.cancelled, result.error = True, "cancelled"
            break
        result.attempts += 1
        number, tell = result.attempts, told
        on_update = None if on_attempt is None else (
            lambda update, n=number, t=tell: on_attempt(Attempt(n, template.max_attempts, update, t)))
        try:
            raw, stats = generate_once(client, model, current, register=register, on_update=on_update)
        except Cancelled:
            result.cancelled, result.error = True, "cancelled"
            break
        except TRANSIENT_ERRORS as exc:
            if cancelled is not None and cancelled.is_set():
                result.cancelled, result.error = True, "cancelled"
                break
            transport_failures += 1
            result.error = user_message(exc)
            if hand_back:
                result.handed_back = exc
                break
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
            fixed = repair_answer(template.task, raw, params, taxonomy=taxonomy, headers=request.headers,
                                  truncated=was_truncated(stats, current),
                                  shortlist=request.shortlist) if repair else Repair(raw)
            result.output, result.parsed = check_output(template.task, fixed.text, params, headers=request.headers,
                                                        source_text=request.source_text, taxonomy=taxonomy)
        except OutputRejected as exc:
            check_failures += 1
            result.rejections.append(str(exc))
            result.error = f"check failed: {exc}"
            if check_failures >= template.max_attempts:
                result.error = f"check failed {check_failures} times; last: {exc}"
                break
            if feedback and exc.feedback:
                current, told = with_feedback(request, raw, exc.feedback), exc.feedback
            continue
        result.ok, result.error = True, ""
        result.repairs = list(fixed.changes)
        break
    result.duration_s = time.perf_counter() - started
    return result
