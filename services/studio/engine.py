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
from typing import Any

from services.errors import InvalidInput, OutputRejected
from services.ollama.client import OllamaClient
from services.ollama.wire import GenerationStats
from services.studio.attempts import (
    PHOTO_NOTE,
    STATUS_LABELS,
    Asking,
    Attempt,
    TaskRequest,
    TaskResult,
    ask,
    generate_once,
    was_truncated,
    with_feedback,
    with_images,
)
from services.studio.backoff import BackoffGate
from services.studio.checks import (
    category_candidates,
    check_output,
    classification_schema,
    default_taxonomy,
    extraction_schema,
    mapping_schema,
)
from services.studio.classify import classify, describe, uses_options
from services.studio.repair import Repair, repair_answer
from services.studio.tasks import LANGUAGES, MAPPING_TARGETS, MAX_FIELD_CHARS, TaskParams, clean_inputs, product_block
from services.studio.taxonomy import Taxonomy
from services.studio.templates import Example, Template, render

CHARS_PER_TOKEN = 3.0  # a cautious figure for French and English with small models' tokenizers
MAX_FEW_SHOT = 2
# Re-exported: pages, the batch runner and tests import these from here.
__all__ = ["PHOTO_NOTE", "STATUS_LABELS", "Attempt", "BackoffGate", "TaskRequest", "TaskResult", "build_request",
           "clean_inputs", "generate_once", "product_block", "run_task", "was_truncated", "with_feedback"]


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
    messages.append({"role": "user", "content": render(template.prompt, values).strip()})
    options = template.options(derive_num_predict(template, params, values))
    request = TaskRequest(messages=messages, options=options, format=fmt, headers=headers,
                          source_text=str(values.get("text", "")), shortlist=shortlist)
    return with_images(request, images)


# ---- running -----------------------------------------------------------------------------------------


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
    over several backends gives the product to another one.

    A classification whose template lists ``{{options}}`` goes through ``services.studio.classify`` (level by
    level, or a shortlist): several requests, each constrained to real categories."""
    result = TaskResult(task=template.task, template_ref=template.ref, model=model, ok=False)
    started = time.perf_counter()
    asking = Asking(client, model, template.max_attempts, gate or BackoffGate(), cancelled, register,
                    max_transport_attempts, feedback, on_attempt, tuple(images), hand_back)
    taxonomy = taxonomy or default_taxonomy()
    if template.task == "classification" and uses_options(template):
        classify(asking, template, inputs, params, taxonomy, result)
        result.duration_s = time.perf_counter() - started
        return result
    try:
        request = build_request(template, inputs, params, taxonomy=taxonomy, images=images)
    except InvalidInput as exc:
        result.error = str(exc)
        return result

    def accept(raw: str, stats: GenerationStats, sent: TaskRequest) -> tuple[str, Any, tuple[str, ...]]:
        fixed = repair_answer(template.task, raw, params, taxonomy=taxonomy, headers=request.headers,
                              truncated=was_truncated(stats, sent), shortlist=request.shortlist) if repair \
            else Repair(raw)
        output, parsed = check_output(template.task, fixed.text, params, headers=request.headers,
                                      source_text=request.source_text, taxonomy=taxonomy)
        return output, parsed, fixed.changes

    accepted = ask(asking, request, accept, result)
    if accepted is not None:
        result.output, result.parsed, changes = accepted
        if template.task == "classification":
            result.parsed = describe(taxonomy, result.output, route="single")
        result.ok, result.repairs = True, list(changes)
    result.duration_s = time.perf_counter() - started
    return result
