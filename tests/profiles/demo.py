"""``demo``: a first look without Ollama (``make demo``). A realistic host that answers well.

Several families and sizes (llama3.2 1B and 3B, qwen3 with thinking, gemma3 with vision, phi3, mistral 7B
slow to load as a 7B model is on a CPU, an embedding model); product-studio answers in French (or English
when asked) that pass the shipped templates' checks, written from the product's own fields; chat answers in
French; a pull of a few GB that takes about 20 seconds. Structured answers honour ``format`` the way Ollama's
grammar does: a value from an ``enum`` is always one of its options (the closest to the product's words).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import TYPE_CHECKING, Any

from tests.profiles.classifier import ClassifierResponder, _category_enum
from tests.profiles.small_models import TASK_MARKERS, SmallModelResponder
from tests.standin import _digest, _json_for_schema, _model_record

if TYPE_CHECKING:
    from tests.standin import StandinState

GB = 1_000_000_000
MODELS = [
    _model_record("llama3.2:1b", 1_321_098_329, "llama", "1.2B", "Q8_0", ["completion", "tools"], 131072),
    _model_record("llama3.2:3b", 2_019_393_189, "llama", "3.2B", "Q4_K_M", ["completion", "tools"], 131072),
    _model_record("qwen3:1.7b", 1_359_297_696, "qwen3", "2.0B", "Q4_K_M", ["completion", "tools", "thinking"],
                  40960),
    _model_record("gemma3:4b", 3_338_801_804, "gemma3", "4.3B", "Q4_K_M", ["completion", "vision"], 131072),
    _model_record("phi3:mini", 2_176_178_913, "phi3", "3.8B", "Q4_0", ["completion"], 131072),
    _model_record("mistral:7b", 4_372_824_384, "llama", "7.2B", "Q4_K_M", ["completion", "tools"], 32768),
    _model_record("nomic-embed-text:latest", 274_302_450, "nomic-bert", "137M", "F16", ["embedding"], 2048),
]
SPEEDS = {"llama3.2:1b": 55.0, "llama3.2:3b": 32.0, "qwen3:1.7b": 40.0, "gemma3:4b": 22.0, "phi3:mini": 26.0,
          "mistral:7b": 14.0}
LOAD_S = {"mistral:7b": 6.0, "gemma3:4b": 2.5, "llama3.2:3b": 1.5}
PULL_BYTES_PER_S = 80_000_000  # gemma2:2b (1.6 GB) in about 20 s
REGISTRY = {"gemma2:2b": 1_629_518_495, "qwen2.5:0.5b": 397_821_319, "llama3.1:8b": 4_920_753_328}

CHAT_REPLIES = [
    ("descri", "Voici une proposition :\n\n**Robe Lina** — en crêpe de soie bleu nuit, elle dessine une silhouette "
               "fluide et lumineuse. Sa coupe ajustée et sa longueur midi accompagnent avec élégance vos soirées "
               "les plus attendues.\n\nJe peux la raccourcir ou changer de ton si vous le souhaitez."),
    ("tradu", "**Traduction (anglais)** : *The Lina dress in midnight-blue silk crêpe draws a fluid, luminous "
              "silhouette.*\n\nLe registre reste élégant ; je peux proposer une version plus courte."),
    ("résum", "En bref :\n\n- le catalogue compte trois familles de produits ;\n- les descriptions doivent tenir "
              "en deux phrases ;\n- les catégories suivent la taxonomie Google."),
]
DEFAULT_CHAT = ("Bonjour ! Je tourne en local sur ce serveur Ollama. Je peux rédiger des descriptions de produits, "
                "extraire des caractéristiques au format JSON, classer un article dans la taxonomie Google ou "
                "traduire une fiche. Que souhaitez-vous faire ?")


def _words(text: str) -> set[str]:
    folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    return {w for w in re.findall(r"[a-z0-9]+", folded) if len(w) > 2}


def _enum_choice(options: list[str], text: str) -> str:
    """The option sharing most words with the product text (the first one on a tie), as a grammar-bound
    model would pick."""
    words = _words(text)
    return max(options, key=lambda option: (len(_words(option) & words), -options.index(option)))


# What a supplier's column headers say for each field a mapping fills (French and English).
FIELD_WORDS = {"name": {"designation", "nom", "name", "libelle", "titre", "title", "produit"},
               "price": {"prix", "price", "ttc", "tarif"}, "ean": {"ean", "gtin", "code", "barre"},
               "description": {"descriptif", "description", "desc"}, "brand": {"marque", "brand"},
               "category": {"categorie", "category", "famille"}, "colour": {"couleur", "color", "colour"},
               "material": {"matiere", "material", "tissu"}, "size": {"taille", "size"},
               "sku": {"sku", "reference", "ref"}}


def _fill(schema: dict[str, Any], text: str, field: str = "", taken: set[str] | None = None) -> Any:
    if schema.get("enum"):
        free = [o for o in schema["enum"] if o is not None and str(o) not in (taken or set())]
        if field in FIELD_WORDS and None in schema["enum"]:  # a column mapping: the header naming it, or none
            named = [o for o in free if _words(str(o)) & FIELD_WORDS[field]]
            return named[0] if named else None
        return _enum_choice([str(o) for o in free] or [str(o) for o in schema["enum"]], text)
    if schema.get("type") == "object":
        taken = set()
        answer: dict[str, Any] = {}
        for name, sub in (schema.get("properties") or {}).items():
            answer[name] = _fill(sub, text, name, taken)
            if isinstance(answer[name], str):
                taken.add(answer[name])
        return answer
    return json.loads(_json_for_schema(schema, "fit"))


def _has_enum(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "enum" in schema or any(_has_enum(v) for v in schema.values())
    return False


class DemoResponder:
    """Good answers: the studio's tasks without any small-model habit, chat in French."""

    def __init__(self) -> None:
        self.studio = SmallModelResponder(odds_scale=0.0)
        self.classifier = ClassifierResponder(time_scale=0.0, odds_scale=0.0)

    def __call__(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or [{"role": "user", "content": body.get("prompt", "")}]
        text = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        schema = body.get("format")
        if _category_enum(schema) is not None:  # a classification step: chosen as a good small model would
            return self.classifier(body)
        if isinstance(schema, dict) and _has_enum(schema):
            return json.dumps(_fill(schema, text), ensure_ascii=False)
        if any(marker in text for marker in TASK_MARKERS):
            return self.studio(body)
        if isinstance(schema, dict):
            return _json_for_schema(schema, "fit")
        last = str(messages[-1].get("content", "")).lower() if messages else ""
        return next((reply for needle, reply in CHAT_REPLIES if needle in last), DEFAULT_CHAT)


def apply(state: StandinState) -> None:
    state.models = {r["name"]: r for r in MODELS}
    state.registry = {name: [(_digest(name + ":weights"), size), (_digest(name + ":template"), 1_429),
                             (_digest(name + ":license"), 8_432), (_digest(name + ":params"), 96)]
                      for name, size in REGISTRY.items()}
    state.config.tokens_per_second = 45.0
    state.config.model_tokens_per_second = dict(SPEEDS)
    state.config.model_load_delay_s = dict(LOAD_S)
    state.config.load_delay_s = 0.8
    state.config.thinking_tokens = 6
    state.config.pull_bytes_per_s = PULL_BYTES_PER_S
    state.config.pull_interval_s = 0.1
    state.responder = DemoResponder()
