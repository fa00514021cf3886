"""``small_models``: the habits 1-3B models really have in the product studio, each with its own odds.

The host has llama3.2:1b, phi3:mini, gemma2:2b and qwen2.5:0.5b. Every answer is drawn from the odds below
with a generator seeded by the product, the task and the attempt number (deterministic: the same file gives
the same answers in every run, whatever the concurrency). What the odds model:

- a first answer's habits are independent draws, one per habit (a reply can have several);
- the same prompt sent again brings the same answer back with ``SAME_AGAIN`` odds (retrying without saying
  what was wrong mostly gets the same habits back), otherwise a fresh draw;
- a retry whose last message says what was wrong is followed with ``FOLLOWS_FEEDBACK`` odds: the fault it
  names is gone (cosmetic habits are drawn again); otherwise a fresh draw;
- few-shot examples are NOT modelled as helping: the odds are the same with or without them;
- ``format`` is treated as a hint for the JSON's shape only, not enforced (as behind a host or gateway that
  does not apply grammars): a category can be off the schema's enum, JSON can come in fences;
- the server's side is faithful: stop sequences cut the answer (the stop string not included), and
  ``num_predict`` cuts it after that many of the stand-in's tokens (word pieces), mid-word if it falls so.

Descriptions and translations (odds per answer):
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.standin import _model_record, _tokenize

if TYPE_CHECKING:
    from tests.standin import StandinState

TEXT_HABITS: dict[str, float] = {
    "preamble": 0.35,        # "Voici une description élégante en français :" or "Bien sûr ! Voici…" before the text
    "quotes": 0.30,          # « … », "…" or “…” around it
    "bold": 0.20,            # **the product's name**, or a **bold title line** on top
    "extra_sentence": 0.30,  # one sentence more than asked
    "closing": 0.25,         # "N'hésitez pas à me demander d'autres variantes !" after a blank line
    "hashtags": 0.15,        # a line of hashtags at the end
    "verbose": 0.12,         # long-winded sentences: the whole is over the character limit
    # Faults no repair can fix (retried with feedback, else failed):
    "wrong_language": 0.04,  # English when French was asked, and the other way round
    "only_preamble": 0.02,   # "Voici une description du produit :" and nothing else
    "one_long_sentence": 0.02,  # a single 600-character sentence
    "empty": 0.01,
    "html": 0.01,            # <p>…</p>
}
CATEGORY_HABITS: dict[str, float] = {
    "folded": 0.15,      # lower case, accents or spacing changed: "apparel & accessories>clothing>dresses"
    "leaf_only": 0.20,   # "Dresses" for the full path
    "prose": 0.15,       # "La catégorie la plus adaptée est : **Dresses**."
    "fenced": 0.10,      # ```json … ``` around the JSON
    # Not repairable:
    "invented": 0.08,    # "Vêtements > Robes de soirée": not in the taxonomy
}
JSON_HABITS: dict[str, float] = {
    "fenced": 0.30,          # ```json … ```
    "preamble": 0.20,        # "Voici les informations extraites :" before the JSON
    "closing": 0.10,         # a sentence after the JSON
    "trailing_commas": 0.12,
    # Not repairable:
    "truncated": 0.03,       # the closing braces missing
    "wrong_shape": 0.04,     # "materials": "inox" (a string where the schema wants a list)
}
FAULTS = {"wrong_language", "only_preamble", "one_long_sentence", "empty", "html", "invented", "truncated",
          "wrong_shape", "verbose", "extra_sentence"}
SAME_AGAIN = 0.70
FOLLOWS_FEEDBACK = 0.80
TOKENS_PER_SECOND = 60.0
__doc__ = (__doc__ or "") + "".join(f"\n- {k}: {v:.0%}" for k, v in TEXT_HABITS.items()) + (
    "\n\nClassification:" + "".join(f"\n- {k}: {v:.0%}" for k, v in CATEGORY_HABITS.items())
    + "\n\nExtraction:" + "".join(f"\n- {k}: {v:.0%}" for k, v in JSON_HABITS.items())
    + f"\n\nSame answer again on an identical retry: {SAME_AGAIN:.0%}; feedback followed: {FOLLOWS_FEEDBACK:.0%}.")

MODELS = [
    _model_record("llama3.2:1b", 1_321_098_329, "llama", "1.2B", "Q8_0", ["completion", "tools"], 131072),
    _model_record("phi3:mini", 2_176_178_913, "phi3", "3.8B", "Q4_0", ["completion"], 131072),
    _model_record("gemma2:2b", 1_629_518_495, "gemma2", "2.6B", "Q4_0", ["completion"], 8192),
    _model_record("qwen2.5:0.5b", 397_821_319, "qwen2", "494.03M", "Q4_K_M", ["completion", "tools"], 32768),
]
TASK_MARKERS = {"Product data:": "description", "Likely categories": "classification",
                "Options under": "classification", "Analyse this product": "extraction",
                "Translate this product description": "translation"}


def _draw(rng: random.Random, odds: dict[str, float]) -> set[str]:
    return {habit for habit, chance in odds.items() if rng.random() < chance}


def _fields(prompt: str) -> dict[str, str]:
    return {m.group(1).strip(): m.group(2).strip() for m in re.finditer(r"^- ([^:\n]+): (.+)$", prompt, re.M)}


# ---- descriptions -------------------------------------------------------------------------------------


def _sentences(fields: dict[str, str], language: str, rng: random.Random, verbose: bool) -> list[str]:
    kind = fields.get("Product type", "article")
    name = fields.get("Name") or kind.capitalize()
    colour, material = fields.get("Colour", ""), fields.get("Material", "")
    extra = fields.get("Other attributes", "")
    if language == "fr":
        first = f"{name}, {kind}" + (f" {colour}" if colour else "") + (f" en {material}" if material else "")
        first += rng.choice([", allie élégance et confort", ", séduit par sa ligne épurée",
                             ", offre une allure raffinée"])
        if extra:
            first += f" ({extra[:60]})"
        if verbose:
            first += (", avec des finitions soignées, une coupe pensée pour flatter la silhouette et des détails "
                      "qui font toute la différence au quotidien comme lors des grandes occasions")
        second = rng.choice(["Parfaite pour vos soirées, elle se porte avec aisance",
                             "Elle accompagne chaque moment avec une élégance naturelle",
                             "Idéale au quotidien, elle se distingue par sa qualité env. 30 % au-dessus du marché"])
        if verbose:
            second += (", que ce soit pour un dîner, une réception ou une sortie entre amis, et saura vous "
                       "accompagner de saison en saison grâce à sa grande polyvalence")
        third = rng.choice(["Elle se marie aussi bien avec des escarpins qu'avec des baskets.",
                            "Un indispensable de la garde-robe, n° 1 de nos ventes."])
    else:
        first = f"{name}, a" + (f" {colour}" if colour else "") + f" {kind}" + (f" in {material}" if material else "")
        first += rng.choice([", blends elegance and comfort", ", charms with its clean line"])
        if verbose:
            first += (", with careful finishes, a cut designed to flatter the figure and details that make all the "
                      "difference every day as on the big occasions")
        second = rng.choice(["Perfect for your evenings, it is easy to wear",
                             "It brings natural elegance to every moment"])
        if verbose:
            second += ", whether for a dinner, a reception or a night out, season after season"
        third = "It pairs as well with heels as with sneakers."
    return [first + ".", second + ".", third]


def _text_answer(habits: set[str], fields: dict[str, str], language: str, max_sentences: int,
                 rng: random.Random) -> str:
    if "empty" in habits:
        return ""
    other = "en" if language == "fr" else "fr"
    lang = other if "wrong_language" in habits else language
    if "only_preamble" in habits:
        return "Voici une description du produit :" if lang == "fr" else "Here is a description of the product:"
    if "one_long_sentence" in habits:
        base = _sentences(fields, lang, rng, verbose=True)[0].rstrip(".")
        filler = (", pensée pour sublimer chaque instant" if lang == "fr" else ", designed to enhance every moment")
        while len(base) < 600:
            base += filler
        return base + "."
    sentences = _sentences(fields, lang, rng, "verbose" in habits)
    count = max(1, min(max_sentences, 2)) + (1 if "extra_sentence" in habits else 0)
    text = " ".join(sentences[:count])
    if "bold" in habits:
        name = fields.get("Name", "")
        if name and rng.random() < 0.5 and name in text:
            text = text.replace(name, f"**{name}**", 1)
        else:
            text = f"**{name or fields.get('Product type', 'Produit')}**\n\n{text}"
    if "html" in habits:
        text = f"<p>{text}</p>"
    if "quotes" in habits:
        opener, closer = rng.choice([("« ", " »"), ('"', '"'), ("“", "”")])
        text = f"{opener}{text}{closer}"
    if "preamble" in habits:
        text = rng.choice(["Voici une description élégante en français :\n\n", "Bien sûr ! Voici une proposition :\n",
                           "Voici :\n\n"] if lang == "fr" else
                          ["Here is an elegant description:\n\n", "Sure! Here's a suggestion:\n"]) + text
    if "hashtags" in habits:
        text += "\n\n#mode #élégance #" + re.sub(r"\W+", "", fields.get("Product type", "style"))
    if "closing" in habits:
        text += ("\n\nN'hésitez pas à me demander d'autres variantes !" if lang == "fr"
                 else "\n\nFeel free to ask for other versions!")
    return text


# ---- classification and extraction -----------------------------------------------------------------


def _category_answer(habits: set[str], prompt: str, rng: random.Random) -> str:
    if "Options under" in prompt:  # a level-by-level step: the options are listed as "- option"
        listed = re.findall(r"^- (.+)$", prompt.split("Options under", 1)[1].split("\n\n", 1)[0], re.M)
    else:
        listed = re.findall(r"^(\S[^\n]* > [^\n]+)$", prompt.split("Likely categories", 1)[-1], re.M)
    path = listed[0] if listed else "Apparel & Accessories"
    if "invented" in habits:
        return json.dumps({"category": rng.choice(["Vêtements > Robes de soirée", "Mode > Femme > Robes",
                                                   "Clothing > Evening Wear"])}, ensure_ascii=False)
    value = path
    if "leaf_only" in habits:
        value = path.split(" > ")[-1]
    if "folded" in habits:
        value = value.lower().replace(" > ", ">")
    if "prose" in habits:
        return f"La catégorie la plus adaptée est : **{value}**."
    answer = json.dumps({"category": value}, ensure_ascii=False)
    return f"```json\n{answer}\n```" if "fenced" in habits else answer


def _extraction_answer(habits: set[str], text: str) -> str:
    specs = {f"valeur_{i + 1}": m.group(0) for i, m in
             enumerate(re.finditer(r"\d+(?:[,.]\d+)?\s?(?:L|W|V|kW|Wh|mAh|°C)\b", text))}
    materials = [m for m in ("inox", "verre", "plastique", "coton", "soie", "bois", "cuir", "laine")
                 if m in text.lower()]
    dimensions = {f"mesure_{i + 1}": m.group(0) for i, m in
                  enumerate(re.finditer(r"\d+(?:[,.]\d+)?\s?(?:cm|mm|m|kg|g)\b", text))}
    safety = [s.strip() for s in re.findall(r"((?:Ne pas|Attention|Tenir)[^.]*)", text)]
    value: dict[str, Any] = {"specifications": specs, "materials": materials, "dimensions": dimensions,
                             "safety_info": safety}
    if "wrong_shape" in habits:
        value["materials"] = ", ".join(materials) or "inconnu"
    answer = json.dumps(value, ensure_ascii=False, indent=2)
    if "trailing_commas" in habits:
        answer = re.sub(r"(\S)\n(\s*[}\]])", r"\1,\n\2", answer)
    if "truncated" in habits:
        answer = answer.rstrip().rstrip("}").rstrip()
    if "fenced" in habits:
        answer = f"```json\n{answer}\n```"
    if "preamble" in habits:
        answer = "Voici les informations extraites :\n\n" + answer
    if "closing" in habits:
        answer += "\n\nJ'espère que cela vous aide !"
    return answer


# ---- the responder ----------------------------------------------------------------------------------


def _server_side(text: str, options: dict[str, Any]) -> str:
    """What Ollama does to an answer: stop at the first stop sequence, then at ``num_predict`` tokens."""
    for stop in options.get("stop") or []:
        if stop and stop in text:
            text = text[: text.index(stop)]
    limit = options.get("num_predict")
    if isinstance(limit, int) and limit > 0:
        tokens = _tokenize(text)
        if len(tokens) > limit:
            text = "".join(tokens[:limit])
    return text


class SmallModelResponder:
    """Answers like a small model: the odds above, seeded per product, task and attempt."""

    def __init__(self, odds_scale: float = 1.0) -> None:
        self.scale = odds_scale
        self._seen: dict[str, int] = {}
        self._last: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def _odds(self, table: dict[str, float]) -> dict[str, float]:
        return {k: min(v * self.scale, 1.0) for k, v in table.items()}

    def __call__(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or [{"role": "user", "content": body.get("prompt", "")}]
        users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
        task_prompt = next((u for u in reversed(users) if any(k in u for k in TASK_MARKERS)), "")
        task = next((t for k, t in TASK_MARKERS.items() if k in task_prompt), "")
        if not task:
            return "Bonjour ! Je suis un petit modèle local. Posez-moi votre question."
        feedback = users[-1] if users and users[-1] != task_prompt else ""
        key = hashlib.sha256(f"{body.get('model')}|{task}|{task_prompt}".encode()).hexdigest()
        with self._lock:
            attempt = self._seen.get(key, 0)
            self._seen[key] = attempt + 1
            previous = self._last.get(key)
        rng = random.Random(f"{key}:{attempt}")
        odds = self._odds({"description": TEXT_HABITS, "translation": TEXT_HABITS,
                           "classification": CATEGORY_HABITS, "extraction": JSON_HABITS}[task])
        followed = bool(feedback) and rng.random() < FOLLOWS_FEEDBACK
        if previous is not None and not feedback and rng.random() < SAME_AGAIN:
            habits = set(previous)
        else:
            habits = _draw(rng, odds)
            if followed:
                habits -= FAULTS
        with self._lock:
            self._last[key] = habits
        language = "en" if re.search(r"\bin English\b|into English", task_prompt) else "fr"
        if task == "classification":
            options = re.findall(r"^- (.+)$", feedback, re.M)
            if followed and options:
                return json.dumps({"category": options[0]}, ensure_ascii=False)
            answer = _category_answer(habits, task_prompt, rng)
        elif task == "extraction":
            answer = _extraction_answer(habits, task_prompt.split("extract the key information:", 1)[-1])
        else:
            asked = re.search(r"at most (\d+) sentences", task_prompt)
            fields = _fields(task_prompt) if task == "description" else {
                "Product type": "article", "Name": "Ce produit" if language == "fr" else "This product"}
            answer = _text_answer(habits, fields, language, int(asked.group(1)) if asked else 2, rng)
        return _server_side(answer, body.get("options") or {})


def apply(state: StandinState, *, odds_scale: float = 1.0) -> None:
    """Four small models answering with the habits above, at a small model's pace on a CPU."""
    state.models = {r["name"]: r for r in MODELS}
    state.config.tokens_per_second = TOKENS_PER_SECOND
    state.responder = SmallModelResponder(odds_scale)


def profile(odds_scale: float = 1.0) -> Callable[[StandinState], None]:
    return lambda state: apply(state, odds_scale=odds_scale)
