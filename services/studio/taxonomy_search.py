"""Lexical pre-selection of categories: a small BM25 over the taxonomy's paths, and the test of whether a product
says anything at all.

Why BM25 written here rather than a library: the documents are 5,595 short paths (a company's taxonomy, at
most 100,000), the index is a dict of postings built in a fraction of a second and kept on the taxonomy, and
what matters is the IDF weighting ("Accessories" is in hundreds of paths, "Kettles" in two), which plain
fuzzy ratios lack; ``rank_bm25`` is unmaintained and ``bm25s`` brings scipy for what is forty lines here.
Words are folded (case, accents), crudely stemmed (plural endings) and, for French product text, a few
common nouns are given their English taxonomy words (``FR_EN``): a lexical shortlist cannot do much more
across languages, which is why the default route lets the model read the product level by level instead.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from dataclasses import dataclass

from services.studio.taxonomy import SEPARATOR, Taxonomy, fold

K1, B = 1.2, 0.75
_WORD_RE = re.compile(r"[a-z]{2,}")
STOPWORDS = frozenset({
    "and", "the", "for", "with", "of", "in", "on", "to", "or", "by", "de", "la", "le", "les", "des", "du", "et",
    "en", "pour", "avec", "au", "aux", "un", "une", "sur", "sans", "par", "other", "misc",
})
# Words that say nothing about what a product is: a name made only of these (and codes) is not enough.
UNINFORMATIVE = STOPWORDS | frozenset({
    "ref", "reference", "sku", "ean", "gtin", "code", "article", "art", "item", "produit", "product", "lot",
    "modele", "model", "no", "num", "numero", "number", "nouveau", "new", "divers", "n", "pcs", "pc", "x",
})
# A few French nouns a catalogue uses often, with the English words of Google's taxonomy.
FR_EN: dict[str, str] = {
    "robe": "dress", "jupe": "skirt", "chaussure": "shoe", "sac": "handbag bag", "veste": "jacket coat",
    "manteau": "coat", "pantalon": "pants", "chemise": "shirt", "bijou": "jewelry", "collier": "necklace",
    "bague": "ring", "montre": "watch", "lunette": "eyewear sunglasses", "chien": "dog", "chat": "cat",
    "bouilloire": "kettle", "cafetiere": "coffee maker", "grille": "toaster", "poele": "pan skillet",
    "casserole": "pot saucepan", "couteau": "knife", "lampe": "lamp", "tapis": "rug", "rideau": "curtain",
    "coussin": "pillow cushion", "drap": "sheet", "couette": "duvet comforter", "serviette": "towel",
    "velo": "bicycle", "tente": "tent", "ballon": "ball", "jouet": "toy", "livre": "book", "stylo": "pen",
    "perceuse": "drill", "marteau": "hammer", "tournevis": "screwdriver", "vis": "screw", "peinture": "paint",
    "telephone": "phone", "ordinateur": "computer", "ecouteur": "headphone earbud", "clavier": "keyboard",
    "souris": "mice mouse", "ecran": "monitor", "imprimante": "printer", "cable": "cable", "chargeur": "charger",
    "parfum": "perfume fragrance", "shampoing": "shampoo", "savon": "soap", "creme": "cream lotion",
    "vin": "wine", "cafe": "coffee", "chocolat": "chocolate", "biere": "beer",
    "bebe": "baby", "poussette": "stroller", "siege": "seat", "chaise": "chair", "table": "table",
    "canape": "sofa", "lit": "bed", "matelas": "mattress", "armoire": "wardrobe", "etagere": "shelf shelving",
}


def words(text: str) -> list[str]:
    """Folded, stemmed words without stop words.

    >>> words("Bouilloires électriques en inox")
    ['bouilloire', 'electrique', 'inox']
    """
    return [stem(w) for w in _WORD_RE.findall(fold(text).replace(SEPARATOR, " ")) if w not in STOPWORDS]


def stem(word: str) -> str:
    """Plural endings off, the same way for a word and its plural.

    >>> [stem(w) for w in ("dresses", "dress", "shoes", "batteries", "watches", "bijoux", "lamps")]
    ['dress', 'dress', 'shoe', 'battery', 'watch', 'bijou', 'lamp']
    """
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("ss"):
        return word
    if word.endswith("s") or (word.endswith("x") and len(word) > 4):
        return word[:-1]
    return word


_FR_EN_STEMS = {stem(k): v for k, v in FR_EN.items()}


def informative(text: str) -> bool:
    """Whether a product's text says what it is: a word of three letters or more that is not a code, a number or
    an identifier's label ("SKU", "réf.").

    >>> informative("SKU-48213 / REF 9921-B"), informative("Bouilloire 1,7 L")
    (False, True)
    """
    for token in re.findall(r"[\w'-]+", fold(text)):
        if any(ch.isdigit() for ch in token) or len(token) < 3:
            continue
        if token.strip("'-") in UNINFORMATIVE or not re.search(r"[aeiouy]", token):
            continue
        return True
    return False


def query_terms(text: str) -> list[str]:
    """The product's words plus, for French ones the table knows, their English taxonomy words."""
    terms = words(text)
    extra = [stem(w) for t in terms for w in _FR_EN_STEMS.get(t, "").split()]
    return terms + extra


@dataclass
class Index:
    """BM25 postings over a taxonomy's paths; a path's last segment counts twice (it names the category)."""

    postings: dict[str, list[tuple[int, int]]]
    lengths: list[int]
    average: float
    count: int

    @classmethod
    def build(cls, taxonomy: Taxonomy) -> Index:
        postings: dict[str, list[tuple[int, int]]] = {}
        lengths = []
        for number, path in enumerate(taxonomy.paths):
            head, _sep, leaf = path.rpartition(SEPARATOR)
            counts = Counter(words(head) + 2 * words(leaf))
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                postings.setdefault(term, []).append((number, tf))
        return cls(postings, lengths, sum(lengths) / max(len(lengths), 1), len(lengths))

    def scores(self, terms: list[str]) -> dict[int, float]:
        totals: dict[int, float] = {}
        for term in set(terms):
            docs = self.postings.get(term)
            if not docs:
                continue
            idf = math.log(1 + (self.count - len(docs) + 0.5) / (len(docs) + 0.5))
            for number, tf in docs:
                norm = tf * (K1 + 1) / (tf + K1 * (1 - B + B * self.lengths[number] / self.average))
                totals[number] = totals.get(number, 0.0) + idf * norm
        return totals


def index_of(taxonomy: Taxonomy) -> Index:
    """Built once per taxonomy object and kept on it."""
    index = getattr(taxonomy, "_bm25", None)
    if index is None:
        index = Index.build(taxonomy)
        object.__setattr__(taxonomy, "_bm25", index)
    return index


def shortlist(taxonomy: Taxonomy, text: str, limit: int = 30, *, within: tuple[str, ...] | None = None) -> list[str]:
    """The ``limit`` paths that share the most weighted words with the product (those of ``within`` only,
    when given), best first; empty when nothing is shared."""
    scores = index_of(taxonomy).scores(query_terms(text))
    if within is not None:
        allowed = set(within)
        scores = {n: s for n, s in scores.items() if taxonomy.paths[n] in allowed}
    best = heapq.nlargest(limit, scores.items(), key=lambda item: (item[1], -item[0]))
    return [taxonomy.paths[number] for number, _score in best]
