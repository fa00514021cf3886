"""What every task output must pass before it is kept, and the data the checks use (taxonomy, schemas).

JSON parses and fits the schema, the category exists, the length and sentence limits hold, the language is
the one asked, no HTML. A failed check raises ``OutputRejected`` with the reason; nothing that breaks the
brief is ever kept.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from services.errors import (
    InvalidInput,
    OutputRejected,
)
from services.resources import EXTRACTION_SCHEMA_FILE, TAXONOMY_FILE
from services.studio.sentences import count_sentences, sentence_spans
from services.studio.tasks import LANGUAGES, MAPPING_TARGETS, TaskParams
from services.studio.taxonomy import Taxonomy


@lru_cache(maxsize=4)
def default_taxonomy(path: Path = TAXONOMY_FILE) -> Taxonomy:
    """The shipped taxonomy file; callers pass a ``Taxonomy`` to use another one."""
    return Taxonomy.from_file(path)


def load_taxonomy(path: Path = TAXONOMY_FILE) -> tuple[str, ...]:
    return default_taxonomy(path).paths


@lru_cache(maxsize=1)
def extraction_schema() -> dict[str, Any]:
    schema = json.loads(EXTRACTION_SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def classification_schema(taxonomy: Taxonomy | None = None) -> dict[str, Any]:
    paths = (taxonomy or default_taxonomy()).paths
    return {"type": "object", "properties": {"category": {"type": "string", "enum": list(paths)}},
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


def category_candidates(text: str, limit: int = 25, taxonomy: Taxonomy | None = None) -> list[str]:
    """A shortlist of taxonomy paths sharing words with the product, for the prompt (not a constraint)."""
    paths = (taxonomy or default_taxonomy()).paths
    words = re.findall(r"[a-zà-ÿ'-]+", text.lower())
    terms = {_stem(w) for w in words}
    for word in words:
        terms |= {_stem(t) for t in _FR_EN.get(word, "").split()}
    terms -= {"and", "the", "with", "for", "de", "la", "le", "et", "en"}
    scored: list[tuple[float, str]] = []
    for path in paths:
        parts = path.split(" > ")
        leaf = {_stem(w) for w in re.findall(r"[a-z'-]+", parts[-1].lower())}
        rest = {_stem(w) for p in parts[:-1] for w in re.findall(r"[a-z'-]+", p.lower())}
        score = 2 * len(terms & leaf) + 0.5 * len(terms & rest)
        if score:
            scored.append((score + 0.01 * len(parts), path))
    if not scored:
        return [p for p in paths if p.count(" > ") <= 1][:limit]
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
        raise OutputRejected(f"the answer is not JSON ({exc.msg} at character {exc.pos}): {snippet!r}",
                             f"Your answer is not valid JSON ({exc.msg}). Answer with the JSON object only, "
                             "without code fences or any text around it.") from None
    if not isinstance(value, dict):
        raise OutputRejected(f"the answer is JSON but not an object ({type(value).__name__})",
                             "Your answer must be one JSON object ({...}), not a list or a value.")
    return value


def _check_text(task: str, raw: str, params: TaskParams, source_text: str) -> str:
    text = _clean_text(raw)
    if not text:
        raise OutputRejected("the answer is empty", "Your answer was empty. Answer with the text itself.")
    if "<" in text and re.search(r"<\s*/?\s*[a-zA-Z]", text):
        raise OutputRejected("the answer contains HTML markup",
                             "Your answer contains HTML tags. Write plain text, without any tags or markup.")
    if task == "description":
        sentences = count_sentences(text)
        if len(text) > params.max_chars:
            first = sentence_spans(text)[0]
            if sentences == 1 or first[1] - first[0] > params.max_chars:
                raise OutputRejected(
                    f"{len(text)} characters, over the limit of {params.max_chars}, and its first sentence "
                    f"({first[1] - first[0]} characters) cannot be cut at a sentence end",
                    f"Your answer's first sentence is {first[1] - first[0]} characters long. Write at most "
                    f"{params.max_sentences} short sentences, {params.max_chars} characters in all.")
            raise OutputRejected(f"{len(text)} characters, over the limit of {params.max_chars}",
                                 f"Your answer is {len(text)} characters: write at most {params.max_chars} "
                                 f"characters ({params.max_sentences} sentences at most).")
        if sentences > params.max_sentences:
            raise OutputRejected(f"{sentences} sentences, over the limit of {params.max_sentences}",
                                 f"Your answer has {sentences} sentences: keep {params.max_sentences}.")
    elif source_text and len(text) > 3 * len(source_text) + 200:
        raise OutputRejected("the translation is far longer than the original",
                             "Translate the text only: no notes, no alternatives, no explanations.")
    if params.check_language:
        guessed = guess_language(text)
        if guessed is not None and guessed != params.language:
            raise OutputRejected(
                f"the text looks {LANGUAGES[guessed]}, not {LANGUAGES[params.language]} as asked",
                f"Your answer is in {LANGUAGES[guessed]}: write it in {LANGUAGES[params.language]}.")
    return text


def _check_mapping(raw: str, headers: list[str]) -> dict[str, str | None]:
    value = _parse_json_object(raw)
    listing = ", ".join(json.dumps(h, ensure_ascii=False) for h in headers)
    mapping: dict[str, str | None] = {}
    used: dict[str, str] = {}
    for target in MAPPING_TARGETS:
        column = value.get(target)
        if column in (None, "", "null"):
            mapping[target] = None
            continue
        if not isinstance(column, str) or column not in headers:
            raise OutputRejected(f"{target} is mapped to {str(column)[:80]!r}, which is not a column of the file",
                                 f"{str(column)[:80]!r} is not a column of the file. Use only these headers, "
                                 f"copied exactly, or null: {listing}.")
        if column in used:
            raise OutputRejected(f"the column {column!r} is used for both {used[column]} and {target}",
                                 f"You used the column {column!r} for both {used[column]} and {target}: use each "
                                 "column at most once.")
        used[column] = target
        mapping[target] = column
    return mapping


def check_output(task: str, raw: str, params: TaskParams, *, headers: list[str] | None = None,
                 source_text: str = "", taxonomy: Taxonomy | None = None) -> tuple[str, Any]:
    """The cleaned value to store and its parsed form, or ``OutputRejected`` with the reason and feedback."""
    if task in ("description", "translation"):
        text = _check_text(task, raw, params, source_text)
        return text, text
    if task == "extraction":
        value = _parse_json_object(raw)
        validator = jsonschema.Draft202012Validator(extraction_schema())
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            raise OutputRejected(f"the JSON does not match the schema at {where}: {error.message}",
                                 f"Your JSON does not fit the format at {where}: {error.message}. Answer with "
                                 'exactly {"specifications": {}, "materials": [], "dimensions": {}, '
                                 '"safety_info": []} filled in.')
        return json.dumps(value, ensure_ascii=False), value
    if task == "classification":
        paths = taxonomy or default_taxonomy()
        stripped = raw.strip()
        value = _parse_json_object(stripped) if stripped.startswith("{") else {"category": _clean_text(stripped)}
        category = value.get("category")
        if not isinstance(category, str) or not category.strip():
            raise OutputRejected("the JSON has no \"category\" string",
                                 'Answer with JSON: {"category": "<a full path copied from the list>"}.')
        wanted = " > ".join(p.strip() for p in category.split(">")).lower()
        canonical = {c.lower(): c for c in paths.paths}.get(wanted)
        if canonical is None:
            raise OutputRejected(f"{category[:120]!r} is not a category of the taxonomy",
                                 f"{category[:120]!r} is not in the taxonomy: copy one path exactly from the list.")
        return canonical, {"category": canonical}
    if task == "column_mapping":
        mapping = _check_mapping(raw, list(headers or []))
        return json.dumps(mapping, ensure_ascii=False), mapping
    raise InvalidInput(f"Unknown task {task!r}.")
