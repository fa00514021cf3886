"""Every taxonomy a classification can use, versioned like templates: the shipped ones in ``catalog/taxonomies/``
and those an admin uploaded, in ``<data dir>/taxonomies/<name>.v<N>.txt``, never overwritten.

A taxonomy is named by its ref (``google@2021-09-21``, ``acme@v3``); jobs and results keep the ref, so a result
always says which version produced it, and a new upload never changes the meaning of an old one. A taxonomy
with ids may also have translations (``<ref>.labels.<lang>.v<N>.txt``, matched by id, versioned the same way):
the page then shows each category in that language, while the model keeps answering with the taxonomy's own
paths.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.errors import InvalidInput
from services.resources import GOOGLE_TAXONOMY_FILE, TAXONOMY_FILE
from services.studio.taxonomy import Taxonomy
from services.studio.taxonomy_files import parse_taxonomy, parse_translation


@dataclass(frozen=True)
class Shipped:
    name: str
    version: str
    title: str
    file: Path


SHIPPED: tuple[Shipped, ...] = (
    Shipped("google", "2021-09-21", "Google product taxonomy (5,595 categories, with ids)", GOOGLE_TAXONOMY_FILE),
    Shipped("google-apparel", "2013-07-15", "Google taxonomy, apparel subset (281 categories; before 2021-09-21 "
            "shipped)", TAXONOMY_FILE),
)
DEFAULT_REF = "google@2021-09-21"
LEGACY_REF = "google-apparel@2013-07-15"  # what a job stored before taxonomies were chosen used
GOOGLE_NAME = "google"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2}(?:-[A-Z]{2})?$")
_FILE_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]{1,39})\.v(?P<version>\d+)\.txt$")
_LABELS_RE = re.compile(r"^(?P<ref>.+)\.labels\.(?P<lang>[A-Za-z-]{2,5})\.v(?P<version>\d+)\.txt$")
MAX_TITLE_CHARS = 80


@dataclass(frozen=True)
class TaxonomyInfo:
    """What the page lists: a taxonomy's ref, title, size, where it came from, and its translations."""

    ref: str
    name: str
    version: str
    title: str
    source: str  # "shipped" or "uploaded"
    file: Path
    uploaded_by: str = ""
    uploaded_at: str = ""
    uploaded_from: str = ""
    languages: tuple[str, ...] = ()  # the translations loaded
    language: str = "en"  # the language of its own names

    @property
    def is_google(self) -> bool:
        return self.name == GOOGLE_NAME


def is_google(ref: str) -> bool:
    """Whether results in this taxonomy carry Google's ids (the ``google_product_category`` column)."""
    return ref.split("@", 1)[0] == GOOGLE_NAME


def category_columns(taxonomy: Taxonomy) -> tuple[str, ...]:
    """The columns a classification adds to a download: the category's id, its depth, the taxonomy it is in,
    and Google's own ``google_product_category`` (the id, what a Merchant Center feed takes) for Google's."""
    extra = ("ai_category_id", "ai_category_depth", "ai_taxonomy")
    return (*extra, "google_product_category") if is_google(taxonomy.ref) else extra


def category_values(taxonomy: Taxonomy, path: str) -> list[str | int]:
    """The values of ``category_columns`` for one row's path ("" for a row without a category)."""
    if not path or path not in taxonomy:
        return ["" for _ in category_columns(taxonomy)]
    values: list[str | int] = [taxonomy.id_of(path), path.count(" > ") + 1, taxonomy.ref]
    return [*values, taxonomy.id_of(path)] if is_google(taxonomy.ref) else values


def _header(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            key, sep, value = line[1:].partition(":")
            if sep:
                values[key.strip()] = value.strip()
    return values


class TaxonomyStore:
    """Shipped taxonomies plus the versions admins uploaded; loaded taxonomies are kept (the Google one takes
    about half a second to index)."""

    def __init__(self, data_dir: Path | None, shipped: tuple[Shipped, ...] = SHIPPED) -> None:
        """``data_dir`` None: the shipped taxonomies only (a batch manager built without the dashboard's store)."""
        self.data_dir = data_dir
        self.dir = (data_dir or Path("/nonexistent")) / "taxonomies"
        self.shipped = shipped
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str, int], Taxonomy] = {}

    # ---- listing ----------------------------------------------------------------------------------------
    def infos(self) -> list[TaxonomyInfo]:
        """Shipped first, then uploaded ones by name and version (newest version last)."""
        labels = self._label_files()
        found = [TaxonomyInfo(f"{s.name}@{s.version}", s.name, s.version, s.title, "shipped", s.file,
                              languages=tuple(sorted(labels.get(f"{s.name}@{s.version}", {}))))
                 for s in self.shipped]
        uploaded = []
        if self.dir.is_dir():
            for path in self.dir.glob("*.v*.txt"):
                match = _FILE_RE.match(path.name)
                if not match:
                    continue
                header = _header(path)
                ref = f"{match['name']}@v{match['version']}"
                uploaded.append(TaxonomyInfo(
                    ref, match["name"], f"v{match['version']}", header.get("title") or match["name"], "uploaded",
                    path, header.get("uploaded_by", ""), header.get("uploaded_at", ""), header.get("source", ""),
                    tuple(sorted(labels.get(ref, {}))), header.get("language", "en")))
        uploaded.sort(key=lambda i: (i.name, int(i.version[1:])))
        return found + uploaded

    def info(self, ref: str) -> TaxonomyInfo:
        ref = ref or LEGACY_REF
        for info in self.infos():
            if info.ref == ref:
                return info
        raise InvalidInput(f"No taxonomy {ref!r}; the taxonomies are "
                           f"{', '.join(i.ref for i in self.infos())}.")

    def _label_files(self) -> dict[str, dict[str, tuple[int, Path]]]:
        """ref -> language -> (newest version, file)."""
        found: dict[str, dict[str, tuple[int, Path]]] = {}
        if not self.dir.is_dir():
            return found
        for path in self.dir.glob("*.labels.*.txt"):
            match = _LABELS_RE.match(path.name)
            if not match:
                continue
            version = int(match["version"])
            current = found.setdefault(match["ref"], {}).get(match["lang"])
            if current is None or current[0] < version:
                found[match["ref"]][match["lang"]] = (version, path)
        return found

    # ---- loading ----------------------------------------------------------------------------------------
    def get(self, ref: str = "", language: str = "") -> Taxonomy:
        """The taxonomy named ``ref`` ("" is the subset jobs used before taxonomies were chosen), with its labels
        in ``language`` when a translation is loaded for it (else its own labels)."""
        info = self.info(ref)
        translation = self._label_files().get(info.ref, {}).get(language) if language else None
        key = (info.ref, language if translation else "", translation[0] if translation else 0)
        with self._lock:
            cached = self._loaded.get(key)
        if cached is not None:
            return cached
        base_key = (info.ref, "", 0)
        with self._lock:
            base = self._loaded.get(base_key)
        if base is None:
            base = Taxonomy.from_file(info.file, name=info.name, title=info.title, version=info.version,
                                      language=info.language)
            with self._lock:
                self._loaded[base_key] = base
        taxonomy = base
        if translation is not None:
            labels = {}
            translated = Taxonomy.from_file(translation[1])
            by_id = {v: k for k, v in base.ids.items()}
            for path, category_id in translated.ids.items():
                if category_id in by_id:
                    labels[by_id[category_id]] = path
            taxonomy = base.with_labels(labels, language)
            with self._lock:
                self._loaded[key] = taxonomy
        return taxonomy

    # ---- uploading --------------------------------------------------------------------------------------
    def upload(self, name: str, data: bytes, *, source_name: str, author: str, title: str = "",
               language: str = "en") -> TaxonomyInfo:
        """Check the file (``taxonomy_files``), then write it as the next version of ``name``."""
        name = name.strip().lower()
        if not _NAME_RE.match(name):
            raise InvalidInput("Name the taxonomy with 2 to 40 lower-case letters, digits or dashes (e.g. acme).")
        if self.data_dir is None:
            raise InvalidInput("This store has no data directory to keep uploaded taxonomies in.")
        if any(s.name == name for s in self.shipped):
            raise InvalidInput(f"{name!r} is a shipped taxonomy's name; choose another one.")
        title = " ".join(title.split())[:MAX_TITLE_CHARS] or name
        if not _LANGUAGE_RE.match(language):
            raise InvalidInput("Give the language of the category names as a code such as fr or en.")
        parsed = parse_taxonomy(data, source_name)
        header = {"title": title, "uploaded_by": author, "uploaded_at": datetime.now(UTC).isoformat(
            timespec="seconds"), "source": f"{os.path.basename(source_name)[:120]} ({parsed.shape}, "
                                           f"{len(parsed.paths):,} categories)", "language": language}
        with self._lock:
            versions = [int(m["version"]) for p in (self.dir.glob(f"{name}.v*.txt") if self.dir.is_dir() else [])
                        if (m := _FILE_RE.match(p.name)) and m["name"] == name]
            version = max(versions, default=0) + 1
            target = self.dir / f"{name}.v{version}.txt"
            text = "".join(f"# {k}: {' '.join(v.split())}\n" for k, v in header.items()) + "\n".join(parsed.lines())
            self._write_new(target, text + "\n")
        return self.info(f"{name}@v{version}")

    def upload_translation(self, ref: str, language: str, data: bytes, *, author: str) -> tuple[int, int]:
        """A translation of ``ref`` into ``language``, matched by id; returns (labels loaded, ids unknown)."""
        if not _LANGUAGE_RE.match(language):
            raise InvalidInput("Give the language as a code such as fr or fr-CA.")
        info = self.info(ref)
        base = self.get(info.ref)
        labels, unknown = parse_translation(data, base.ids)
        by_path = base.ids
        lines = [f"# translation of {info.ref} into {language}, uploaded by {' '.join(author.split())} on "
                 f"{datetime.now(UTC).isoformat(timespec='seconds')}"]
        lines += [f"{by_path[original]}\t{translated}" for original, translated in labels.items()]
        with self._lock:
            current = self._label_files().get(info.ref, {}).get(language)
            version = (current[0] if current else 0) + 1
            self._write_new(self.dir / f"{info.ref}.labels.{language}.v{version}.txt", "\n".join(lines) + "\n")
        return len(labels), unknown

    def _write_new(self, target: Path, text: str) -> None:
        """Write atomically; never replace an existing version (two admins uploading at once each get theirs)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temp.write_text(text, encoding="utf-8")
        try:
            os.link(temp, target)
        except FileExistsError:
            raise InvalidInput(f"{target.name} was uploaded by someone else meanwhile; upload again.") from None
        finally:
            temp.unlink(missing_ok=True)
