"""Versioned prompt templates: the shipped files in ``catalog/templates/`` (the current one per task, earlier
shipped versions under ``catalog/templates/history/``) plus every version staff saved from the page, in
``<data dir>/templates/<task>.v<N>.toml``, never overwriting an older one. Every result carries the
``task@vN`` reference of the template that produced it.

A template holds its prompt, its parameter preset, its stop sequences and one or two short examples of a
good answer (few-shot): each example is sent as a user turn (the prompt filled with the example's fields)
and an assistant turn (the answer), before the real product.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.errors import (
    InvalidInput,
)
from services.ollama.options import PRESETS, GenerationOptions
from services.resources import TEMPLATES_DIR
from services.studio.tasks import MAX_TEMPLATE_CHARS, PLACEHOLDER_RE, TASK_FIELDS, TASK_VARIABLES, TASKS

MAX_EXAMPLES = 4

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One good answer for the few-shot turns: the fields it answers, and for which output language."""

    inputs: dict[str, str]
    answer: str
    language: str = ""  # "" for any language

    def validate(self, task: str) -> Example:
        fields = {f.name for f in TASK_FIELDS.get(task, ())}
        unknown = sorted(set(self.inputs) - fields)
        if unknown:
            raise InvalidInput(f"An example uses unknown field(s) {', '.join(unknown)}; this task reads "
                               f"{', '.join(sorted(fields)) or 'no fields'}.")
        if not self.answer.strip():
            raise InvalidInput("An example has an empty answer.")
        if len(self.answer) > MAX_TEMPLATE_CHARS // 4 or sum(len(v) for v in self.inputs.values()) > MAX_TEMPLATE_CHARS:
            raise InvalidInput("An example is too long; keep examples short (they are sent with every request).")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Example:
        return cls(inputs={str(k): str(v) for k, v in dict(data.get("inputs") or {}).items()},
                   answer=str(data.get("answer", "")), language=str(data.get("language", "")))


@dataclass(frozen=True)
class Template:
    """One version of one task's prompt, with its parameter preset from the seed's table."""

    task: str
    version: int
    title: str
    preset: str
    system: str
    prompt: str
    num_predict: int | None = None
    max_attempts: int = 3
    source: str = "shipped"
    saved_at: str = ""
    saved_by: str = ""
    stop: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.task}@v{self.version}"

    def options(self, num_predict: int | None = None) -> dict[str, Any]:
        """The preset's sampling options, with ``num_predict`` (the template's, unless one is given) and stops."""
        chosen = num_predict if num_predict is not None else self.num_predict
        options = GenerationOptions.from_preset(self.preset, num_predict=chosen)
        options.stop = list(self.stop)
        return options.validate().to_ollama()

    def placeholders(self) -> set[str]:
        return set(PLACEHOLDER_RE.findall(self.system)) | set(PLACEHOLDER_RE.findall(self.prompt))

    def validate(self) -> Template:
        if self.task not in TASKS:
            raise InvalidInput(f"Unknown task {self.task!r}; the tasks are {', '.join(TASKS)}.")
        if self.preset not in PRESETS:
            raise InvalidInput(f"Unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}.")
        if not self.prompt.strip():
            raise InvalidInput("The prompt is empty.")
        for name, text in (("system prompt", self.system), ("prompt", self.prompt)):
            if len(text) > MAX_TEMPLATE_CHARS:
                raise InvalidInput(f"The {name} is {len(text):,} characters; at most {MAX_TEMPLATE_CHARS:,}.")
        allowed = allowed_placeholders(self.task)
        unknown = sorted(self.placeholders() - allowed)
        if unknown:
            raise InvalidInput(
                f"Unknown placeholder(s) {', '.join('{{' + u + '}}' for u in unknown)}; "
                f"this task knows {', '.join('{{' + a + '}}' for a in sorted(allowed))}."
            )
        if not 1 <= self.max_attempts <= 5:
            raise InvalidInput("max_attempts must be between 1 and 5.")
        if self.num_predict is not None and not 16 <= self.num_predict <= 8192:
            raise InvalidInput("num_predict must be between 16 and 8192 tokens.")
        if len(self.stop) > 16 or any(not s or len(s) > 200 for s in self.stop):
            raise InvalidInput("At most 16 stop sequences of 1 to 200 characters each.")
        if len(self.examples) > MAX_EXAMPLES:
            raise InvalidInput(f"At most {MAX_EXAMPLES} examples; one or two short ones work best.")
        for example in self.examples:
            example.validate(self.task)
        return self

    def to_toml(self) -> str:
        lines = [f"# {self.title}: saved {self.saved_at or 'with the project'} by {self.saved_by or 'the project'}"]
        for key in ("task", "version", "title", "preset", "num_predict", "max_attempts", "saved_at", "saved_by",
                    "system", "prompt"):
            value = getattr(self, key)
            if value is None:
                continue
            # JSON strings are valid TOML basic strings (same escapes), so round-trips are exact.
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        if self.stop:
            lines.append(f"stop = {json.dumps(list(self.stop), ensure_ascii=False)}")
        for example in self.examples:
            lines += ["", "[[examples]]"]
            if example.language:
                lines.append(f"language = {json.dumps(example.language)}")
            lines.append(f"answer = {json.dumps(example.answer, ensure_ascii=False)}")
            lines.append("[examples.inputs]")
            lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in example.inputs.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text: str, *, source: str) -> Template:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"Template file {source} is not valid TOML: {exc}") from None
        try:
            return cls(
                task=str(data["task"]), version=int(data["version"]), title=str(data.get("title") or data["task"]),
                preset=str(data.get("preset", "enrichment")), system=str(data.get("system", "")).strip(),
                prompt=str(data["prompt"]).strip(),
                num_predict=int(data["num_predict"]) if data.get("num_predict") is not None else None,
                max_attempts=int(data.get("max_attempts", 3)), source=source,
                saved_at=str(data.get("saved_at", "")), saved_by=str(data.get("saved_by", "")),
                stop=tuple(str(x) for x in data.get("stop", ())),
                examples=tuple(Example.from_dict(e) for e in data.get("examples", ())),
            ).validate()
        except KeyError as exc:
            raise InvalidInput(f"Template file {source} lacks the key {exc}.") from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Template:
        """From ``as_dict`` (a job's stored template); jobs stored before stops and examples have neither."""
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        values["stop"] = tuple(values.get("stop") or ())
        values["examples"] = tuple(Example.from_dict(e) for e in values.get("examples") or ())
        return cls(**values)


def allowed_placeholders(task: str) -> set[str]:
    return {f.name for f in TASK_FIELDS.get(task, ())} | set(TASK_VARIABLES.get(task, ()))


def render(text: str, values: Mapping[str, Any]) -> str:
    """Fill ``{{name}}`` placeholders; values are inserted as data, never re-interpreted as a template."""
    return PLACEHOLDER_RE.sub(lambda m: str(values.get(m.group(1), "")), text)


class TemplateStore:
    """Shipped templates plus the versions staff saved; a saved version is never overwritten."""

    def __init__(self, data_dir: Path, shipped_dir: Path = TEMPLATES_DIR) -> None:
        self.saved_dir = data_dir / "templates"
        self.shipped_dir = shipped_dir
        self._lock = threading.Lock()

    def versions(self, task: str) -> list[Template]:
        if task not in TASKS:
            raise InvalidInput(f"Unknown task {task!r}.")
        found: dict[int, Template] = {}
        shipped = self.shipped_dir / f"{task}.toml"
        for path in [*sorted((self.shipped_dir / "history").glob(f"{task}.v*.toml")), shipped]:
            if path.exists():
                template = Template.from_toml(path.read_text(encoding="utf-8"), source="shipped")
                found[template.version] = template
        if self.saved_dir.exists():
            for path in self.saved_dir.glob(f"{task}.v*.toml"):
                try:
                    template = Template.from_toml(path.read_text(encoding="utf-8"), source="edited")
                except (InvalidInput, OSError, ValueError):
                    continue  # a damaged file must not hide the other versions
                if template.task != task:
                    continue
                if found.get(template.version, template).source == "shipped":
                    # A version staff saved before this one shipped keeps its number: results made with it say
                    # task@vN and must still mean it. The shipped one is still readable in catalog/templates/.
                    log.warning("%s: the saved %s hides the shipped version with the same number; save the "
                                "shipped text as a new version to use it.", path, template.ref)
                found[template.version] = template
        if not found:
            raise InvalidInput(f"No template for the task {task!r} (expected {shipped}).")
        return [found[v] for v in sorted(found)]

    def latest(self, task: str) -> Template:
        return self.versions(task)[-1]

    def get(self, task: str, version: int | None = None) -> Template:
        versions = self.versions(task)
        if version is None:
            return versions[-1]
        for template in versions:
            if template.version == version:
                return template
        raise InvalidInput(f"The {task} template has no version {version} (latest is {versions[-1].version}).")

    def save(self, task: str, *, system: str, prompt: str, preset: str, num_predict: int | None,
             max_attempts: int, author: str, stop: tuple[str, ...] | None = None,
             examples: tuple[Example, ...] | None = None) -> Template:
        """Write the next version atomically; concurrent saves each get their own number. Stops and examples
        not given are carried over from the latest version."""
        with self._lock:
            current = self.latest(task)
            template = Template(
                task=task, version=current.version + 1, title=current.title, preset=preset,
                system=system.strip(), prompt=prompt.strip(), num_predict=num_predict,
                max_attempts=max_attempts, source="edited",
                saved_at=datetime.now(UTC).isoformat(timespec="seconds"), saved_by=author,
                stop=current.stop if stop is None else tuple(stop),
                examples=current.examples if examples is None else tuple(examples),
            ).validate()
            if template.system == current.system and template.prompt == current.prompt and (
                    template.preset, template.num_predict, template.max_attempts, template.stop,
                    template.examples) == (current.preset, current.num_predict, current.max_attempts,
                                           current.stop, current.examples):
                raise InvalidInput(f"Nothing changed since {current.ref}; no new version saved.")
            self.saved_dir.mkdir(parents=True, exist_ok=True)
            final = self.saved_dir / f"{task}.v{template.version}.toml"
            temp = final.with_suffix(".tmp")
            temp.write_text(template.to_toml(), encoding="utf-8")
            try:
                os.link(temp, final)  # fails if the version exists: never overwrite a saved version
            except FileExistsError:
                raise InvalidInput(f"{template.ref} was saved by someone else meanwhile; reload and retry.") from None
            finally:
                temp.unlink(missing_ok=True)
            return template


