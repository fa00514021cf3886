"""Deterministic repairs between a model's answer and the checks, one set per task, each change recorded.

Small models wrap a good answer in habits: "Voici une description :", « quotes », **bold**, a third sentence,
"N'hésitez pas…", a line of hashtags, code fences around JSON, trailing commas, "dresses" for a full taxonomy
path. A repair removes exactly those, says what it changed (``Repair.changes``, stored on the row), and never
invents content: the repaired text must still pass every check. What cannot be repaired (a wrong language,
an answer that is only a preamble, one sentence over the limit, HTML, a category matching two entries) is left
to the checks or refused here with ``OutputRejected`` and the feedback the retry sends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from services.errors import OutputRejected
from services.studio.sentences import count_sentences, keep_sentences
from services.studio.tasks import TaskParams
from services.studio.taxonomy import Taxonomy, fold


@dataclass(frozen=True)
class Repair:
    """The repaired answer and, in words, each change made (empty: the answer was used as it came)."""

    text: str
    changes: tuple[str, ...] = ()


def _quote(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return "«" + (line if len(line) <= limit else line[: limit - 1] + "…") + "»"


# ---- text (descriptions and translations) -------------------------------------------------------------

_FENCE_RE = re.compile(r"^\s*```[\w-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_INTRO_WORDS = (r"voici|voilà|voila|here\s+is|here's|here\s+are|below\s+is|ci-dessous|description|proposition|"
                r"suggestion|réponse|reponse|answer|output|résultat|resultat|traduction|translation|texte|text")
_INTRO_LINE_RE = re.compile(rf"^\s*(?:[*_#>\s]*)(?:{_INTRO_WORDS})\b[^\n]{{0,160}}?:[*_\s]*(?:\n|$)", re.IGNORECASE)
_INTRO_INLINE_RE = re.compile(rf"^\s*(?:[*_]*)(?:{_INTRO_WORDS})\b[^\n:.!?]{{0,120}}:[*_]*\s+", re.IGNORECASE)
_COURTESY_RE = re.compile(
    r"^\s*(?:bien\s+s[ûu]r|certainement|avec\s+plaisir|d'accord|d’accord|absolument|parfait|sure|certainly|"
    r"of\s+course|absolutely|okay|ok|great)\b[^.!?\n]{0,80}[.!?]+\s*", re.IGNORECASE)
_CLOSING_RE = re.compile(
    r"(?:^|(?<=[.!?…»\"”)\n])\s*)(?:[*_]*)(?:n['’]h[ée]sitez|souhaitez-vous|voulez-vous|j['’]esp[èe]re|dites-moi|"
    r"si\s+vous\s+(?:souhaitez|voulez|avez)|je\s+peux|je\s+reste|let\s+me\s+know|feel\s+free|i\s+hope|"
    r"would\s+you\s+like|do\s+you\s+want|i\s+can\s+also|don't\s+hesitate|note\s*:|remarque\s*:|\(?\s*\d+\s+"
    r"(?:caract[èe]res|characters)|\(?\s*(?:nombre\s+de\s+caract[èe]res|character\s+count))", re.IGNORECASE)
_HASHTAG_LINE_RE = re.compile(r"^\s*(?:#[\w\-À-ÿ]+[\s,]*)+$", re.MULTILINE)
_TRAILING_HASHTAGS_RE = re.compile(r"(?:\s+#[\w\-À-ÿ]+)+\s*$")
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_BOLD_RE = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.DOTALL)
_ITALIC_RE = re.compile(r"(?<![\w*])([*_])(?=\S)([^*_\n]+?)(?<=\S)\1(?![\w*])")
_TITLE_LINE_RE = re.compile(r"^\s*(?:#{1,6}\s+[^\n]{1,80}|\*\*[^\n*]{1,80}\*\*|__[^\n_]{1,80}__)\s*\n")
_QUOTE_PAIRS = {"«": "»", "“": "”", "„": "“", '"': '"', "'": "'", "‘": "’", "‹": "›", "`": "`", "”": "”"}


def _strip_quotes(text: str) -> str:
    """Surrounding quotes of every kind, repeatedly («"x"»), and a lone opener whose closer was cut off."""
    while len(text) >= 2:
        opener = text[0]
        closer = _QUOTE_PAIRS.get(opener)
        if closer is None:
            break
        if text.endswith(closer) and text.count(closer) - (opener == closer) >= 1:
            inner = text[1:-1].strip()
            if opener == closer and opener in inner:
                break  # 'a' and 'b': not one quoted answer
            text = inner
        elif closer not in text[1:]:
            text = text[1:].lstrip()
        else:
            break
    return text


def clean_text(raw: str) -> Repair:
    """Every text habit removed; a change is recorded only when it altered the answer."""
    text = raw.replace("\r\n", "\n").strip()
    changes: list[str] = []

    def step(name: str, new: str) -> None:
        nonlocal text
        new = new.strip()
        if new != text:
            changes.append(name)
            text = new

    fence = _FENCE_RE.match(text)
    if fence:
        step("removed code fences", fence.group(1))
    for _ in range(3):  # a preamble may sit before a title, quotes before a preamble...
        before = text
        courtesy = _COURTESY_RE.match(text)
        if courtesy and text[courtesy.end():].strip():
            step(f"removed preamble {_quote(courtesy.group(0))}", text[courtesy.end():])
        intro = _INTRO_LINE_RE.match(text) or _INTRO_INLINE_RE.match(text)
        if intro:
            step(f"removed preamble {_quote(intro.group(0))}", text[intro.end():])
        title = _TITLE_LINE_RE.match(text)
        if title and text[title.end():].strip():
            step(f"removed title line {_quote(title.group(0))}", text[title.end():])
        step("removed surrounding quotes", _strip_quotes(text))
        if text == before:
            break
    step("removed hashtags", _TRAILING_HASHTAGS_RE.sub("", _HASHTAG_LINE_RE.sub("", text)))
    closing = _CLOSING_RE.search(text)
    if closing:
        step(f"removed closing remark {_quote(text[closing.start():])}", text[: closing.start()])
    step("removed Markdown emphasis", _ITALIC_RE.sub(r"\2", _BOLD_RE.sub(r"\2", text)))
    step("removed Markdown headings", _HEADING_RE.sub("", text))
    step("removed surrounding quotes", _strip_quotes(text))
    # One paragraph: line breaks become spaces (not a change worth recording).
    text = re.sub(r"[ \t]*\n\s*", " ", text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return Repair(text, tuple(dict.fromkeys(changes)))


def repair_description(raw: str, params: TaskParams, *, truncated: bool = False) -> Repair:
    """Clean, then keep whole leading sentences within the sentence and character limits."""
    cleaned = clean_text(raw)
    text, changes = cleaned.text, list(cleaned.changes)
    if not text:
        if raw.strip():
            raise OutputRejected(
                "the answer is only a preamble or a closing remark, with no description",
                "Your answer had no description, only an introduction or a closing remark. Answer with the "
                "description itself and nothing else.")
        return Repair("", ())
    total = count_sentences(text)
    if total > params.max_sentences or len(text) > params.max_chars or truncated:
        kept_text, kept = keep_sentences(text, params.max_sentences, params.max_chars, drop_unfinished=truncated)
        if kept_text and kept_text != text:
            if truncated and kept == total - 1 and total <= params.max_sentences:
                changes.append("dropped an unfinished last sentence (the answer hit the token limit)")
            else:
                changes.append(f"kept {kept} of {total} sentences ({len(kept_text)} characters)")
            text = kept_text
    return Repair(text, tuple(changes))


# ---- JSON (extraction, column mapping, classification) ------------------------------------------------


def remove_trailing_commas(text: str) -> str:
    """Commas right before ``}`` or ``]``, outside strings.

    >>> remove_trailing_commas('{"a": [1, 2,], "b": "x,}",}')
    '{"a": [1, 2], "b": "x,}"}'
    """
    out: list[str] = []
    in_string = escaped = False
    pending_comma: int | None = None
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
            pending_comma = None
        elif char == ",":
            pending_comma = len(out)
        elif char in "}]" and pending_comma is not None:
            del out[pending_comma]
            pending_comma = None
        elif not char.isspace():
            pending_comma = None
        out.append(char)
    return "".join(out)


def extract_json_object(raw: str) -> tuple[Any, tuple[str, ...]]:
    """The first JSON object in an answer, with what had to be removed to read it; ``None`` if there is none."""
    changes: list[str] = []
    text = raw.strip()
    fence = _FENCE_RE.match(text) or re.search(r"```(?:json)?\s*\n(.*?)\n\s*```", text, re.DOTALL)
    if fence:
        changes.append("removed code fences")
        if (text[: fence.start()] + text[fence.end():]).strip():
            changes.append("removed text around the JSON")
        text = fence.group(1).strip()
    start = text.find("{")
    if start < 0:
        return None, tuple(changes)
    decoder = json.JSONDecoder()
    body = text[start:]
    for fixed, attempt in ((False, body), (True, remove_trailing_commas(body))):
        try:
            value, end = decoder.raw_decode(attempt)
        except ValueError:
            continue
        if fixed:
            changes.append("removed trailing commas")
        if (start > 0 or attempt[end:].strip()) and "removed text around the JSON" not in changes:
            changes.append("removed text around the JSON")
        return value, tuple(changes)
    return None, tuple(changes)


def repair_json(raw: str) -> Repair:
    """Extraction: the JSON object alone (fences, surrounding text and trailing commas removed)."""
    value, changes = extract_json_object(raw)
    if value is None or not changes:
        return Repair(raw.strip(), ())
    return Repair(json.dumps(value, ensure_ascii=False), changes)


def _category_text(raw: str) -> tuple[str, list[str]]:
    value, changes = extract_json_object(raw)
    if isinstance(value, dict) and isinstance(value.get("category"), str):
        return value["category"], list(changes)
    found = re.search(r'"category"\s*:\s*"([^"\n]+)"', raw)
    if found:
        return found.group(1), ["read the category from broken JSON"]
    cleaned = clean_text(raw)
    changes = [c for c in cleaned.changes if not c.startswith("removed surrounding quotes")]
    text = cleaned.text
    prose = re.match(r"^[^:\n]{0,80}\b(?:cat[ée]gor(?:ie|y)|classification)\b[^:\n]{0,60}:\s*", text, re.IGNORECASE)
    if prose and text[prose.end():].strip():
        changes.append(f"removed the sentence around the category {_quote(prose.group(0))}")
        text = text[prose.end():]
    text = _strip_quotes(text.strip().rstrip(".").strip())
    return text, changes


def repair_category(raw: str, taxonomy: Taxonomy, *, shortlist: tuple[str, ...] = ()) -> Repair:
    """The answer mapped to exactly one path of ``taxonomy``, or ``OutputRejected`` with the closest paths."""
    answer, changes = _category_text(raw)
    if not answer.strip():
        raise OutputRejected("the answer has no category",
                             'Answer with JSON: {"category": "<a full path copied from the list>"}.')
    match = taxonomy.match(answer)
    if match.path is None and match.how == "ambiguous":
        options = "\n".join(f"- {p}" for p in match.candidates)
        raise OutputRejected(
            f"{_quote(answer, 80)} matches {len(match.candidates)} categories equally: "
            + "; ".join(match.candidates),
            f'"{answer[:80]}" matches several categories. Choose exactly one of these, copied exactly:\n{options}')
    if match.path is None:
        closest = taxonomy.closest(answer, 5, pool=shortlist)
        options = "\n".join(f"- {p}" for p in closest)
        raise OutputRejected(
            f"{_quote(answer, 80)} is not a category of the taxonomy",
            f'"{answer[:80]}" is not in the taxonomy. Choose one of these {len(closest)} closest, copied '
            f"exactly:\n{options}")
    if match.how != "exact":
        how = {"folded": "ignoring case, accents and spacing", "last segment": "by its last segment"}[match.how]
        changes.append(f"matched {_quote(answer, 60)} to {_quote(match.path, 90)} {how}")
    return Repair(json.dumps({"category": match.path}, ensure_ascii=False), tuple(changes))


def repair_mapping(raw: str, headers: list[str]) -> Repair:
    """Column mapping: JSON read as for extraction, then each value matched to a real header ignoring case,
    spaces and accents (only when exactly one header matches)."""
    value, json_changes = extract_json_object(raw)
    if not isinstance(value, dict):
        return Repair(raw.strip(), ())
    changes = list(json_changes)
    by_key: dict[str, list[str]] = {}
    for header in headers:
        by_key.setdefault(re.sub(r"[\s_\-.]+", "", fold(header)), []).append(header)
    fixed: dict[str, Any] = {}
    for target, column in value.items():
        if isinstance(column, str) and column and column not in headers:
            same = by_key.get(re.sub(r"[\s_\-.]+", "", fold(column)), [])
            if len(same) == 1:
                changes.append(f"{target}: {_quote(column, 40)} -> {_quote(same[0], 40)}")
                column = same[0]
        fixed[str(target)] = column
    if not changes:
        return Repair(raw.strip(), ())
    return Repair(json.dumps(fixed, ensure_ascii=False), tuple(changes))


def repair_answer(task: str, raw: str, params: TaskParams, *, taxonomy: Taxonomy | None = None,
                  headers: list[str] | None = None, truncated: bool = False,
                  shortlist: tuple[str, ...] = ()) -> Repair:
    """The one entry point: the task's repair, or the answer untouched for a task without one."""
    if task == "description":
        return repair_description(raw, params, truncated=truncated)
    if task == "translation":
        return clean_text(raw)
    if task == "extraction":
        return repair_json(raw)
    if task == "classification":
        if taxonomy is None:
            raise ValueError("classification needs the taxonomy to repair against")
        return repair_category(raw, taxonomy, shortlist=shortlist)
    if task == "column_mapping":
        return repair_mapping(raw, list(headers or []))
    return Repair(raw, ())
