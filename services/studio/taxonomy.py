"""A taxonomy as an object the classification task is given, and the matching of a model's answer to it.

Classification never reads a module-level list: ``run_task`` is handed a ``Taxonomy`` (the shipped Google
subset by default), so the full Google taxonomy, a company's own, or the children of one node when
classifying level by level are the same object built from other lines.

An answer is matched by exact path, then ignoring case, accents, spacing and separators, then by its last
segment ("Robes" -> the one path ending in "Robes"). A last segment shared by several paths is refused as
ambiguous rather than guessed; what does not match gets the closest paths for the retry's feedback.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SEPARATOR = " > "
_ID_LINE_RE = re.compile(r"^(\d+)\s+-\s+(.+)$")  # Google's "with ids" file: "1604 - Apparel & Accessories > ..."
_SEPARATORS_RE = re.compile(r"\s*(?:>|›|»|/|\\|→)\s*")


def fold(text: str) -> str:
    """Lower case, accents off, separators and spaces normalised: the key of the tolerant match.

    >>> fold("  Vêtements>ROBES  /  Robes de  soirée ")
    'vetements > robes > robes de soiree'
    """
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    plain = _SEPARATORS_RE.sub(SEPARATOR, plain.strip())
    return re.sub(r"\s+", " ", plain).strip(" >")


@dataclass(frozen=True)
class Match:
    """How an answer maps to the taxonomy: ``path`` when it does; ``how`` says which rule matched."""

    path: str | None
    how: str  # "exact", "folded", "last segment", "ambiguous", "none"
    candidates: tuple[str, ...] = ()  # for "ambiguous": the paths it could be; for "none": the closest


@dataclass(frozen=True)
class Taxonomy:
    """Full category paths (``A > B > C``), with optional ids (Google's numeric ids)."""

    paths: tuple[str, ...]
    ids: dict[str, str] = field(default_factory=dict, compare=False)
    name: str = "taxonomy"

    def __post_init__(self) -> None:
        folded: dict[str, str] = {}
        leaves: dict[str, list[str]] = {}
        for path in self.paths:
            folded.setdefault(fold(path), path)
            leaves.setdefault(fold(path.split(SEPARATOR)[-1]), []).append(path)
        object.__setattr__(self, "_folded", folded)
        object.__setattr__(self, "_leaves", leaves)
        object.__setattr__(self, "_exact", frozenset(self.paths))
        object.__setattr__(self, "_keys", tuple(
            (fold(p).split(SEPARATOR)[-1], frozenset(re.findall(r"\w{3,}", fold(p)))) for p in self.paths))

    @classmethod
    def from_lines(cls, lines: Iterable[str], *, name: str = "taxonomy") -> Taxonomy:
        """One path per line; '#' comments and blank lines skipped; ``id - path`` lines keep their id."""
        paths: list[str] = []
        ids: dict[str, str] = {}
        seen: set[str] = set()
        for line in lines:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            with_id = _ID_LINE_RE.match(text)
            if with_id:
                ids[with_id.group(2).strip()] = with_id.group(1)
                text = with_id.group(2).strip()
            if text not in seen:
                seen.add(text)
                paths.append(text)
        return cls(tuple(paths), ids, name)

    @classmethod
    def from_file(cls, path: Path) -> Taxonomy:
        return cls.from_lines(path.read_text(encoding="utf-8").splitlines(), name=path.name)

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, path: object) -> bool:
        return path in self._exact  # type: ignore[attr-defined]

    def match(self, answer: str) -> Match:
        """Exact, then case/accent-insensitive, then unique last segment; never a guess between equals.

        >>> t = Taxonomy(("Vêtements", "Vêtements > Robes", "Vêtements > Robes > Robes de soirée",
        ...               "Enfants > Robes", "Vêtements > Jupes"))
        >>> t.match("Vêtements > Robes").how, t.match("vetements>robes").path, t.match("Jupes").path
        ('exact', 'Vêtements > Robes', 'Vêtements > Jupes')
        >>> t.match("Robes").how, t.match("Robes").candidates
        ('ambiguous', ('Vêtements > Robes', 'Enfants > Robes'))
        """
        text = answer.strip()
        if text in self:
            return Match(text, "exact")
        key = fold(text)
        if not key:
            return Match(None, "none", self.closest(text))
        found = self._folded.get(key)  # type: ignore[attr-defined]
        if found is not None:
            return Match(found, "folded")
        last = key.split(SEPARATOR)[-1]
        same_leaf = self._leaves.get(last, [])  # type: ignore[attr-defined]
        if len(same_leaf) == 1:
            return Match(same_leaf[0], "last segment")
        if len(same_leaf) > 1:
            # The answer's own parents may settle it ("Robes > Robes de soirée" with two "Robes de soirée").
            parents = key.split(SEPARATOR)[:-1]
            narrowed = [p for p in same_leaf if parents and fold(p).endswith(SEPARATOR.join([*parents, last]))]
            if len(narrowed) == 1:
                return Match(narrowed[0], "last segment")
            return Match(None, "ambiguous", tuple(same_leaf[:8]))
        return Match(None, "none", self.closest(text))

    def closest(self, answer: str, n: int = 5, *, pool: Iterable[str] = ()) -> tuple[str, ...]:
        """The ``n`` paths nearest the answer, for a retry's feedback: its last segment against each path's,
        plus the words they share; paths in ``pool`` (the shortlist the prompt offered) come first on a tie.

        >>> Taxonomy(("A > Dresses", "A > Skirts", "B > Dog Beds")).closest("Dress", 2)
        ('A > Dresses', 'B > Dog Beds')
        """
        key = fold(answer)
        preferred = set(pool)
        if not key:
            return tuple([p for p in self.paths if p in preferred][:n] or self.paths[:n])
        last = key.split(SEPARATOR)[-1]
        words = set(re.findall(r"\w{3,}", key))
        matcher = difflib.SequenceMatcher(autojunk=False)
        matcher.set_seq2(last)
        scored: list[tuple[float, int, str]] = []
        keys: tuple[tuple[str, frozenset[str]], ...] = self._keys  # type: ignore[attr-defined]
        for order, (path, (leaf, path_words)) in enumerate(zip(self.paths, keys, strict=True)):
            matcher.set_seq1(leaf)
            shared = words & path_words
            score = matcher.ratio() + 0.3 * len(shared) / max(len(words), 1) + (0.2 if path in preferred else 0.0)
            scored.append((-score, order, path))
        scored.sort()
        return tuple(path for _score, _order, path in scored[:n])
