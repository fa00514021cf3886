"""Prompt decks: saved, shareable lists of prompts a presenter steps through, one click per prompt.

A deck is one JSON file (format ``ollama-dashboard-deck/1``). Decks shipped with the dashboard live in
``decks/`` of the repository; decks people save or upload live in ``<data dir>/decks/`` and win over
a shipped deck of the same name. Every prompt may carry a parameter preset (the seed's
classification / enrichment / creative) or exact options, so a deck fixes what is sent, and its
``version`` is recorded with every result.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.errors import InvalidInput
from services.ollama.options import PRESETS, GenerationOptions
from services.resources import DECKS_DIR
from services.stage.lineup import RoundSpec
from services.uploads import load_json_document

log = logging.getLogger(__name__)

DECK_FORMAT = "ollama-dashboard-deck/1"
REPO_DECKS = DECKS_DIR
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_PROMPTS = 100
MAX_PROMPT_CHARS = 50_000
MAX_DECK_BYTES = 1_000_000
OPTION_KEYS = ("temperature", "top_p", "top_k", "num_predict", "num_ctx", "repeat_penalty", "stop")


@dataclass(frozen=True)
class DeckPrompt:
    """One step of a deck."""

    id: str
    title: str
    prompt: str
    system: str = ""
    preset: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "title": self.title, "prompt": self.prompt}
        if self.system:
            out["system"] = self.system
        if self.preset:
            out["preset"] = self.preset
        if self.options:
            out["options"] = self.options
        if self.seed is not None:
            out["seed"] = self.seed
        return out


@dataclass(frozen=True)
class Deck:
    name: str
    title: str
    version: str
    prompts: tuple[DeckPrompt, ...]
    description: str = ""
    system: str = ""
    source: str = ""

    @property
    def label(self) -> str:
        return f"{self.title} (v{self.version}, {len(self.prompts)} prompts)"

    def to_json(self) -> str:
        document: dict[str, Any] = {"format": DECK_FORMAT, "name": self.name, "title": self.title,
                                    "version": self.version, "description": self.description}
        if self.system:
            document["system"] = self.system
        document["prompts"] = [p.as_dict() for p in self.prompts]
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def validate_deck_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput("A deck name is 1 to 64 lowercase letters, digits, '-' or '_' (e.g. product-tasks).")
    return name


def _text(value: Any, what: str, *, required: bool = False, limit: int = 2_000) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text.")
    if required and not value.strip():
        raise InvalidInput(f"{what} is missing.")
    if len(value) > limit:
        raise InvalidInput(f"{what} is too long ({len(value):,} characters, at most {limit:,}).")
    return value


def validate_options(raw: Any, what: str) -> dict[str, Any]:
    """Only the options the dashboard knows, with their types and ranges checked."""
    if raw in (None, {}):
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"{what}: options must be an object.")
    unknown = sorted(set(raw) - set(OPTION_KEYS) - {"seed"})
    if unknown:
        raise InvalidInput(f"{what}: unknown options {', '.join(unknown)} (allowed: {', '.join(OPTION_KEYS)}).")
    values = {k: v for k, v in raw.items() if k != "seed"}
    for key, value in values.items():
        if key == "stop":
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise InvalidInput(f"{what}: stop must be a list of strings.")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"{what}: {key} must be a number.")
        elif key in ("top_k", "num_predict", "num_ctx") and not float(value).is_integer():
            raise InvalidInput(f"{what}: {key} must be a whole number.")
    options = GenerationOptions(temperature=None, top_p=None, top_k=None)
    for key, value in values.items():
        setattr(options, key, int(value) if key in ("top_k", "num_predict", "num_ctx") else value)
    return options.validate().to_ollama()


def validate_seed(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidInput(f"{what}: seed must be a whole number from 0 to 2147483647.")
    return value


def parse_deck(text: str | bytes, *, source: str = "") -> Deck:
    """A deck from its JSON text; every problem is an ``InvalidInput`` that says where it is."""
    document = load_json_document(text, what="The deck file", max_bytes=MAX_DECK_BYTES)
    if not isinstance(document, dict):
        raise InvalidInput("A deck file must be a JSON object.")
    if document.get("format") != DECK_FORMAT:
        raise InvalidInput(f"This is not a prompt deck (expected \"format\": \"{DECK_FORMAT}\").")
    name = validate_deck_name(document.get("name", ""))
    raw_prompts = document.get("prompts")
    if not isinstance(raw_prompts, list) or not raw_prompts:
        raise InvalidInput("A deck needs a non-empty \"prompts\" list.")
    if len(raw_prompts) > MAX_PROMPTS:
        raise InvalidInput(f"A deck holds at most {MAX_PROMPTS} prompts (this one has {len(raw_prompts)}).")
    prompts: list[DeckPrompt] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_prompts, start=1):
        where = f"Prompt {index}"
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where} must be an object.")
        prompt_id = _text(raw.get("id") or f"p{index}", f"{where} id", limit=64)
        if prompt_id in seen:
            raise InvalidInput(f"{where}: the id {prompt_id!r} is used twice.")
        seen.add(prompt_id)
        preset = _text(raw.get("preset"), f"{where} preset", limit=32)
        if preset and preset not in PRESETS:
            raise InvalidInput(f"{where}: unknown preset {preset!r} (use {', '.join(PRESETS)}).")
        prompts.append(DeckPrompt(
            id=prompt_id,
            title=_text(raw.get("title") or prompt_id, f"{where} title", limit=200),
            prompt=_text(raw.get("prompt"), f"{where} text", required=True, limit=MAX_PROMPT_CHARS),
            system=_text(raw.get("system"), f"{where} system prompt", limit=MAX_PROMPT_CHARS),
            preset=preset,
            options=validate_options(raw.get("options"), where),
            seed=validate_seed(raw.get("seed"), where),
        ))
    return Deck(
        name=name,
        title=_text(document.get("title") or name, "The deck title", limit=200),
        version=_text(str(document.get("version") or "1"), "The deck version", limit=32),
        description=_text(document.get("description"), "The deck description", limit=2_000),
        system=_text(document.get("system"), "The deck system prompt", limit=MAX_PROMPT_CHARS),
        prompts=tuple(prompts),
        source=source,
    )


class DeckLibrary:
    """The shipped decks plus the data directory's; a broken file is reported, never fatal."""

    def __init__(self, data_dir: Path, repo_dir: Path = REPO_DECKS) -> None:
        self.dir = data_dir / "decks"
        self.repo_dir = repo_dir

    def _files(self) -> dict[str, Path]:
        files: dict[str, Path] = {}
        for folder in (self.repo_dir, self.dir):
            if folder.is_dir():
                for path in sorted(folder.glob("*.json")):
                    files[path.stem] = path
        return files

    def load_all(self) -> tuple[list[Deck], list[str]]:
        """Every readable deck (by title), and one message per file that could not be read."""
        decks, problems = [], []
        for stem, path in self._files().items():
            try:
                deck = parse_deck(path.read_bytes(), source=str(path))
            except InvalidInput as exc:
                problems.append(f"{path.name}: {exc}")
                continue
            except OSError as exc:
                problems.append(f"{path.name}: cannot be read ({exc.strerror}).")
                continue
            if deck.name != stem:
                problems.append(f"{path.name}: its name is {deck.name!r}; the file must be called {deck.name}.json.")
                continue
            decks.append(deck)
        return sorted(decks, key=lambda d: d.title.lower()), problems

    def get(self, name: str) -> Deck:
        path = self._files().get(validate_deck_name(name))
        if path is None:
            raise InvalidInput(f"No deck named {name!r}.")
        return parse_deck(path.read_bytes(), source=str(path))

    def save(self, deck: Deck) -> Path:
        """Write (or replace) a deck in the data directory, atomically."""
        validate_deck_name(deck.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{deck.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(deck.to_json(), encoding="utf-8")
        tmp.replace(path)
        log.info("deck %s v%s saved to %s", deck.name, deck.version, path)
        return path

    def import_file(self, data: bytes) -> Deck:
        deck = parse_deck(data)
        self.save(deck)
        return deck


def round_spec(prompt: DeckPrompt, *, deck: Deck | None, preset: str, seed: int, num_predict: int | None,
               system: str, warm_up: bool) -> RoundSpec:
    """What a deck prompt sends: its own options and seed when it has them, else the page's; its own
    system prompt, else the deck's, else the page's."""
    if prompt.options:
        options = dict(prompt.options)
    else:
        options = dict(PRESETS.get(prompt.preset or preset, {}))
        if num_predict:
            options["num_predict"] = int(num_predict)
    return RoundSpec(prompt=prompt.prompt, system=prompt.system or (deck.system if deck else "") or system,
                     options=options, seed=prompt.seed if prompt.seed is not None else seed, warm_up=warm_up)
