"""``classifier``: small models choosing categories the way 1-3B models do behind a real Ollama.

Same host as ``small_models`` (llama3.2:1b, phi3:mini, gemma2:2b, qwen2.5:0.5b; descriptions, extraction and
translations answered by its ``SmallModelResponder``). What this profile adds is how a classification step is
answered:

- ``format`` is honoured as real Ollama does (a grammar): when the schema's ``category`` is an enum, the answer
  is ``{"category": <one of the enum>}``, always. With ``honour_format=False`` (a host or gateway that drops
  grammars) the chosen option comes with small models' habits instead: the last segment only, lower case,
  prose around it, code fences, now and then an invented category;
- the choice: the model recognises the evaluation set's products (``known_products``: their true category is
  its "understanding"; the stand-in cannot read) and, at each step, takes the option on the way to it; a
  product it does not know is classified by its words (English, or French through ``FR_EN``; the head noun
  counts most) against each option and what lies under it in Google's taxonomy;
- sometimes badly (each model by its ``MODEL_ODDS``): a wrong option (the one sharing most words) is taken
  with ``MISTAKE`` odds, more with long option lists (``MISTAKE_PER_OPTION`` each) and for French text
  (``MISTAKE_FRENCH``); a step that could go deeper stops early with ``EARLY_STOP`` odds; when the right
  category is not on offer (a shortlist without it, a wrong turn earlier) the model says "None of these" with
  ``none_when_absent`` odds (60 %), else takes the option sharing most words;
- a product whose words match nothing gets "Not enough information" at the top (``NO_MATCH_SAYS_SO`` odds; a
  random option otherwise), and "None of these" further down;
- the v2 single request (the whole taxonomy as the enum, 25 "Likely categories" in the prompt): the choice is
  made among the listed ones, as small models do with a list in front of them;
- time: the prompt is read at ``PROMPT_TOKENS_PER_SECOND`` (a 1B model on a CPU) before the answer streams at
  the host's tokens per second; ``time_scale`` shrinks both for quick tests and benchmarks alike.

Every draw is seeded by the model, the prompt and the attempt number: the same file gives the same answers.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from services.resources import CLASSIFICATION_EVAL_FILE, GOOGLE_TAXONOMY_FILE
from services.studio.taxonomy import SEPARATOR, ancestors
from services.studio.taxonomy_search import stem, words
from tests.profiles.small_models import MODELS, TOKENS_PER_SECOND, SmallModelResponder

if TYPE_CHECKING:
    from tests.standin import StandinState

MISTAKE = 0.05
MISTAKE_PER_OPTION = 0.0003
MISTAKE_FRENCH = 0.04
EARLY_STOP = 0.03
NO_MATCH_SAYS_SO = 0.85
PROMPT_TOKENS_PER_SECOND = 600.0
# How much more (or less) often each model of the host errs than the odds above: smaller models err more.
MODEL_ODDS = {"qwen2.5:0.5b": 1.6, "llama3.2:1b": 1.0, "gemma2:2b": 0.8, "phi3:mini": 0.7}
SENTINELS = ("Not enough information", "None of these")
# The model's knowledge of French: product nouns and adjectives, with the English words Google's names use.
FR_EN: dict[str, str] = {
    "bouilloire": "kettle", "grille": "toaster", "pain": "toaster bread", "expresso": "espresso",
    "cafetiere": "coffee maker french press", "piston": "french press", "four": "oven", "micro": "microwave",
    "onde": "microwave", "blender": "blender", "chauffant": "heated", "poele": "skillet frying pan",
    "antiadhesive": "nonstick", "couteau": "knife knives", "chef": "chef", "planche": "board",
    "decouper": "cutting", "assiett": "plate", "plate": "plate", "porcelaine": "porcelain dinnerware",
    "mug": "mug", "gres": "stoneware", "verr": "glass stemware", "vin": "wine", "cristal": "crystal stemware",
    "coussin": "pillow throw", "decoratif": "decorative", "drap": "sheet", "housse": "cover",
    "couette": "duvet", "serviette": "towel", "bain": "bath", "rideau": "curtain drape",
    "occultant": "blackout curtain", "tapi": "rug", "salon": "living", "lampe": "lamp", "chevet": "bedside",
    "ampoule": "bulb light", "led": "led", "bougie": "candle", "parfumee": "scented candle", "cadre": "frame",
    "photo": "picture photo", "horloge": "clock", "murale": "wall", "vase": "vase", "aspirateur": "vacuum",
    "balai": "stick", "lave": "washing", "linge": "laundry", "hublot": "washing machine", "machine": "machine",
    "radiateur": "heater", "soufflant": "heater", "ventilateur": "fan", "plafond": "ceiling",
    "lessive": "laundry detergent", "liquide": "liquid", "douche": "shower", "detecteur": "detector",
    "fumee": "smoke", "canape": "sofa", "chaise": "chair", "chais": "chair", "manger": "dining",
    "fauteuil": "chair", "bureau": "office desk", "ergonomique": "ergonomic", "matela": "mattress",
    "memoire": "memory foam", "armoire": "wardrobe armoire", "penderie": "wardrobe", "bibliotheque": "bookcase",
    "etager": "shelf shelves", "lit": "bed", "bebe": "baby", "evolutif": "crib toddler", "haute": "high",
    "robe": "dress", "soiree": "evening", "jupe": "skirt", "longue": "long", "longu": "long",
    "plissee": "pleated", "pantalon": "pants", "chino": "pants chino", "chemise": "shirt", "lin": "linen",
    "manteau": "coat", "laine": "wool", "maillot": "swimwear swimsuit", "basket": "sneaker shoe",
    "escarpin": "pump shoe", "talon": "heel shoe", "chapeau": "hat", "paille": "straw", "echarpe": "scarf",
    "cachemire": "cashmere", "cravate": "necktie tie", "soie": "silk", "lunett": "glasses",
    "soleil": "sunglasses sun", "polarise": "polarized", "sac": "bag handbag", "main": "hand",
    "portefeuille": "wallet", "collier": "necklace", "pendentif": "pendant necklace", "argent": "silver",
    "bague": "ring", "solitaire": "ring diamond", "boucl": "earring", "oreill": "earring", "creol": "hoop earring",
    "montre": "watch", "automatique": "automatic", "dos": "back", "ordinateur": "computer laptop",
    "valise": "suitcase luggage", "cabine": "cabin", "smartphone": "phone mobile smartphone",
    "debloque": "unlocked", "coque": "case", "iphone": "phone", "chargeur": "charger", "secteur": "wall",
    "portable": "portable laptop", "tablette": "tablet chocolate", "tactile": "touchscreen",
    "casque": "headphones helmet", "audio": "audio", "bruit": "noise", "reduction": "canceling",
    "enceinte": "speaker", "clavier": "keyboard", "mecanique": "mechanical", "imprimante": "printer",
    "laser": "laser", "cle": "usb flash drive", "usb": "usb", "routeur": "router wireless", "televiseur": "television",
    "videoprojecteur": "projector", "pil": "battery batteries", "alcalin": "alkaline", "appareil": "camera",
    "hybride": "camera mirrorless", "objectif": "lens", "jumell": "binoculars", "perceuse": "drill",
    "visseuse": "drill driver", "marteau": "hammer", "charpentier": "hammer", "tournevi": "screwdriver",
    "isole": "insulated", "molette": "wrench adjustable", "metre": "tape measure", "ruban": "tape",
    "vis": "screws", "bois": "wood", "peinture": "paint", "acrylique": "acrylic", "echelle": "ladder",
    "telescopique": "telescoping", "scie": "saw", "sauteuse": "jigsaw", "mitigeur": "faucet",
    "cuisine": "kitchen", "wc": "toilet", "suspendu": "wall hung", "tondeuse": "mower lawn",
    "gazon": "lawn", "tuyau": "hose", "arrosage": "garden watering", "arrosoir": "watering can",
    "parapluie": "umbrella", "pliant": "folding", "velo": "bicycle bike", "electrique": "electric",
    "ville": "city", "urbain": "urban", "ballon": "ball", "football": "soccer", "raquette": "racquet",
    "tenni": "tennis", "halter": "weights dumbbell", "canne": "rod cane", "peche": "fishing",
    "couchage": "sleeping bag", "momie": "mummy", "tente": "tent",
    "dome": "dome", "skis": "skis", "ski": "skis", "piste": "downhill", "lunettes": "goggles",
    "natation": "swim", "jeu": "game", "construction": "building", "briqu": "blocks bricks",
    "societe": "board game", "familial": "family", "puzzle": "puzzle jigsaw", "piece": "pieces",
    "poupee": "doll", "mannequin": "doll", "peluche": "plush stuffed", "ours": "bear", "voiture": "car",
    "telecommandee": "remote control", "petite": "toy", "trampoline": "trampoline", "jardin": "garden",
    "guitare": "guitar", "acoustique": "acoustic", "violon": "violin", "piano": "piano",
    "numerique": "digital", "roman": "book novel", "policier": "crime", "poche": "paperback",
    "edition": "book", "vinyle": "record vinyl", "album": "album", "parfum": "perfume", "eau": "water",
    "shampoing": "shampoo", "savon": "soap bar", "rouge": "red", "levr": "lip lipstick", "creme": "cream",
    "solaire": "sunscreen", "spf": "sunscreen", "brosse": "brush toothbrush", "dent": "tooth",
    "seche": "dryer", "cheveu": "hair", "ionique": "ionic", "vitamine": "vitamin supplement",
    "deodorant": "deodorant", "bille": "roll", "biere": "beer", "blonde": "lager", "whisky": "whiskey",
    "malt": "malt", "cafe": "coffee", "grain": "beans", "the": "tea", "vert": "green", "vrac": "loose",
    "chocolat": "chocolate", "noir": "dark black", "huile": "oil cooking", "olive": "olive",
    "pat": "pasta", "spaghetti": "pasta spaghetti", "miel": "honey", "fromage": "cheese", "comte": "cheese",
    "biscuit": "cookies", "sabl": "shortbread cookies", "minerale": "mineral water",
    "amand": "almonds nuts", "decortique": "shelled", "poussette": "stroller", "compacte": "compact",
    "biberon": "baby bottle", "colique": "colic", "sucette": "pacifier", "physiologique": "baby",
    "porte": "carrier", "croquett": "dog food dry", "chien": "dog", "adulte": "adult", "patee": "cat food wet",
    "chat": "cat", "sachet": "pouches", "panier": "bed basket", "jouet": "toy", "plum": "feather",
    "litiere": "litter", "agglomerante": "clumping", "graines": "seed", "oiseau": "bird", "ciel": "wild",
    "carnet": "notebook", "note": "notes", "agrafeuse": "stapler", "stylo": "pen", "plume": "fountain",
    "pneu": "tire tyre", "ete": "summer", "moto": "motorcycle", "integral": "full face",
}
_FR_EN_STEMS = {stem(k): v for k, v in FR_EN.items()}
GENERIC = {"accessory", "accessorie", "supply", "supplie", "equipment", "part", "item", "product", "set", "not",
           "from", "pack", "count", "piece", "size", "new", "one", "two", "free", "all", "per", "inch", "cm", "mm",
           "litre", "kg", "ml", "lot", "box", "with", "large", "small", "mini", "plus", "pro", "type", "style"}


@lru_cache(maxsize=1)
def google_knowledge() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]], dict[str, float]]:
    """For each Google path: the words of all its sub-categories' names, and their head words (a name's last
    word: "Wine" in "Wine", "racks" in "Wine Racks"); and each word's weight (rarer, heavier)."""
    paths = [line.split(" - ", 1)[1] for line in GOOGLE_TAXONOMY_FILE.read_text(encoding="utf-8").splitlines()
             if " - " in line and not line.startswith("#")]
    under: dict[str, set[str]] = {p: set() for p in paths}
    heads: dict[str, set[str]] = {p: set() for p in paths}
    counts: Counter[str] = Counter()
    for path in paths:
        own = words(path.split(SEPARATOR)[-1])
        counts.update(set(own))
        for ancestor in ancestors(path):
            under[ancestor] |= set(own)
            heads[ancestor] |= set(own[-1:])
    weight = {w: math.log(1 + len(paths) / n) for w, n in counts.items()}
    return ({p: frozenset(w) for p, w in under.items()}, {p: frozenset(w) for p, w in heads.items()}, weight)


def _english(word: str) -> list[str]:
    translated = _FR_EN_STEMS.get(word)
    return [stem(w) for w in translated.split()] if translated else [word]


def product_terms(prompt: str) -> tuple[dict[str, float], bool]:
    """The product's words in English (French ones through ``FR_EN``) with how much each says what the product
    is: the head noun most (a French name's first word, an English name's last before a comma), the other words
    of the name next, the description's least; and whether the text looked French."""
    block = prompt.split("Product:", 1)[-1]
    fields = [m.group(1) for m in re.finditer(r"^- [^:\n]+: (.+)$", block, re.M)]
    if not fields:
        return {}, False
    name, description = fields[0], " ".join(fields[1:])
    french = bool(re.search(r"[éèàùçœ]|\b(?:le|la|les|des|du|pour|avec|en|de)\b", f"{name} {description}".lower()))
    roles: dict[str, float] = {}
    head_words = words(name.split(",")[0])
    head = (head_words[:1] if french else head_words[-1:]) if head_words else []
    for role, text_words in ((1.0, words(description)), (1.5, words(name)), (3.0, head)):
        for word in text_words:
            for term in _english(word):
                if term not in GENERIC:
                    roles[term] = max(roles.get(term, 0.0), role)
    return roles, french


class ClassifierResponder:
    """Classification steps as described above; everything else as ``SmallModelResponder``."""

    def __init__(self, *, honour_format: bool = True, time_scale: float = 1.0, odds_scale: float = 1.0,
                 none_when_absent: float = 0.6) -> None:
        self.honour_format = honour_format
        self.none_when_absent = none_when_absent
        self.time_scale = time_scale
        self.odds_scale = odds_scale
        self.others = SmallModelResponder(odds_scale)
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        self._read("\n".join(str(m.get("content", "")) for m in messages))
        # The product and its options are in the last user message (earlier ones may be few-shot examples).
        prompt = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
        enum = _category_enum(body.get("format"))
        if enum is None:
            return self.others(body)
        key = hashlib.sha256(f"{body.get('model')}|{prompt}".encode()).hexdigest()
        with self._lock:
            attempt = self._seen.get(key, 0)
            self._seen[key] = attempt + 1
        rng = random.Random(f"{key}:{attempt}")
        choice = self.choose(prompt, enum, rng, MODEL_ODDS.get(str(body.get("model")), 1.0))
        if self.honour_format:
            return json.dumps({"category": choice}, ensure_ascii=False)
        return _with_habits(choice, rng, self.odds_scale)

    def _read(self, prompt: str) -> None:
        """Reading the prompt takes time on a small CPU model (about 4 characters a token)."""
        if self.time_scale > 0:
            time.sleep(len(prompt) / 4 / PROMPT_TOKENS_PER_SECOND * self.time_scale)

    def choose(self, prompt: str, enum: list[str], rng: random.Random, skill: float = 1.0) -> str:
        roles, french = product_terms(prompt)
        options = [o for o in enum if o not in SENTINELS]
        listed = _likely(prompt)
        if listed:  # the v2 single request: the model picks among the categories in front of it
            options = [o for o in options if o in listed] or options[:25]
        sentinel = next((s for s in SENTINELS if s in enum), None)
        node = _current(prompt)
        full = {o: (f"{node}{SEPARATOR}{o}" if node and not o.startswith(node) else o) for o in options}
        ranked = self.lexical(roles, options, full, rng)
        truth = known_products().get(_name(prompt))
        if truth is None:  # a product the model does not recognise: it goes by the words
            return self._by_words(ranked, options, sentinel, node, french, rng)
        if truth == "":  # only codes: nothing to recognise
            return sentinel if sentinel and self.says_so(rng) else rng.choice(options or enum)
        if node and truth == node:
            right = sentinel or ""
        else:
            on_path = [o for o in options if truth == full[o] or truth.startswith(full[o] + SEPARATOR)]
            right = max(on_path, key=lambda o: full[o].count(SEPARATOR)) if on_path else ""
        if not right:  # the right category is not on offer: a shortlist without it, or a wrong turn before
            if sentinel and rng.random() < self.none_when_absent:
                return sentinel
            return ranked[0] if ranked else (sentinel or enum[0])
        if right != sentinel and node and sentinel and rng.random() < EARLY_STOP * self.odds_scale:
            return sentinel
        if rng.random() < self.mistake(len(options), french) * skill:
            wrong = [o for o in ranked if o != right] or [o for o in options if o != right]
            if wrong:
                return wrong[0]
        return right

    def says_so(self, rng: random.Random) -> bool:
        """Whether a model with nothing to go by says so (rather than picking at random)."""
        return rng.random() < 1 - (1 - NO_MATCH_SAYS_SO) * self.odds_scale

    def mistake(self, offered: int, french: bool) -> float:
        return (MISTAKE + MISTAKE_PER_OPTION * offered + (MISTAKE_FRENCH if french else 0)) * self.odds_scale

    def lexical(self, roles: dict[str, float], options: list[str], full: dict[str, str],
                rng: random.Random) -> list[str]:
        """The options by how many of the product's words they (and what lies under them) share, best first."""
        under, heads, weight = google_knowledge()
        scored = []
        for option in options:
            own = words(option.split(SEPARATOR)[-1])
            below = under.get(full[option], frozenset(words(option)))
            below_heads = heads.get(full[option], frozenset(own[-1:]))
            score = 0.0
            for term, role in roles.items():
                match = (4.0 if term in own[-1:] else 2.0 if term in own else 1.5 if term in below_heads
                         else 0.5 if term in below else 0.0)
                score += min(weight.get(term, 0.0), 6.0) * role * match
            if score > 0:  # words of its name the product does not have make an option less likely; on a tie,
                score -= 1.0 * len(set(own) - set(roles))  # the more specific option wins: a model names what it sees
                scored.append((round(score, 6), option.count(SEPARATOR), rng.random(), option))
        scored.sort(reverse=True)
        return [option for *_rest, option in scored]

    def _by_words(self, ranked: list[str], options: list[str], sentinel: str | None, node: str, french: bool,
                  rng: random.Random) -> str:
        if not ranked:
            if sentinel and self.says_so(rng):
                return sentinel
            return rng.choice(options) if options else (sentinel or "")
        if sentinel == "None of these" and node and rng.random() < EARLY_STOP * self.odds_scale:
            return sentinel
        if len(ranked) > 1 and rng.random() < self.mistake(len(options), french):
            return ranked[1]
        return ranked[0]


@lru_cache(maxsize=1)
def known_products() -> dict[str, str]:
    """The products the model "recognises": the evaluation set's, by name, with their true category ("" for
    those with only codes). The stand-in cannot read; this is its understanding, so that the benchmark measures
    what a route does to a model of a given skill (errors compounding over steps, long lists, a shortlist
    missing the right category), not the stand-in's reading."""
    known: dict[str, str] = {}
    if CLASSIFICATION_EVAL_FILE.is_file():
        for line in CLASSIFICATION_EVAL_FILE.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                known[" ".join(record["name"].split())] = record.get("expected_path") or ""
    return known


def _name(prompt: str) -> str:
    found = re.search(r"^- Product name: (.+)$", prompt.split("Product:", 1)[-1], re.M)
    return " ".join(found.group(1).split()) if found else ""


def _category_enum(fmt: Any) -> list[str] | None:
    if not isinstance(fmt, dict):
        return None
    properties = fmt.get("properties") or {}
    category = properties.get("category")
    if set(properties) == {"category"} and isinstance(category, dict) and isinstance(category.get("enum"), list):
        return [str(c) for c in category["enum"]]
    return None


def _current(prompt: str) -> str:
    found = re.search(r"Options under «(.+?)»:", prompt)
    return found.group(1) if found else ""


def _likely(prompt: str) -> set[str]:
    if "Likely categories" not in prompt:
        return set()
    listing = prompt.split("Likely categories", 1)[1].split("\n\n", 1)[0]
    return {line.strip() for line in listing.splitlines()[1:] if line.strip()}


def _with_habits(choice: str, rng: random.Random, scale: float) -> str:
    """The answer of a model whose grammar was dropped on the way: the small-model habits around the choice."""
    value = choice
    if rng.random() < 0.20 * scale:
        value = value.split(SEPARATOR)[-1]
    if rng.random() < 0.15 * scale:
        value = value.lower().replace(" > ", ">")
    if rng.random() < 0.06 * scale:
        value = "Maison > Cuisine > Électroménager"
    if rng.random() < 0.15 * scale:
        return f"La catégorie la plus adaptée est : **{value}**."
    answer = json.dumps({"category": value}, ensure_ascii=False)
    return f"```json\n{answer}\n```" if rng.random() < 0.10 * scale else answer


def apply(state: StandinState, *, honour_format: bool = True, time_scale: float = 1.0) -> None:
    """The small models' host, with classification answered as above."""
    state.models = {r["name"]: r for r in MODELS}
    state.config.tokens_per_second = TOKENS_PER_SECOND
    state.responder = ClassifierResponder(honour_format=honour_format, time_scale=time_scale)
