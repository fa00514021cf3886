"""A taxonomy as an object the classification task is given, and the matching of a model's answer to it.

Classification never reads a module-level list: ``run_task`` is handed a ``Taxonomy`` (the shipped Google
subset by default), so the full Google taxonomy, a company's own, or the children of one node when
classifying level by level are the same object built from other lines.

An answer is matched by exact path, then ignoring case, accents, spacing and separators, then by its last
segment ("Robes" -> the one path ending in "Robes"). A last segment shared by several paths is refused as
ambiguous rather than guessed; what does not match gets the closest paths for the retry's feedback.

A taxonomy is also a tree (``children``, ``parent``, ``depth``) for the level-by-level route, carries its
ids (Google's numeric ids, a company's codes) and, when a translation is loaded, each category's label in
that language (``translated``); the model always answers with the taxonomy's own paths.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rapidfuzz import fuzz, process

SEPARATOR = " > "
_ID_LINE_RE = re.compile(r"^(\d+)\s+-\s+(.+)$")  # Google's "with ids" file: "1604 - Apparel & Accessories > ..."
_TAB_ID_LINE_RE = re.compile(r"^([^\t]{1,64})\t(.+)$")  # the data directory's own form: "<id>\t<path>"
_VERSION_RE = re.compile(r"^#\s*Google_Product_Taxonomy_Version:\s*(\S+)", re.IGNORECASE)
_SEPARATORS_RE = re.compile(r"\s*(?:>|›|»|/|\\|→)\s*")
_SPACES_RE = re.compile(r"\s+")
_WORD_RE = re.compile(r"\w{3,}")


def fold(text: str) -> str:
    """Lower case, accents off, separators and spaces normalised: the key of the tolerant match.

    >>> fold("  Vêtements>ROBES  /  Robes de  soirée ")
    'vetements > robes > robes de soiree'
    """
    if text.isascii():
        plain = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    plain = _SEPARATORS_RE.sub(SEPARATOR, plain.strip())
    return _SPACES_RE.sub(" ", plain).strip(" >")


def parent_of(path: str) -> str:
    """ "" for a top level.

    >>> parent_of("A > B > C"), parent_of("A")
    ('A > B', '')
    """
    head, sep, _leaf = path.rpartition(SEPARATOR)
    return head if sep else ""


def depth(path: str) -> int:
    """1 for a top level; 0 for the root ("")."""
    return path.count(SEPARATOR) + 1 if path else 0


def ancestors(path: str) -> list[str]:
    """Every category from the top level down to ``path`` itself.

    >>> ancestors("A > B > C")
    ['A', 'A > B', 'A > B > C']
    """
    parts = path.split(SEPARATOR)
    return [SEPARATOR.join(parts[: i + 1]) for i in range(len(parts))]


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
    version: str = field(default="", compare=False)
    title: str = field(default="", compare=False)
    labels: dict[str, str] = field(default_factory=dict, compare=False)  # path -> translated path
    label_language: str = field(default="", compare=False)
    language: str = field(default="en", compare=False)  # the language of the taxonomy's own names

    def __post_init__(self) -> None:
        folded: dict[str, str] = {}
        leaves: dict[str, list[str]] = {}
        children: dict[str, list[str]] = {}
        keys: list[tuple[str, frozenset[str]]] = []
        for path in self.paths:
            key = fold(path)
            leaf = key.rpartition(SEPARATOR)[2]
            folded.setdefault(key, path)
            leaves.setdefault(leaf, []).append(path)
            children.setdefault(parent_of(path), []).append(path)
            keys.append((leaf, frozenset(_WORD_RE.findall(key))))
        object.__setattr__(self, "_children", {k: tuple(v) for k, v in children.items()})
        object.__setattr__(self, "_by_id", {v: k for k, v in self.ids.items()})
        object.__setattr__(self, "_folded", folded)
        object.__setattr__(self, "_leaves", leaves)
        object.__setattr__(self, "_exact", frozenset(self.paths))
        object.__setattr__(self, "_keys", tuple(keys))

    @classmethod
    def from_lines(cls, lines: Iterable[str], *, name: str = "taxonomy", version: str = "",
                   title: str = "", language: str = "en") -> Taxonomy:
        """One path per line; '#' comments and blank lines skipped; ``id - path`` (Google) and ``id<TAB>path``
        lines keep their id; Google's version header line sets ``version``."""
        paths: list[str] = []
        ids: dict[str, str] = {}
        seen: set[str] = set()
        for line in lines:
            text = line.strip("\r\n").strip(" ")
            header = _VERSION_RE.match(text)
            if header and not version:
                version = header.group(1)
            if not text.strip() or text.startswith("#"):
                continue
            with_id = _TAB_ID_LINE_RE.match(text) or _ID_LINE_RE.match(text)
            if with_id:
                ids[with_id.group(2).strip()] = with_id.group(1).strip()
                text = with_id.group(2)
            text = text.strip()
            if text not in seen:
                seen.add(text)
                paths.append(text)
        return cls(tuple(paths), ids, name, version=version, title=title or name, language=language)

    @classmethod
    def from_file(cls, path: Path, *, name: str = "", title: str = "", version: str = "",
                  language: str = "en") -> Taxonomy:
        return cls.from_lines(path.read_text(encoding="utf-8").splitlines(), name=name or path.name, title=title,
                              version=version, language=language)

    @property
    def ref(self) -> str:
        """What results and jobs name it by: ``google@2021-09-21``, ``acme@v3``."""
        return f"{self.name}@{self.version}" if self.version else self.name

    def with_labels(self, labels: dict[str, str], language: str) -> Taxonomy:
        """The same taxonomy showing ``labels`` (path -> translated path) in ``language``."""
        return replace(self, labels=dict(labels), label_language=language)

    # ---- the tree ----------------------------------------------------------------------------------
    def children(self, path: str = "") -> tuple[str, ...]:
        """The categories directly under ``path`` ("" for the top levels), in the file's order."""
        return self._children.get(path, ())  # type: ignore[attr-defined]

    def is_leaf(self, path: str) -> bool:
        return not self.children(path)

    def id_of(self, path: str) -> str:
        return self.ids.get(path, "")

    def path_of_id(self, category_id: str) -> str | None:
        return self._by_id.get(str(category_id).strip())  # type: ignore[attr-defined]

    def translated(self, path: str) -> str:
        """The path in the loaded translation's language, or the path itself when there is none for it."""
        return self.labels.get(path, path)

    def max_depth(self) -> int:
        return max((depth(p) for p in self.paths), default=0)

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
        words = set(_WORD_RE.findall(key))
        keys: tuple[tuple[str, frozenset[str]], ...] = self._keys  # type: ignore[attr-defined]
        # rapidfuzz's Indel ratio (difflib's ratio, in C++) of the last segments: 5,595 paths in about a ms.
        similarity = process.cdist([last], [leaf for leaf, _words in keys], scorer=fuzz.ratio, workers=1)[0]
        scored: list[tuple[float, int, str]] = []
        for order, (path, (_leaf, path_words)) in enumerate(zip(self.paths, keys, strict=True)):
            shared = len(words & path_words) if words else 0
            score = float(similarity[order]) / 100 + 0.3 * shared / max(len(words), 1) + \
                (0.2 if path in preferred else 0.0)
            scored.append((-score, order, path))
        scored.sort()
        return tuple(path for _score, _order, path in scored[:n])
