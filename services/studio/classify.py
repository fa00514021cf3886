"""Classification that scales to a whole taxonomy: chosen level by level, or from a shortlist, each request's
``format`` an enum of real categories, so the answer is always a category of the chosen taxonomy.

Level by level: the first request offers the top levels (21 for Google) and "Not enough information"; each
next one offers the categories one and two levels below the current one (at most ``max_options``; one level
when two would be more), and "None of these" to stop where it is. Choosing a category whose own
sub-categories were on offer ends the walk there; choosing one whose sub-categories were not shown goes down
to them. On Google's taxonomy (depth up to 7, at most 248 options two levels below a top level) that is at
most 4 requests per product, checked over all 5,595 categories by a test. The prompt lists only the
options of the step, so its size is bounded by ``max_options`` whatever the taxonomy's size; the options
come before the product, so consecutive products at the same level share a cacheable prompt prefix.

Shortlist: a lexical pre-selection (``taxonomy_search``, BM25) of ``SHORTLIST_SIZE`` paths, then one enum
over them plus "None of these"; the "shortlist" route then goes on level by level below the chosen
category, or from the top when none fits ("shortlist_only" stops there).

The default is "shortlist" (then level by level), measured by ``bench/bench_taxonomy.py`` on the 266-product
evaluation set against the stand-in: about as accurate as level by level or better (77 % exact against 74 %),
with 1.5 requests and about 650 prompt tokens per product instead of 2.4 and 1,240. English products find their
category in the shortlist 94 % of the time, French ones 49 % (the lexicon is small): for those the model's
"None of these" sends the product level by level, where it reads French against English names itself. Even
when the model says "None of these" only 1 time in 5 (instead of 3), the default stays as accurate as level by
level (73 %) at half its requests. Run the benchmark against a real Ollama (``OLLAMA_HOST``) to check a model.

A product whose text has no word beyond codes is "not enough information" before any request, and the model
can say so itself at the top level: it never lands on a made-up leaf.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from services.errors import InvalidInput
from services.ollama.wire import GenerationStats
from services.studio.attempts import Asking, TaskRequest, TaskResult, ask
from services.studio.repair import repair_category
from services.studio.tasks import TASK_FIELDS, TaskParams, clean_inputs
from services.studio.taxonomy import SEPARATOR, Taxonomy, depth
from services.studio.taxonomy_search import informative, shortlist
from services.studio.templates import Template, render

DEFAULT_ROUTE = "shortlist"  # measured in bench/bench_taxonomy.py: see the module's docstring
NOT_ENOUGH = "Not enough information"
NONE_FITS = "None of these"
SHORTLIST_SIZE = 30
LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian"}


@dataclass(frozen=True)
class LevelPlan:
    """How many levels a step offers (the first, then every next), at most how many options, how many requests."""

    first_levels: int = 1
    then_levels: int = 2
    max_options: int = 250
    max_requests: int = 4


DEFAULT_PLAN = LevelPlan()


@dataclass(frozen=True)
class Step:
    """One request of a walk: where it started, how many options it offered, what was chosen, where it landed."""

    at: str
    offered: int
    chose: str
    landed: str
    trimmed: bool = False  # more children than ``max_options``: the lexically closest were offered


@dataclass
class Walk:
    """A product's classification so far."""

    text: str
    product: str
    steps: list[Step] = field(default_factory=list)


def uses_options(template: Template) -> bool:
    """Whether the template is for the constrained routes (``{{options}}``) rather than the single request."""
    return "options" in template.placeholders()


def describe(taxonomy: Taxonomy, path: str | None, *, route: str, steps: list[Step] | None = None,
             status: str = "classified", note: str = "") -> dict[str, Any]:
    """What a result carries besides its path: the id, the depth reached, the taxonomy, the label shown."""
    return {
        "category": path, "id": taxonomy.id_of(path) if path else "", "depth": depth(path) if path else 0,
        "leaf": bool(path) and taxonomy.is_leaf(path or ""), "taxonomy": taxonomy.ref,
        "taxonomy_title": taxonomy.title, "route": route, "status": status, "note": note,
        "label": taxonomy.translated(path) if path else "", "label_language": taxonomy.label_language,
        "steps": [asdict(s) for s in steps or []],
    }


def language_note(taxonomy: Taxonomy) -> str:
    name = LANGUAGE_NAMES.get(taxonomy.language.split("-")[0], taxonomy.language)
    example = " (« bouilloire » is a kettle, « robe » a dress)" if taxonomy.language.startswith("en") else ""
    return (f"The category names are in {name}. The product may be described in French, English or another "
            f"language: read it in its own language and choose the category that means the same thing{example}.")


def window(taxonomy: Taxonomy, node: str, levels: int, max_options: int, text: str) -> tuple[list[str], bool]:
    """The categories a step offers below ``node``: two levels when they fit in ``max_options``, else one
    (the lexically closest ``max_options`` when even one level is more). Tree order: each child, then its own."""
    children = list(taxonomy.children(node))
    if levels >= 2:
        grand = [g for c in children for g in taxonomy.children(c)]
        if grand and len(children) + len(grand) <= max_options:
            return [p for c in children for p in (c, *taxonomy.children(c))], False
    if len(children) <= max_options:
        return children, False
    chosen = set(shortlist(taxonomy, text, max_options, within=tuple(children)))
    for child in children:  # filled up in the file's order when too few share a word with the product
        if len(chosen) >= max_options:
            break
        chosen.add(child)
    return [c for c in children if c in chosen], True


def _relative(node: str, path: str) -> str:
    return path[len(node) + len(SEPARATOR):] if node else path


def step_request(template: Template, taxonomy: Taxonomy, walk: Walk, node: str, options: list[str],
                 sentinel: str, stop_note: str) -> TaskRequest:
    """One step's messages and its ``format``: the options listed are exactly the enum."""
    choices = [*(_relative(node, p) for p in options), sentinel]
    values = {"product": walk.product, "options": "\n".join(f"- {c}" for c in choices),
              "current": f"«{node}»" if node else "the top level", "taxonomy": taxonomy.title or taxonomy.ref,
              "stop_note": stop_note, "language_note": language_note(taxonomy), "candidates": ""}
    messages = []
    system = render(template.system, values).strip()
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": render(template.prompt, values).strip()})
    fmt = {"type": "object", "properties": {"category": {"type": "string", "enum": choices}},
           "required": ["category"], "additionalProperties": False}
    return TaskRequest(messages=messages, options=template.options(), format=fmt, source_text=walk.text)


def _accept_for(node: str, options: list[str], sentinel: str) -> Any:
    """The answer as a full path (or the sentinel): exactly an option, else repaired against the step's options
    (full paths, so "Kitchen Appliances" or the whole path both resolve), else refused with the closest."""
    by_relative = {_relative(node, p): p for p in options}
    by_relative[sentinel] = sentinel
    offered = Taxonomy((*options, sentinel), name="options")

    def accept(raw: str, _stats: GenerationStats, _sent: TaskRequest) -> tuple[str, Any, tuple[str, ...]]:
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if isinstance(value, dict) and value.get("category") in by_relative:
            return by_relative[value["category"]], None, ()
        fixed = repair_category(raw, offered)
        return json.loads(fixed.text)["category"], None, fixed.changes

    return accept


def _choose(asking: Asking, template: Template, taxonomy: Taxonomy, walk: Walk, result: TaskResult, node: str,
            options: list[str], sentinel: str, stop_note: str, trimmed: bool = False) -> str | None:
    request = step_request(template, taxonomy, walk, node, options, sentinel, stop_note)
    where = node or "top level"
    accepted = ask(asking, request, _accept_for(node, options, sentinel), result,
                   step=f"{where} · {len(options)} options")
    if accepted is None:
        return None
    chosen, _parsed, changes = accepted
    result.repairs += [f"{where}: {c}" for c in changes]
    walk.steps.append(Step(node, len(options), _relative(node, chosen) if chosen in options else chosen,
                           chosen if chosen in options else node, trimmed))
    return chosen


def walk_levels(asking: Asking, template: Template, taxonomy: Taxonomy, walk: Walk, result: TaskResult, *,
                start: str = "", plan: LevelPlan = DEFAULT_PLAN) -> tuple[str | None, str]:
    """From ``start`` down: (the category reached, its status); (None, why) when nothing was reached."""
    node = start
    while True:
        levels = plan.first_levels if not node else plan.then_levels
        options, trimmed = window(taxonomy, node, levels, plan.max_options, walk.text)
        if not options:
            return node, "classified"
        if int(result.stats.get("requests", 0)) >= plan.max_requests:
            if node:
                return node, f"stopped at depth {depth(node)}: {plan.max_requests} requests per product at most"
            return None, f"no request left of the {plan.max_requests} per product"
        if node:
            stop_note = (f'If none of the options fits this product better than «{node.split(SEPARATOR)[-1]}» '
                         f'itself, choose "{NONE_FITS}".')
        else:
            stop_note = (f'If the product text does not say what the product is (only a code or a reference), '
                         f'choose "{NOT_ENOUGH}".')
        sentinel = NONE_FITS if node else NOT_ENOUGH
        chosen = _choose(asking, template, taxonomy, walk, result, node, options, sentinel, stop_note, trimmed)
        if chosen is None:
            return (node or None), (result.error or "no answer")
        if chosen == NOT_ENOUGH:
            return None, "not enough information"
        if chosen == NONE_FITS:
            return node, "classified"
        deepest = max(depth(p) for p in options)
        if depth(chosen) < deepest or taxonomy.is_leaf(chosen):
            return chosen, "classified"  # its sub-categories were on offer: the model chose it over them
        node = chosen


def classify(asking: Asking, template: Template, inputs: Mapping[str, Any], params: TaskParams, taxonomy: Taxonomy,
             result: TaskResult, *, plan: LevelPlan = DEFAULT_PLAN) -> None:
    """Fill ``result``: ``ok`` with the category's path as output and ``describe(...)`` as parsed, or why not."""
    route = params.route or DEFAULT_ROUTE
    try:
        values = _values(inputs)
        if route == "single":
            raise InvalidInput("The single-request route needs a template with {{candidates}} (classification@v2).")
    except InvalidInput as exc:
        result.error = str(exc)
        return
    text = " ".join(values.values())
    walk = Walk(text, "\n".join(f"- {s.label}: {values[s.name]}" for s in TASK_FIELDS["classification"]
                                if values.get(s.name)))
    if not informative(text):
        result.error = "not enough information: the product's text is only codes or references"
        result.parsed = describe(taxonomy, None, route=route, status="not enough information",
                                 note="no request sent")
        return
    path: str | None
    status = ""
    if route in ("shortlist", "shortlist_only"):
        path, status = _shortlist_route(asking, template, taxonomy, walk, result, route, plan)
    else:
        path, status = walk_levels(asking, template, taxonomy, walk, result, plan=plan)
    if result.cancelled:
        return
    if path is None:
        result.error = status if status != "not enough information" else \
            "not enough information: the model found nothing in the text to classify by"
        result.parsed = describe(taxonomy, None, route=route, steps=walk.steps, status=status)
        return
    note = "" if status == "classified" else status
    result.ok, result.output, result.error = True, path, ""
    result.parsed = describe(taxonomy, path, route=route, steps=walk.steps, status="classified", note=note)


def _values(inputs: Mapping[str, Any]) -> dict[str, str]:
    return clean_inputs("classification", inputs)


def _shortlist_route(asking: Asking, template: Template, taxonomy: Taxonomy, walk: Walk, result: TaskResult,
                     route: str, plan: LevelPlan) -> tuple[str | None, str]:
    picks = shortlist(taxonomy, walk.text, SHORTLIST_SIZE)
    if picks:
        note = f'If none of these categories fits the product, choose "{NONE_FITS}".'
        chosen = _choose(asking, template, taxonomy, walk, result, "", picks, NONE_FITS, note)
        if chosen is None:
            return None, result.error or "no answer"
        if chosen != NONE_FITS:
            if route == "shortlist_only" or taxonomy.is_leaf(chosen):
                return chosen, "classified"
            return walk_levels(asking, template, taxonomy, walk, result, start=chosen, plan=plan)
    if route == "shortlist_only":
        return None, "no category of the shortlist fits" if picks else "no category shares a word with the product"
    return walk_levels(asking, template, taxonomy, walk, result, plan=plan)
