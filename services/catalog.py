"""The product studio's tasks: versioned prompt templates, output schemas, and the checks every output passes.

A task (description, extraction, classification, column mapping, translation) is a template file in
``catalog/templates/`` (version 1, shipped) plus any versions staff saved from the page, which land in
``<data dir>/templates/<task>.v<N>.toml`` and never overwrite an older one. Every result carries the
``task@vN`` reference of the template that produced it.

``run_task`` is the one way to run a task on one product, for the single-product form, the compare
view and the batch engine alike: it builds the request (with Ollama's ``format`` JSON schema for the
structured tasks), checks the output (JSON parses and fits the schema, the category exists, the length
limit holds, the language is the one asked), retries a failed check a bounded number of times, and
retries transient backend errors with jittered exponential backoff through a gate shared by every
worker of a batch, so a dead or busy backend sees a trickle of probes, not a retry storm.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from services import metrics
from services.chat import PRESETS, GenerationOptions
from services.errors import (
    BackendError,
    BackendTimeout,
    Busy,
    DashboardError,
    InBandError,
    InvalidInput,
    ServerError,
    StreamInterrupted,
    Unreachable,
    user_message,
)
from services.ollama import ChatChunk, GenerationStats, NDJSONStream, OllamaClient

CATALOG_DIR = Path(__file__).resolve().parents[1] / "catalog"
TEMPLATES_DIR = CATALOG_DIR / "templates"
TAXONOMY_FILE = CATALOG_DIR / "taxonomy.txt"
EXTRACTION_SCHEMA_FILE = CATALOG_DIR / "extraction.schema.json"

TASKS: tuple[str, ...] = ("description", "extraction", "classification", "column_mapping", "translation")
BATCH_TASKS: tuple[str, ...] = ("description", "extraction", "classification", "translation")
TASK_TITLES = {
    "description": "Description",
    "extraction": "Extraction (JSON)",
    "classification": "Classification",
    "column_mapping": "Column mapping",
    "translation": "Translation",
}
LANGUAGES = {"fr": "French", "en": "English"}
TONES = ("elegant", "warm", "professional", "playful", "minimal")
MAX_TEMPLATE_CHARS = 8_000
MAX_FIELD_CHARS = 4_000
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAPPING_TARGETS: tuple[str, ...] = ("name", "price", "ean", "description", "brand", "category", "colour",
                                    "material", "size", "sku")


@dataclass(frozen=True)
class FieldSpec:
    """One product field a task reads."""

    name: str
    label: str
    required: bool = False
    multiline: bool = False


TASK_FIELDS: dict[str, tuple[FieldSpec, ...]] = {
    "description": (
        FieldSpec("product_type", "Product type", required=True),
        FieldSpec("name", "Name"),
        FieldSpec("colour", "Colour"),
        FieldSpec("material", "Material"),
        FieldSpec("occasion", "Occasion"),
        FieldSpec("attributes", "Other attributes", multiline=True),
    ),
    "extraction": (FieldSpec("text", "Product text", required=True, multiline=True),),
    "classification": (
        FieldSpec("name", "Product name", required=True),
        FieldSpec("description", "Description", multiline=True),
    ),
    "translation": (FieldSpec("text", "Description to translate", required=True, multiline=True),),
    "column_mapping": (),
}

# What each task's template may refer to, besides its fields.
TASK_VARIABLES: dict[str, tuple[str, ...]] = {
    "description": ("product", "tone", "language", "max_sentences", "max_chars"),
    "extraction": ("schema",),
    "classification": ("product", "candidates"),
    "translation": ("language",),
    "column_mapping": ("targets", "headers", "sample"),
}

# Column-name hints for matching a file's headers to a task's fields (English and French suppliers).
FIELD_SYNONYMS: dict[str, tuple[str, ...]] = {
    "product_type": ("product_type", "type", "product type", "type de produit", "categorie", "catégorie"),
    "name": ("name", "nom", "title", "titre", "product", "produit", "designation", "désignation", "libelle",
             "libellé", "product name", "nom du produit"),
    "colour": ("colour", "color", "couleur"),
    "material": ("material", "materials", "matiere", "matière", "tissu", "fabric"),
    "occasion": ("occasion", "event", "evenement", "événement"),
    "attributes": ("attributes", "attributs", "details", "détails", "features", "caracteristiques",
                   "caractéristiques"),
    "text": ("text", "texte", "description", "desc", "long description", "description longue"),
    "description": ("description", "desc", "texte", "text"),
}


class OutputRejected(DashboardError):
    """The model answered, but the answer failed a check; ``reason`` says which."""


# ---- templates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One version of one task's prompt, with its parameter preset from the seed's table."""

    task: str
    version: int
    title: str
    preset: str
    system: str
    prompt: str
    num_predict: int | None = None
    max_attempts: int = 3
    source: str = "shipped"
    saved_at: str = ""
    saved_by: str = ""

    @property
    def ref(self) -> str:
        return f"{self.task}@v{self.version}"

    def options(self) -> dict[str, Any]:
        return GenerationOptions.from_preset(self.preset, num_predict=self.num_predict).validate().to_ollama()

    def placeholders(self) -> set[str]:
        return set(PLACEHOLDER_RE.findall(self.system)) | set(PLACEHOLDER_RE.findall(self.prompt))

    def validate(self) -> Template:
        if self.task not in TASKS:
            raise InvalidInput(f"Unknown task {self.task!r}; the tasks are {', '.join(TASKS)}.")
        if self.preset not in PRESETS:
            raise InvalidInput(f"Unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}.")
        if not self.prompt.strip():
            raise InvalidInput("The prompt is empty.")
        for name, text in (("system prompt", self.system), ("prompt", self.prompt)):
            if len(text) > MAX_TEMPLATE_CHARS:
                raise InvalidInput(f"The {name} is {len(text):,} characters; at most {MAX_TEMPLATE_CHARS:,}.")
        allowed = allowed_placeholders(self.task)
        unknown = sorted(self.placeholders() - allowed)
        if unknown:
            raise InvalidInput(
                f"Unknown placeholder(s) {', '.join('{{' + u + '}}' for u in unknown)}; "
                f"this task knows {', '.join('{{' + a + '}}' for a in sorted(allowed))}."
            )
        if not 1 <= self.max_attempts <= 5:
            raise InvalidInput("max_attempts must be between 1 and 5.")
        if self.num_predict is not None and not 16 <= self.num_predict <= 8192:
            raise InvalidInput("num_predict must be between 16 and 8192 tokens.")
        return self

    def to_toml(self) -> str:
        lines = [f"# {self.title}: saved {self.saved_at or 'with the project'} by {self.saved_by or 'the project'}"]
        for key in ("task", "version", "title", "preset", "num_predict", "max_attempts", "saved_at", "saved_by",
                    "system", "prompt"):
            value = getattr(self, key)
            if value is None:
                continue
            # JSON strings are valid TOML basic strings (same escapes), so round-trips are exact.
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text: str, *, source: str) -> Template:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"Template file {source} is not valid TOML: {exc}") from None
        try:
            return cls(
                task=str(data["task"]), version=int(data["version"]), title=str(data.get("title") or data["task"]),
                preset=str(data.get("preset", "enrichment")), system=str(data.get("system", "")).strip(),
                prompt=str(data["prompt"]).strip(),
                num_predict=int(data["num_predict"]) if data.get("num_predict") is not None else None,
                max_attempts=int(data.get("max_attempts", 3)), source=source,
                saved_at=str(data.get("saved_at", "")), saved_by=str(data.get("saved_by", "")),
            ).validate()
        except KeyError as exc:
            raise InvalidInput(f"Template file {source} lacks the key {exc}.") from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Template:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def allowed_placeholders(task: str) -> set[str]:
    return {f.name for f in TASK_FIELDS.get(task, ())} | set(TASK_VARIABLES.get(task, ()))


def render(text: str, values: Mapping[str, Any]) -> str:
    """Fill ``{{name}}`` placeholders; values are inserted as data, never re-interpreted as a template."""
    return PLACEHOLDER_RE.sub(lambda m: str(values.get(m.group(1), "")), text)


class TemplateStore:
    """Shipped templates plus the versions staff saved; a saved version is never overwritten."""

    def __init__(self, data_dir: Path, shipped_dir: Path = TEMPLATES_DIR) -> None:
        self.saved_dir = data_dir / "templates"
        self.shipped_dir = shipped_dir
        self._lock = threading.Lock()

    def versions(self, task: str) -> list[Template]:
        if task not in TASKS:
            raise InvalidInput(f"Unknown task {task!r}.")
        found: dict[int, Template] = {}
        shipped = self.shipped_dir / f"{task}.toml"
        if shipped.exists():
            template = Template.from_toml(shipped.read_text(encoding="utf-8"), source="shipped")
            found[template.version] = template
        if self.saved_dir.exists():
            for path in self.saved_dir.glob(f"{task}.v*.toml"):
                try:
                    template = Template.from_toml(path.read_text(encoding="utf-8"), source="edited")
                except (InvalidInput, OSError, ValueError):
                    continue  # a damaged file must not hide the other versions
                if template.task == task:
                    found[template.version] = template
        if not found:
            raise InvalidInput(f"No template for the task {task!r} (expected {shipped}).")
        return [found[v] for v in sorted(found)]

    def latest(self, task: str) -> Template:
        return self.versions(task)[-1]

    def get(self, task: str, version: int | None = None) -> Template:
        versions = self.versions(task)
        if version is None:
            return versions[-1]
        for template in versions:
            if template.version == version:
                return template
        raise InvalidInput(f"The {task} template has no version {version} (latest is {versions[-1].version}).")

    def save(self, task: str, *, system: str, prompt: str, preset: str, num_predict: int | None,
             max_attempts: int, author: str) -> Template:
        """Write the next version atomically; concurrent saves each get their own number."""
        with self._lock:
            current = self.latest(task)
            template = Template(
                task=task, version=current.version + 1, title=current.title, preset=preset,
                system=system.strip(), prompt=prompt.strip(), num_predict=num_predict,
                max_attempts=max_attempts, source="edited",
                saved_at=datetime.now(UTC).isoformat(timespec="seconds"), saved_by=author,
            ).validate()
            if template.system == current.system and template.prompt == current.prompt and (
                    template.preset, template.num_predict, template.max_attempts) == (
                    current.preset, current.num_predict, current.max_attempts):
                raise InvalidInput(f"Nothing changed since {current.ref}; no new version saved.")
            self.saved_dir.mkdir(parents=True, exist_ok=True)
            final = self.saved_dir / f"{task}.v{template.version}.toml"
            temp = final.with_suffix(".tmp")
            temp.write_text(template.to_toml(), encoding="utf-8")
            try:
                os.link(temp, final)  # fails if the version exists: never overwrite a saved version
            except FileExistsError:
                raise InvalidInput(f"{template.ref} was saved by someone else meanwhile; reload and retry.") from None
            finally:
                temp.unlink(missing_ok=True)
            return template


# ---- taxonomy and schemas ----------------------------------------------------------------------------


@lru_cache(maxsize=4)
def load_taxonomy(path: Path = TAXONOMY_FILE) -> tuple[str, ...]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=1)
def extraction_schema() -> dict[str, Any]:
    schema = json.loads(EXTRACTION_SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def classification_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {"category": {"type": "string", "enum": list(load_taxonomy())}},
            "required": ["category"], "additionalProperties": False}


def mapping_schema(headers: list[str], targets: tuple[str, ...] = MAPPING_TARGETS) -> dict[str, Any]:
    choice = {"type": ["string", "null"], "enum": [*headers, None]}
    return {"type": "object", "properties": {t: choice for t in targets}, "required": list(targets),
            "additionalProperties": False}


_FR_EN = {
    "robe": "dress", "robes": "dress", "jupe": "skirt", "chaussure": "shoe", "chaussures": "shoe", "sac": "handbag",
    "veste": "jacket", "manteau": "coat", "pantalon": "pants", "chemise": "shirt", "chemisier": "blouse",
    "bijou": "jewelry", "bijoux": "jewelry", "collier": "necklace", "bague": "ring", "boucles": "earring",
    "mariage": "wedding", "mariée": "bridal", "soirée": "formal gown cocktail", "chapeau": "hat",
    "ceinture": "belt", "écharpe": "scarf", "foulard": "scarf", "gants": "glove", "montre": "watch",
    "maillot": "swimsuit", "pyjama": "pajamas", "costume": "suit", "smoking": "tuxedo", "combinaison": "jumpsuit",
    "pull": "sweater", "gilet": "vest cardigan", "bottes": "boot", "escarpins": "pump", "baskets": "sneaker",
    "lunettes": "sunglasses", "pochette": "clutch", "cravate": "tie", "noeud": "bow", "chien": "dog",
    "chat": "cat", "voile": "veil", "diadème": "tiara", "cocktail": "cocktail", "tailleur": "suit",
}


def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("es", "s"):
        if len(word) > 4 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def category_candidates(text: str, limit: int = 25) -> list[str]:
    """A shortlist of taxonomy paths sharing words with the product, for the prompt (not a constraint)."""
    words = re.findall(r"[a-zà-ÿ'-]+", text.lower())
    terms = {_stem(w) for w in words}
    for word in words:
        terms |= {_stem(t) for t in _FR_EN.get(word, "").split()}
    terms -= {"and", "the", "with", "for", "de", "la", "le", "et", "en"}
    scored: list[tuple[float, str]] = []
    for path in load_taxonomy():
        parts = path.split(" > ")
        leaf = {_stem(w) for w in re.findall(r"[a-z'-]+", parts[-1].lower())}
        rest = {_stem(w) for p in parts[:-1] for w in re.findall(r"[a-z'-]+", p.lower())}
        score = 2 * len(terms & leaf) + 0.5 * len(terms & rest)
        if score:
            scored.append((score + 0.01 * len(parts), path))
    if not scored:
        return [p for p in load_taxonomy() if p.count(" > ") <= 1][:limit]
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [path for _, path in scored[:limit]]


# ---- output checks -----------------------------------------------------------------------------------

_EN_STOP = frozenset([
    "the", "and", "with", "for", "of", "to", "in", "is", "this", "that", "your", "you", "its", "it", "by",
    "from", "are", "be", "at", "as", "or", "our", "which", "will", "into", "perfect",
])
_FR_STOP = frozenset([
    "le", "la", "les", "et", "avec", "pour", "de", "des", "du", "un", "une", "est", "ce", "cette", "vos",
    "votre", "sa", "son", "ses", "au", "aux", "dans", "sur", "par", "qui", "que", "pas", "très", "idéale",
    "parfaite", "élégante",
])
_SENTENCE_END_RE = re.compile(r"[.!?…]+(?=\s|$)")


def guess_language(text: str) -> str | None:
    """'fr', 'en' or None when it cannot be told cheaply (too short, or mixed).

    >>> guess_language("Une robe de soirée rouge, élégante et fluide, pour vos plus belles soirées.")
    'fr'
    >>> guess_language("A red evening dress with a flowing skirt, perfect for your gala nights.")
    'en'
    >>> guess_language("OK") is None
    True
    """
    words = re.findall(r"[a-zà-ÿœæ]+", text.lower())
    fr = sum(w in _FR_STOP for w in words)
    en = sum(w in _EN_STOP for w in words)
    if fr + en < 3:
        return None
    if fr >= 2 * max(en, 1) or (fr > en and en == 0):
        return "fr"
    if en >= 2 * max(fr, 1) or (en > fr and fr == 0):
        return "en"
    return None


def count_sentences(text: str) -> int:
    """
    >>> count_sentences("Une robe rouge. Parfaite pour le soir!")
    2
    >>> count_sentences("Sans point final")
    1
    """
    pieces = [p for p in _SENTENCE_END_RE.split(text) if p.strip()]
    return len(pieces)


def _clean_text(raw: str) -> str:
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'«“":
        text = text[1:-1].strip()
    if text.startswith("«") and text.endswith("»"):
        text = text[1:-1].strip()
    return text


def _parse_json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        snippet = raw.strip()[:60].replace("\n", " ")
        raise OutputRejected(f"the answer is not JSON ({exc.msg} at character {exc.pos}): {snippet!r}") from None
    if not isinstance(value, dict):
        raise OutputRejected(f"the answer is JSON but not an object ({type(value).__name__})")
    return value


@dataclass(frozen=True)
class TaskParams:
    """Settings of a run that are not product fields."""

    language: str = "fr"
    tone: str = "elegant"
    max_sentences: int = 2
    max_chars: int = 300
    check_language: bool = True

    def validate(self) -> TaskParams:
        if self.language not in LANGUAGES:
            raise InvalidInput(f"Language must be one of {', '.join(LANGUAGES)}, not {self.language!r}.")
        if not 1 <= self.max_sentences <= 20:
            raise InvalidInput("The sentence limit must be between 1 and 20.")
        if not 40 <= self.max_chars <= 5000:
            raise InvalidInput("The character limit must be between 40 and 5,000.")
        if not self.tone.strip() or len(self.tone) > 60:
            raise InvalidInput("Give a tone of at most 60 characters (e.g. elegant).")
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_output(task: str, raw: str, params: TaskParams, *, headers: list[str] | None = None,
                 source_text: str = "") -> tuple[str, Any]:
    """The cleaned value to store and its parsed form, or ``OutputRejected`` with the reason."""
    if task in ("description", "translation"):
        text = _clean_text(raw)
        if not text:
            raise OutputRejected("the answer is empty")
        if "<" in text and re.search(r"<\s*/?\s*[a-zA-Z]", text):
            raise OutputRejected("the answer contains HTML markup")
        if task == "description":
            if len(text) > params.max_chars:
                raise OutputRejected(f"{len(text)} characters, over the limit of {params.max_chars}")
            sentences = count_sentences(text)
            if sentences > params.max_sentences:
                raise OutputRejected(f"{sentences} sentences, over the limit of {params.max_sentences}")
        elif source_text and len(text) > 3 * len(source_text) + 200:
            raise OutputRejected("the translation is far longer than the original")
        if params.check_language:
            guessed = guess_language(text)
            if guessed is not None and guessed != params.language:
                raise OutputRejected(
                    f"the text looks {LANGUAGES[guessed]}, not {LANGUAGES[params.language]} as asked")
        return text, text
    if task == "extraction":
        value = _parse_json_object(raw)
        validator = jsonschema.Draft202012Validator(extraction_schema())
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            raise OutputRejected(f"the JSON does not match the schema at {where}: {error.message}")
        return json.dumps(value, ensure_ascii=False), value
    if task == "classification":
        stripped = raw.strip()
        value = _parse_json_object(stripped) if stripped.startswith("{") else {"category": _clean_text(stripped)}
        category = value.get("category")
        if not isinstance(category, str) or not category.strip():
            raise OutputRejected("the JSON has no \"category\" string")
        wanted = " > ".join(p.strip() for p in category.split(">")).lower()
        canonical = {c.lower(): c for c in load_taxonomy()}.get(wanted)
        if canonical is None:
            raise OutputRejected(f"{category[:120]!r} is not a category of the taxonomy")
        return canonical, {"category": canonical}
    if task == "column_mapping":
        value = _parse_json_object(raw)
        real = list(headers or [])
        mapping: dict[str, str | None] = {}
        used: dict[str, str] = {}
        for target in MAPPING_TARGETS:
            column = value.get(target)
            if column in (None, "", "null"):
                mapping[target] = None
                continue
            if not isinstance(column, str) or column not in real:
                raise OutputRejected(f"{target} is mapped to {str(column)[:80]!r}, which is not a column of the file")
            if column in used:
                raise OutputRejected(f"the column {column!r} is used for both {used[column]} and {target}")
            used[column] = target
            mapping[target] = column
        return json.dumps(mapping, ensure_ascii=False), mapping
    raise InvalidInput(f"Unknown task {task!r}.")


# ---- requests ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRequest:
    messages: list[dict[str, str]]
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


def build_request(template: Template, inputs: Mapping[str, Any], params: TaskParams) -> TaskRequest:
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
    messages.append({"role": "user", "content": render(template.prompt, values).strip()})
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


class Cancelled(DashboardError):
    """The run was cancelled before it finished."""


def generate_once(client: OllamaClient, model: str, request: TaskRequest, *,
                  register: Any = None) -> tuple[str, GenerationStats]:
    """One streamed chat request collected into text; ``register(stream)`` lets a canceller abort it."""
    started = time.perf_counter()
    first: float | None = None
    stream: NDJSONStream = client.chat(model, request.messages, options=request.options, format=request.format)
    if register is not None:
        register(stream)
    parts: list[str] = []
    final: dict[str, Any] = {}
    status = "error"
    stats: GenerationStats | None = None
    try:
        for line in stream:
            chunk = ChatChunk.from_line(line)
            if chunk.content and first is None:
                first = time.perf_counter() - started
            parts.append(chunk.content)
            if chunk.done:
                final = dict(line)
        if stream.aborted:
            status = "stopped"
            raise Cancelled("cancelled")
        stats = GenerationStats.from_final(final, ttft_s=first, wall_s=time.perf_counter() - started)
        status = "success"
        return "".join(parts), stats
    finally:
        if register is not None:
            register(None)
        metrics.record_generation(model=model, status=status, duration_s=time.perf_counter() - started,
                                  ttft_s=first, stats=stats)


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
) -> TaskResult:
    """Run one product through a task with bounded retries; never raises for a backend or model failure."""
    result = TaskResult(task=template.task, template_ref=template.ref, model=model, ok=False)
    started = time.perf_counter()
    gate = gate or BackoffGate()
    try:
        request = build_request(template, inputs, params)
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


def suggest_mapping(task: str, columns: list[str]) -> dict[str, str | None]:
    """Match a task's fields to a file's headers by name (English and French), without a model.

    >>> suggest_mapping("description", ["Nom", "Type", "Couleur", "Prix"])["colour"]
    'Couleur'
    """
    normalized = {c: re.sub(r"[\s_\-]+", " ", c.strip().lower()) for c in columns}
    mapping: dict[str, str | None] = {}
    taken: set[str] = set()
    for spec in TASK_FIELDS.get(task, ()):
        hints = FIELD_SYNONYMS.get(spec.name, (spec.name,))
        choice = None
        for hint in hints:
            for column, norm in normalized.items():
                if column not in taken and norm == hint.replace("_", " "):
                    choice = column
                    break
            if choice:
                break
        mapping[spec.name] = choice
        if choice:
            taken.add(choice)
    return mapping
