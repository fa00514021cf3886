"""Model management for the Models page: audited actions and the plain data the page shows.

Every action validates names before any request, then calls the backend and appends one audit event
with its outcome, whether it worked or not. The helpers turn ``/api/tags``, ``/api/ps`` and
``/api/show`` answers into rows for tables (no streamlit here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services import format as fmt
from services.access.audit import Action, AuditLog
from services.config import Backend
from services.errors import DashboardError, InvalidInput, ModelNotFound, user_message
from services.ollama.client import OllamaClient
from services.ollama.wire import InstalledModel, LoadedModel, normalize_keep_alive, validate_model_name

KEEP_ALIVE_CHOICES = ("5m", "30m", "1h", "4h", "forever")
SORT_KEYS = {"name": "name", "size": "size", "modified": "modified", "family": "family"}
SORT_ORDERS = {"Name (A–Z)": ("name", False), "Size (largest first)": ("size", True),
               "Size (smallest first)": ("size", False), "Modified (newest first)": ("modified", True),
               "Family": ("family", False)}


# ---- audited actions ---------------------------------------------------------------------------------
def _audited(audit: AuditLog, who: str, backend: Backend, model: str, action: Action, call: Any,
             detail: str = "") -> Any:
    try:
        result = call()
    except DashboardError as exc:
        audit.record(who=who, backend=backend.name, model=model, action=action,
                     outcome=f"failed: {user_message(exc)}", detail=detail)
        raise
    audit.record(who=who, backend=backend.name, model=model, action=action, outcome="ok", detail=detail)
    return result


def load_model(client: OllamaClient, audit: AuditLog, who: str, model: str, keep_alive: str | int) -> None:
    """Warm a model up (the empty-request mechanism) and keep it for ``keep_alive``."""
    name = validate_model_name(model)
    keep = normalize_keep_alive(keep_alive)
    _audited(audit, who, client.backend, name, "load", lambda: client.load(name, keep), f"keep_alive={keep}")


def unload_model(client: OllamaClient, audit: AuditLog, who: str, model: str) -> None:
    name = validate_model_name(model)
    _audited(audit, who, client.backend, name, "unload", lambda: client.unload(name))


def delete_model(client: OllamaClient, audit: AuditLog, who: str, model: str, typed_name: str) -> str:
    """Delete after the operator typed the exact name; returns "deleted" or "already deleted" (404)."""
    name = validate_model_name(model)
    if typed_name.strip() != name:
        raise InvalidInput(f"Type the model's exact name ({name}) to confirm the delete.")
    try:
        client.delete(name)
    except ModelNotFound:
        audit.record(who=who, backend=client.backend.name, model=name, action="delete", outcome="already deleted")
        return "already deleted"
    except DashboardError as exc:
        audit.record(who=who, backend=client.backend.name, model=name, action="delete",
                     outcome=f"failed: {user_message(exc)}")
        raise
    audit.record(who=who, backend=client.backend.name, model=name, action="delete", outcome="ok")
    return "deleted"


def copy_model(client: OllamaClient, audit: AuditLog, who: str, source: str, destination: str) -> str:
    """Create an alias; refuses to overwrite silently an installed name."""
    src = validate_model_name(source)
    dest = validate_model_name(destination)
    if _with_tag(src).lower() == _with_tag(dest).lower():
        raise InvalidInput("The new name is the same as the model's name.")
    _audited(audit, who, client.backend, src, "copy", lambda: client.copy(src, dest), f"to {dest}")
    return dest


def _with_tag(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


# ---- rows for the tables -----------------------------------------------------------------------------
def installed_rows(models: Sequence[InstalledModel]) -> list[dict[str, Any]]:
    return [{"name": m.name, "family": m.family, "parameters": m.parameter_size,
             "quantization": m.quantization_level, "size": m.size, "size_text": fmt.size(m.size),
             "modified": m.modified_at, "digest": m.short_digest} for m in models]


def filter_and_sort(rows: Sequence[dict[str, Any]], text: str = "", sort: str = "name",
                    descending: bool = False) -> list[dict[str, Any]]:
    """Case-insensitive substring filter on name, family and quantization, then a stable sort."""
    needle = text.strip().lower()
    kept = [r for r in rows if not needle or needle in f"{r['name']} {r['family']} {r['quantization']}".lower()]
    key = SORT_KEYS.get(sort, "name")

    def sort_key(row: dict[str, Any]) -> Any:
        value = row[key]
        if isinstance(value, datetime):
            return value.timestamp()
        return value if value is not None else ""

    return sorted(kept, key=sort_key, reverse=descending)


def _until_unload(seconds_left: float | None) -> str:
    """The Models page's countdown column: "stopping…" while Ollama unloads it.

    >>> _until_unload(-2), _until_unload(243)
    ('stopping…', '4 min 03 s')
    """
    return "stopping…" if seconds_left is not None and seconds_left < 0 else fmt.duration(seconds_left)


def loaded_rows(models: Sequence[LoadedModel], now: datetime | None = None) -> list[dict[str, Any]]:
    return [{"name": m.name, "size": fmt.size(m.size), "vram": fmt.size(m.size_vram),
             "processor": m.processor, "context": m.context_length,
             "until_unload": _until_unload(m.seconds_until_unload(now))} for m in models]


def parse_parameters(blob: str | None) -> list[tuple[str, str]]:
    """``/api/show``'s ``parameters`` text blob (``key value`` per line, keys may repeat).

    >>> parse_parameters('stop                           "<|eot_id|>"\\ntemperature 0.7')
    [('stop', '"<|eot_id|>"'), ('temperature', '0.7')]
    """
    out: list[tuple[str, str]] = []
    for line in (blob or "").splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            out.append((key, value.strip()))
    return out


@dataclass(frozen=True)
class ModelDetail:
    """The parts of ``/api/show`` the detail view shows."""

    parameters: list[tuple[str, str]]
    template: str
    system: str
    license: str
    modelfile: str
    capabilities: tuple[str, ...]
    context_length: int | None
    architecture: str
    parameter_count: int | None

    @classmethod
    def from_show(cls, raw: Mapping[str, Any]) -> ModelDetail:
        info = raw.get("model_info") or {}
        arch = str(info.get("general.architecture") or "")
        context = info.get(f"{arch}.context_length") if arch else None
        count = info.get("general.parameter_count")
        license_text = raw.get("license") or ""
        if isinstance(license_text, list):
            license_text = "\n\n".join(str(part) for part in license_text)
        return cls(
            parameters=parse_parameters(raw.get("parameters")),
            template=str(raw.get("template") or ""), system=str(raw.get("system") or ""),
            license=str(license_text), modelfile=str(raw.get("modelfile") or ""),
            capabilities=tuple(str(c) for c in raw.get("capabilities") or ()),
            context_length=int(context) if isinstance(context, int | float) else None,
            architecture=arch, parameter_count=int(count) if isinstance(count, int | float) else None,
        )


def model_matrix(per_backend: Mapping[str, Sequence[InstalledModel] | None]) -> list[dict[str, Any]]:
    """One row per model name, one column per backend (short digest, "—" when absent, "?" when the
    backend is unreachable) and a ``differs`` flag when hosts hold different digests of one name."""
    names: set[str] = set()
    for models in per_backend.values():
        names.update(m.name for m in models or ())
    rows = []
    for name in sorted(names, key=str.lower):
        row: dict[str, Any] = {"model": name}
        digests = set()
        for backend, models in per_backend.items():
            if models is None:
                row[backend] = "?"
                continue
            found = next((m for m in models if m.name == name), None)
            row[backend] = found.short_digest if found else "—"
            if found:
                digests.add(found.digest)
        row["differs"] = len(digests) > 1
        rows.append(row)
    return rows
