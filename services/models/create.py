"""Save as model: a model, a system prompt and options that work well, kept as a named model (``ollama create``).

The name is checked like a pull's before any request (``validate_model_name``, the canonical form with its
``latest`` tag) and must be local: a registry host in it would suggest a push. Ollama replaces a model of
the same name without asking, so ``create_model`` refuses an existing name unless the caller confirmed the
replacement, and never replaces the model it starts from. Every attempt is audited with its outcome.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.access.audit import AuditLog
from services.errors import DashboardError, InvalidInput, user_message
from services.models.pull_progress import canonical_name
from services.ollama.client import OllamaClient

MAX_SYSTEM_CHARS = 20_000
STATUS_HISTORY = 12
# Options the chat sends that are Modelfile parameters too (``PARAMETER name value``).
MODELFILE_PARAMETERS = ("temperature", "top_p", "top_k", "num_predict", "num_ctx", "repeat_penalty", "seed", "stop")


def validate_new_name(name: str | None) -> str:
    """The name to create, as Ollama stores it (tag ``latest`` by default, lower case).

    >>> validate_new_name("Team/Desk-FR")
    'team/desk-fr:latest'
    >>> validate_new_name("registry.example.com/team/desk")
    Traceback (most recent call last):
    ...
    services.errors.InvalidInput: A saved model's name is local ([namespace/]model[:tag]); \
'registry.example.com/team/desk' names a registry host.
    """
    if not name or not str(name).strip():
        raise InvalidInput("Give the new model a name, for example team/desk-fr:v1.")
    canonical = canonical_name(str(name))
    if len(canonical.split("/")) >= 3:
        raise InvalidInput(f"A saved model's name is local ([namespace/]model[:tag]); {str(name).strip()!r} names a "
                           "registry host.")
    return canonical


@dataclass(frozen=True)
class ModelRecipe:
    """What ``/api/create`` receives: the model it starts from, a system prompt and Modelfile parameters."""

    name: str
    from_model: str
    system: str
    parameters: dict[str, Any]

    def modelfile(self) -> str:
        """The same recipe as a Modelfile, to show before creating it."""
        lines = [f"FROM {self.from_model}"]
        for key, value in self.parameters.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"PARAMETER {key} {json.dumps(item) if isinstance(item, str) else item}")
        if self.system:
            lines.append(f'SYSTEM """{self.system}"""')
        return "\n".join(lines)


def make_recipe(name: str | None, from_model: str, system: str, options: Mapping[str, Any]) -> ModelRecipe:
    """Check everything before any request: the name, the source, the system prompt's length."""
    target = validate_new_name(name)
    source = canonical_name(from_model)
    if target == source:
        raise InvalidInput(f"{target} is the model these settings start from; choose a new name so it is not "
                           "replaced.")
    if len(system) > MAX_SYSTEM_CHARS:
        raise InvalidInput(f"The system prompt is {len(system):,} characters; a saved model's may be at most "
                           f"{MAX_SYSTEM_CHARS:,}.")
    parameters = {key: options[key] for key in MODELFILE_PARAMETERS if options.get(key) not in (None, [], "")}
    return ModelRecipe(name=target, from_model=from_model, system=system.strip(), parameters=parameters)


def existing_name(name: str, installed: Iterable[str]) -> str | None:
    """The installed model ``name`` would replace (Ollama matches names case-insensitively), if any."""
    wanted = canonical_name(name)
    for other in installed:
        try:
            if canonical_name(other) == wanted:
                return other
        except InvalidInput:
            continue
    return None


@dataclass
class CreateProgress:
    """The statuses Ollama streamed, bounded; ``fraction`` when a step reports bytes (a quantization)."""

    history: deque[str] = field(default_factory=lambda: deque(maxlen=STATUS_HISTORY))
    lines: int = 0
    fraction: float | None = None
    succeeded: bool = False

    def update(self, line: Mapping[str, Any]) -> None:
        self.lines += 1
        status = " ".join(str(line.get("status") or "").split())[:200]
        if status and (not self.history or self.history[-1] != status):
            self.history.append(status)
        total, completed = line.get("total"), line.get("completed")
        if isinstance(total, int) and total > 0 and isinstance(completed, int):
            self.fraction = min(max(completed / total, 0.0), 1.0)
        if status == "success":
            self.succeeded, self.fraction = True, 1.0


def create_model(client: OllamaClient, audit: AuditLog, who: str, recipe: ModelRecipe, *, installed: Iterable[str],
                 replace: bool = False, on_progress: Callable[[CreateProgress], None] | None = None) -> CreateProgress:
    """Create the model, streaming progress to ``on_progress``; audited whether it works or not."""
    replaced = existing_name(recipe.name, installed)
    if replaced is not None and not replace:
        raise InvalidInput(f"{replaced} already exists on {client.backend.name}. Confirm to replace it, or choose "
                           "another name.")
    detail = f"from {recipe.from_model}" + (f", replacing {replaced}" if replaced else "")
    if recipe.parameters:
        detail += ", parameters " + ", ".join(sorted(recipe.parameters))
    progress = CreateProgress()
    try:
        stream = client.create(recipe.name, from_model=recipe.from_model, system=recipe.system or None,
                               parameters=recipe.parameters)
        for line in stream:
            progress.update(line)
            if on_progress is not None:
                on_progress(progress)
        if not progress.succeeded:
            raise InvalidInput("Ollama ended the create without reporting success; check the Models page.")
    except DashboardError as exc:
        audit.record(who=who, backend=client.backend.name, model=recipe.name, action="create",
                     outcome=f"failed: {user_message(exc)}", detail=detail)
        raise
    audit.record(who=who, backend=client.backend.name, model=recipe.name, action="create", outcome="ok",
                 detail=detail)
    return progress
