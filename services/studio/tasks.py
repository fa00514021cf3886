"""The product studio's five tasks: what each reads (fields, labels, column-name hints), its parameters, and how
a supplier file's columns are matched to its fields.

The studio's modules, in the order a product goes through them: ``tasks`` (what a task is), ``templates``
(the versioned prompt files), ``checks`` (what every output must pass), ``engine`` (one product through
one task, with retries), ``batch`` (a whole file as a server-side job), ``cli`` (the same headless).
"""

from __future__ import annotations

import re
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
