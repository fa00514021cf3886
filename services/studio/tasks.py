"""The product studio's five tasks: what each reads (fields, labels, column-name hints), its parameters, and how
a supplier file's columns are matched to its fields.

The studio's modules, in the order a product goes through them: ``tasks`` (what a task is), ``templates``
(the versioned prompt files), ``checks`` (what every output must pass), ``engine`` (one product through
one task, with retries), ``batch`` (a whole file as a server-side job), ``cli`` (the same headless).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from services.errors import (
    InvalidInput,
)

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
# How a classification chooses (services.studio.classify): "" the template's own route.
CLASSIFICATION_ROUTES: dict[str, str] = {
    "": "the template's own",
    "shortlist": "Shortlist, then level by level",
    "levels": "Level by level",
    "shortlist_only": "Shortlist only",
    "single": "One request over the whole taxonomy",
}
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
    # {{candidates}}: the single-request route (a hint list; the whole taxonomy is the enum); {{options}}: the
    # constrained routes (the options listed are exactly the enum), with {{current}}, {{taxonomy}}, {{stop_note}}
    # and {{language_note}} (what to do when the product's language is not the taxonomy's).
    "classification": ("product", "candidates", "options", "current", "taxonomy", "stop_note", "language_note"),
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



@dataclass(frozen=True)
class TaskParams:
    """Settings of a run that are not product fields."""

    language: str = "fr"
    tone: str = "elegant"
    max_sentences: int = 2
    max_chars: int = 300
    check_language: bool = True
    # Classification: the taxonomy's ref ("" = the apparel subset jobs used before taxonomies were chosen), the
    # route ("" = the template's own: {{candidates}} single request, {{options}} level by level), and the
    # language of the labels shown where a translation is loaded ("" = the taxonomy's own).
    taxonomy: str = ""
    route: str = ""
    label_language: str = ""

    def validate(self) -> TaskParams:
        if self.language not in LANGUAGES:
            raise InvalidInput(f"Language must be one of {', '.join(LANGUAGES)}, not {self.language!r}.")
        if not 1 <= self.max_sentences <= 20:
            raise InvalidInput("The sentence limit must be between 1 and 20.")
        if not 40 <= self.max_chars <= 5000:
            raise InvalidInput("The character limit must be between 40 and 5,000.")
        if not self.tone.strip() or len(self.tone) > 60:
            raise InvalidInput("Give a tone of at most 60 characters (e.g. elegant).")
        if self.route not in CLASSIFICATION_ROUTES:
            known = ", ".join(r for r in CLASSIFICATION_ROUTES if r)
            raise InvalidInput(f"The classification route must be one of {known}, not {self.route!r}.")
        if len(self.taxonomy) > 80 or len(self.label_language) > 8:
            raise InvalidInput("Unknown taxonomy or label language.")
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)



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
