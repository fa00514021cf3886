"""Starting prompts for an empty conversation, taken from the two companies' own product tasks (the seeds):
dress descriptions (Velvena, in French), enrichment, classification and supplier column mapping (Tarifique),
and translation; each with the seed's preset for its use case."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Starter:
    label: str  # the short text on the button
    prompt: str
    preset: str  # a key of services.ollama.options.PRESETS


STARTERS: tuple[Starter, ...] = (
    Starter("Description de robe (FR)",
            "Écris une description courte (2 phrases) pour une robe de soirée rouge, élégante et professionnelle.",
            "enrichment"),
    Starter("Extract product details (JSON)",
            "Analyse this product and extract its key information as JSON with the keys specifications, materials, "
            "dimensions and safety_info:\nLampe de chevet en laiton brossé, abat-jour en lin naturel, hauteur 45 cm, "
            "ampoule E27 40 W max, câble 1,8 m.",
            "enrichment"),
    Starter("Classify in the Google taxonomy",
            "Classify this product in the Google product taxonomy; answer with the category path only:\n"
            "Casserole en inox 20 cm, compatible induction, poignée rivetée.",
            "classification"),
    Starter("Map supplier columns",
            "These are the columns of a supplier file: Designation;Prix TTC;Code EAN;Descriptif;Coloris. Which "
            "column holds the product name, the price, the EAN, the description and the colour?",
            "classification"),
    Starter("Traduire en anglais",
            "Traduis en anglais, sans rien ajouter : « Robe longue en satin, dos nu, idéale pour les soirées "
            "d'été. »",
            "enrichment"),
)
