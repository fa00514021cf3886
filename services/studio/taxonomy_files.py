"""Reading an uploaded taxonomy file and refusing a bad one, with every problem named by its line.

Three shapes are read, told apart by content: one path per line with ``>`` separators (Google's ``id - path``
lines too); CSV ``id,path`` (Amazon browse trees are often exported so); CSV ``id,parent_id,name`` (a tree
by parent pointers, where a cycle is possible). Before anything is parsed, the size is bounded: bytes and
lines are counted on the raw upload, so a 200,000-line file is refused in milliseconds.

Refused, all problems listed at once (the first ``MAX_PROBLEMS_SHOWN``): an empty segment or a trailing
separator (``A > B >``), a duplicate path (also one differing only by case, accents or spacing: the answer
matching could not tell them apart), an id used twice, a path whose parent is not in the file (an orphan),
a path that passes twice through the same category or parent pointers that loop (a cycle), labels too long
or with control characters, a tree too deep.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from services import format as fmt
from services.errors import InvalidInput
from services.studio.taxonomy import SEPARATOR, fold, parent_of

MAX_BYTES = 16 * 1024 * 1024
MAX_LINES = 100_000
MAX_DEPTH = 12
MAX_LABEL_CHARS = 200
MAX_ID_CHARS = 64
MAX_PROBLEMS_SHOWN = 12
_GOOGLE_LINE_RE = re.compile(r"^(\d+)\s+-\s+(.+)$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
PATH_HEADERS = ("path", "category", "categorie", "catégorie", "full_path", "browse_path", "taxonomy")
ID_HEADERS = ("id", "category_id", "node_id", "browse_node_id", "code")
PARENT_HEADERS = ("parent_id", "parent", "parent_node_id", "parent_code")
NAME_HEADERS = ("name", "label", "libelle", "libellé", "node_name", "title")


@dataclass(frozen=True)
class ParsedTaxonomy:
    """An upload that passed every check: its paths in order, their ids (may be empty), how it was read."""

    paths: tuple[str, ...]
    ids: dict[str, str] = field(default_factory=dict)
    shape: str = "paths"  # "paths", "google", "csv id,path", "csv id,parent_id,name"

    def lines(self) -> list[str]:
        """The data directory's form: ``id<TAB>path`` (or the path alone when there are no ids)."""
        return [f"{self.ids[p]}\t{p}" if p in self.ids else p for p in self.paths]


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, line: int, text: str) -> None:
        self.items.append(f"line {line}: {text}")

    def raise_if_any(self, what: str) -> None:
        if not self.items:
            return
        shown = [item.rstrip(".") for item in self.items[:MAX_PROBLEMS_SHOWN]]
        more = len(self.items) - len(shown)
        raise InvalidInput(f"{what} was refused: {fmt.count(len(self.items), 'problem')}. " + "; ".join(shown)
                           + (f"; and {more} more." if more else "."))


def _quote(text: str, limit: int = 80) -> str:
    return "«" + (text if len(text) <= limit else text[: limit - 1] + "…") + "»"


def check_size(data: bytes, what: str = "The taxonomy") -> None:
    """Bytes and lines, counted before any parsing."""
    if not data.strip():
        raise InvalidInput(f"{what} file is empty.")
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"{what} file is {fmt.size(len(data))}; at most {fmt.size(MAX_BYTES)} is accepted.")
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if lines > MAX_LINES:
        raise InvalidInput(f"{what} file has {lines:,} lines; at most {MAX_LINES:,} categories are accepted. "
                           "Upload the branches the catalogue uses.")


def decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _split_path(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(">")]


def _clean_path(raw: str, line: int, problems: _Problems) -> str | None:
    """``A > B > C`` with single spaces around separators, or None (with the problem recorded)."""
    text = raw.strip()
    parts = _split_path(text)
    if text.endswith(">"):
        problems.add(line, f"{_quote(text)} ends with a separator; remove the trailing '>'.")
        return None
    if text.startswith(">"):
        problems.add(line, f"{_quote(text)} starts with a separator.")
        return None
    if any(not part for part in parts):
        problems.add(line, f"{_quote(text)} has an empty category between two separators.")
        return None
    if len(parts) > MAX_DEPTH:
        problems.add(line, f"{_quote(text)} is {len(parts)} levels deep; at most {MAX_DEPTH}.")
        return None
    for part in parts:
        if len(part) > MAX_LABEL_CHARS:
            problems.add(line, f"the category {_quote(part, 40)} is {len(part)} characters; at most "
                         f"{MAX_LABEL_CHARS}.")
            return None
        if _CONTROL_RE.search(part):
            problems.add(line, f"{_quote(text)} contains a control character.")
            return None
    folded = [fold(p) for p in parts]
    for index, key in enumerate(folded):
        if key in folded[:index]:
            problems.add(line, f"{_quote(text)} passes twice through {_quote(parts[index], 40)}: a cycle in the "
                         "exported tree.")
            return None
    return SEPARATOR.join(parts)


def _rows(text: str) -> tuple[list[str], list[list[str]]] | None:
    """The CSV header and rows when the file is CSV with a header this module knows, else None."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        dialect = csv.Sniffer().sniff(first, delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        return None
    header = [h.strip().lower().lstrip("\ufeff") for h in next(csv.reader([first], delimiter=delimiter))]
    if not any(h in ID_HEADERS for h in header):
        return None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next(reader, None)
    return header, list(reader)


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    return next((header.index(n) for n in names if n in header), None)


def parse_taxonomy(data: bytes, source_name: str = "taxonomy.txt", *, minimum: int = 2) -> ParsedTaxonomy:
    """Every check, all problems at once; ``InvalidInput`` says what is wrong and on which lines."""
    check_size(data)
    text = decode(data)
    rows = _rows(text)
    if rows is not None:
        header, body = rows
        id_col, path_col = _column(header, ID_HEADERS), _column(header, PATH_HEADERS)
        parent_col, name_col = _column(header, PARENT_HEADERS), _column(header, NAME_HEADERS)
        if id_col is not None and path_col is not None:
            entries = [(n + 2, row[id_col] if id_col < len(row) else "", row[path_col] if path_col < len(row)
                        else "") for n, row in enumerate(body) if any(c.strip() for c in row)]
            return _from_entries(entries, "csv id,path", require_ids=True, minimum=minimum)
        if id_col is not None and parent_col is not None and name_col is not None:
            return _from_parents(body, id_col, parent_col, name_col, minimum)
        raise InvalidInput(f"{source_name}: a CSV taxonomy needs the columns id,path or id,parent_id,name "
                           f"(found: {', '.join(header)}).")
    entries = []
    shape = "paths"
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        google = _GOOGLE_LINE_RE.match(stripped)
        if google:
            shape = "google"
            entries.append((number, google.group(1), google.group(2)))
        else:
            entries.append((number, "", stripped))
    return _from_entries(entries, shape, require_ids=False, minimum=minimum)


def _from_entries(entries: list[tuple[int, str, str]], shape: str, *, require_ids: bool,
                  minimum: int = 2) -> ParsedTaxonomy:
    problems = _Problems()
    paths: list[str] = []
    ids: dict[str, str] = {}
    line_of: dict[str, int] = {}
    folded_line: dict[str, tuple[int, str]] = {}
    id_line: dict[str, tuple[int, str]] = {}
    for line, raw_id, raw_path in entries:
        path = _clean_path(raw_path, line, problems)
        if path is None:
            continue
        category_id = raw_id.strip()
        if require_ids and not category_id:
            problems.add(line, f"{_quote(path)} has no id.")
            continue
        if len(category_id) > MAX_ID_CHARS or _CONTROL_RE.search(category_id) or "\t" in category_id:
            problems.add(line, f"the id {_quote(category_id, 40)} is not a usable id (at most {MAX_ID_CHARS} "
                         "characters, no tabs or control characters).")
            continue
        if path in line_of:
            problems.add(line, f"{_quote(path)} is a duplicate of line {line_of[path]}.")
            continue
        key = fold(path)
        if key in folded_line:
            first, other = folded_line[key]
            problems.add(line, f"{_quote(path)} differs from line {first} ({_quote(other)}) only by case, accents "
                         "or spacing; keep one.")
            continue
        if category_id:
            if category_id in id_line:
                first, other = id_line[category_id]
                problems.add(line, f"the id {category_id} is already used on line {first} for {_quote(other)}; "
                             "ids must be unique.")
                continue
            id_line[category_id] = (line, path)
            ids[path] = category_id
        line_of[path] = line
        folded_line[key] = (line, path)
        paths.append(path)
    for path in paths:
        parent = parent_of(path)
        if parent and parent not in line_of:
            problems.add(line_of[path], f"{_quote(path)} has no parent: {_quote(parent)} is not in the file "
                         "(an orphan). Add the parent's own line.")
    problems.raise_if_any("The taxonomy")
    if len(paths) < minimum:
        raise InvalidInput(f"The taxonomy has fewer than {minimum} categories; nothing to choose from.")
    return ParsedTaxonomy(tuple(paths), ids if ids else {}, shape)


def _from_parents(body: list[list[str]], id_col: int, parent_col: int, name_col: int,
                  minimum: int = 2) -> ParsedTaxonomy:
    """``id,parent_id,name``: the paths are built by following parents; loops and missing parents refused."""
    problems = _Problems()
    nodes: dict[str, tuple[int, str, str]] = {}
    order: list[str] = []
    for number, row in enumerate(body, start=2):
        if not any(c.strip() for c in row):
            continue
        cells = [*row, "", "", ""]
        node_id, parent_id, name = cells[id_col].strip(), cells[parent_col].strip(), cells[name_col].strip()
        if not node_id or not name:
            problems.add(number, "a row needs both an id and a name.")
            continue
        if ">" in name:
            problems.add(number, f"the name {_quote(name)} contains '>', the path separator.")
            continue
        if node_id in nodes:
            problems.add(number, f"the id {node_id} is already used on line {nodes[node_id][0]}; ids must be unique.")
            continue
        nodes[node_id] = (number, parent_id, name)
        order.append(node_id)
    entries: list[tuple[int, str, str]] = []
    for node_id in order:
        line, parent_id, name = nodes[node_id]
        chain, names, current = [node_id], [name], parent_id
        broken = False
        while current:
            if current in chain:
                problems.add(line, f"the parents of id {node_id} loop back to id {current} (a cycle: "
                             + " -> ".join([*chain, current][:8]) + ").")
                broken = True
                break
            if current not in nodes:
                problems.add(line, f"id {node_id} ({_quote(name, 40)}) names the parent {current}, which is not in "
                             "the file (an orphan).")
                broken = True
                break
            chain.append(current)
            names.append(nodes[current][2])
            current = nodes[current][1]
            if len(chain) > MAX_DEPTH:
                problems.add(line, f"id {node_id} is more than {MAX_DEPTH} levels deep.")
                broken = True
                break
        if not broken:
            entries.append((line, node_id, SEPARATOR.join(reversed(names))))
    problems.raise_if_any("The taxonomy")
    return _from_entries(entries, "csv id,parent_id,name", require_ids=True, minimum=minimum)


def _translation_entries(data: bytes) -> ParsedTaxonomy:
    """A translation may be partial (a branch, the top levels): its parents need not all be there."""
    text = decode(data)
    ids: dict[str, str] = {}
    paths: list[str] = []
    problems = _Problems()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        found = _GOOGLE_LINE_RE.match(stripped) or re.match(r"^([^\t,]{1,64})[\t,](.+)$", stripped)
        if not found:
            problems.add(number, f"{_quote(stripped)} is not «id - path», «id<TAB>path» or «id,path».")
            continue
        path = _clean_path(found.group(2), number, problems)
        if path is not None and found.group(1).strip().lower() not in ID_HEADERS:
            ids[path] = found.group(1).strip()
            paths.append(path)
    problems.raise_if_any("The translation")
    return ParsedTaxonomy(tuple(paths), ids, "translation")


def parse_translation(data: bytes, ids: dict[str, str]) -> tuple[dict[str, str], int]:
    """A translation of a taxonomy that has ids: ``id - path`` or ``id<TAB>path`` or CSV ``id,path`` in another
    language, matched by id. Returns the labels (original path -> translated path) and how many ids of the
    file are unknown to the taxonomy (ignored). Paths must keep the original's depth."""
    if not ids:
        raise InvalidInput("Only a taxonomy with ids can have a translation (the lines are matched by id).")
    check_size(data, "The translation")
    parsed = _translation_entries(data)
    by_id = {v: k for k, v in ids.items()}
    labels: dict[str, str] = {}
    unknown = 0
    problems = _Problems()
    for path in parsed.paths:
        original = by_id.get(parsed.ids.get(path, ""))
        if original is None:
            unknown += 1
            continue
        if path.count(SEPARATOR) != original.count(SEPARATOR):
            problems.items.append(f"id {parsed.ids[path]}: {_quote(path)} is not as deep as {_quote(original)}")
            continue
        labels[original] = path
    problems.raise_if_any("The translation")
    if not labels:
        raise InvalidInput("No line of the translation matches an id of the taxonomy.")
    return labels, unknown
