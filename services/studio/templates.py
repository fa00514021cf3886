"""Versioned prompt templates: the shipped files in ``catalog/templates/`` (version 1) plus every version staff
saved from the page, in ``<data dir>/templates/<task>.v<N>.toml``, never overwriting an older one. Every
result carries the ``task@vN`` reference of the template that produced it.
"""

from __future__ import annotations

import json
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

    @property
    def ref(self) -> str:
        return f"{self.task}@v{self.version}"

    def options(self) -> dict[str, Any]:
        return GenerationOptions.from_preset(self.preset, num_predict=self.num_predict).validate().to_ollama()

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
            ).validate()
        except KeyError as exc:
            raise InvalidInput(f"Template file {source} lacks the key {exc}.") from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Template:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


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
        if shipped.exists():
            template = Template.from_toml(shipped.read_text(encoding="utf-8"), source="shipped")
            found[template.version] = template
        if self.saved_dir.exists():
            for path in self.saved_dir.glob(f"{task}.v*.toml"):
                try:
                    template = Template.from_toml(path.read_text(encoding="utf-8"), source="edited")
                except (InvalidInput, OSError, ValueError):
                    continue  # a damaged file must not hide the other versions
                if template.task == task:
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
             max_attempts: int, author: str) -> Template:
        """Write the next version atomically; concurrent saves each get their own number."""
        with self._lock:
            current = self.latest(task)
            template = Template(
                task=task, version=current.version + 1, title=current.title, preset=preset,
                system=system.strip(), prompt=prompt.strip(), num_predict=num_predict,
                max_attempts=max_attempts, source="edited",
                saved_at=datetime.now(UTC).isoformat(timespec="seconds"), saved_by=author,
            ).validate()
            if template.system == current.system and template.prompt == current.prompt and (
                    template.preset, template.num_predict, template.max_attempts) == (
                    current.preset, current.num_predict, current.max_attempts):
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


