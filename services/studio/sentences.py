"""Where sentences end in catalogue French and English, so a description can be counted and trimmed safely.

A period ends a sentence only when whitespace (or the end) follows it and the word before it is not an
abbreviation: "1,7 L", "env. 30 cm", "n° 5", "1.5 kg", "p. ex." and "Mme Durand" stay inside their sentence.
French typography's space before "!" and "?" and closing quotes or brackets after the mark are understood.
The spans let a repair keep whole sentences only: never a cut mid-word or mid-sentence.
"""

from __future__ import annotations

import re

# Abbreviations (lower case, without their period) that end no sentence when lower case or a digit follows.
ABBREVIATIONS = frozenset({
    "env", "ex", "cf", "réf", "ref", "dim", "approx", "vol", "p", "pp", "art", "fig", "éd", "ed", "incl",
    "max", "min", "mme", "mlle", "mr", "mrs", "ms", "dr", "st", "ste", "vs", "no", "nº", "n", "coll", "tél",
    "tel", "long", "larg", "haut", "diam", "qté", "qte", "ca", "e.g", "i.e", "etc", "resp", "av", "bd", "m",
})
# Of those, the ones a name follows: never a sentence end, even before a capital ("Mme Durand", "St. Tropez").
TITLES = frozenset({"mme", "mlle", "mr", "mrs", "ms", "dr", "st", "ste"})

_MARK_RE = re.compile(r"(?:\.\.\.|[.!?…])+[\"'»”’)\]]*(?=\s|$)")
_WORD_BEFORE_RE = re.compile(r"([\wº°.]+)$")


def _is_boundary(text: str, mark_start: int, mark_end: int) -> bool:
    mark = text[mark_start:mark_end]
    if not mark.startswith("."):
        return True  # ! ? … always end a sentence
    if mark.startswith("..."):
        return True
    before = _WORD_BEFORE_RE.search(text[:mark_start])
    raw_word = before.group(1) if before else ""
    word = raw_word.lower()
    rest = text[mark_end:].lstrip()
    if not rest:
        return True
    if before is not None and re.search(r"\d\s*$", text[: before.start()]):
        return not rest[:1].islower()  # a unit after a number: "1,7 L. Elle" ends, "30 min. de cuisson" goes on
    if word in TITLES or (len(raw_word) == 1 and raw_word.isupper()):
        return False  # "Mme Durand", "J. Crew"
    if word in ABBREVIATIONS or len(word) == 1 or re.fullmatch(r"(\w\.)+\w", word):
        return rest[:1].isupper()  # "env. 30 cm", "p. ex. en" go on; "etc. Elle" ends
    return True


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence, ends including the closing mark; whitespace between them excluded.

    >>> text = "Bouilloire 1,7 L, env. 25 cm. Parfaite !"
    >>> [text[a:b] for a, b in sentence_spans(text)]
    ['Bouilloire 1,7 L, env. 25 cm.', 'Parfaite !']
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _MARK_RE.finditer(text):
        if not _is_boundary(text, match.start(), match.end()):
            continue
        if text[start:match.end()].strip(" \t\n.!?…"):
            lead = len(text[start:]) - len(text[start:].lstrip())
            spans.append((start + lead, match.end()))
        start = match.end()
    tail = text[start:]
    if tail.strip():
        lead = len(tail) - len(tail.lstrip())
        spans.append((start + lead, len(text.rstrip())))
    return spans


def count_sentences(text: str) -> int:
    """
    >>> count_sentences("Une robe rouge. Parfaite pour le soir!")
    2
    >>> count_sentences("Sans point final")
    1
    >>> count_sentences("Capacité 1,7 L, n° 5, env. 1.5 kg, p. ex. en cuisine.")
    1
    """
    return len(sentence_spans(text))


_END_RE = re.compile(r"(?:\.\.\.|[.!?…])+[\"'»”’)\]]*$")


def ends_with_sentence_mark(text: str) -> bool:
    """Whether the text ends on a closing mark.

    >>> ends_with_sentence_mark("Une robe « rouge ».»"), ends_with_sentence_mark("Une robe pour vos soi")
    (True, False)
    """
    return bool(_END_RE.search(text.rstrip()))


def keep_sentences(text: str, max_sentences: int, max_chars: int, *, drop_unfinished: bool = False) -> tuple[str, int]:
    """The longest run of whole leading sentences within both limits, and how many were kept.

    ``drop_unfinished``: the answer was cut (by the token limit), so a last piece without its closing mark is
    an unfinished sentence and is never kept. Returns ("", 0) when even the first sentence does not fit.

    >>> keep_sentences("Une robe noire. Elle est fluide. Elle brille.", 2, 300)
    ('Une robe noire. Elle est fluide.', 2)
    >>> keep_sentences("Une robe noire. Elle est flu", 2, 300, drop_unfinished=True)
    ('Une robe noire.', 1)
    """
    spans = sentence_spans(text)
    if drop_unfinished and spans and not ends_with_sentence_mark(text[: spans[-1][1]]):
        spans = spans[:-1]
    kept = 0
    for _start, end in spans[:max_sentences]:
        if end - spans[0][0] > max_chars:
            break
        kept += 1
    if not kept:
        return "", 0
    return text[spans[0][0]: spans[kept - 1][1]], kept
