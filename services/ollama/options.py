"""Ollama's runtime options as the dashboard exposes them, and the seed's parameter presets.

Presets come from the seed's table (classification 0.1/0.5/10, enrichment 0.7/0.9/40, creative
1.0/0.95/50). Options left unset are not sent, so the model's Modelfile and the server defaults apply;
in particular ``num_ctx`` is only sent when asked for, because a different ``num_ctx`` forces a reload.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from services.errors import InvalidInput

PRESETS: dict[str, dict[str, float | int]] = {
    "classification": {"temperature": 0.1, "top_p": 0.5, "top_k": 10},
    "enrichment": {"temperature": 0.7, "top_p": 0.9, "top_k": 40},
    "creative": {"temperature": 1.0, "top_p": 0.95, "top_k": 50},
}
CUSTOM = "custom"


@dataclass
class GenerationOptions:
    """Ollama runtime options the playground exposes; ``None`` means "not sent"."""

    temperature: float | None = 0.7
    top_p: float | None = 0.9
    top_k: int | None = 40
    num_predict: int | None = None
    num_ctx: int | None = None
    repeat_penalty: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    def to_ollama(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == []:
                continue
            out[f.name] = value
        return out

    def validate(self) -> GenerationOptions:
        checks = [
            ("temperature", self.temperature, 0.0, 2.0),
            ("top_p", self.top_p, 0.0, 1.0),
            ("top_k", self.top_k, 1, 1000),
            ("num_predict", self.num_predict, -2, 1_000_000),
            ("num_ctx", self.num_ctx, 256, 2_097_152),
            ("repeat_penalty", self.repeat_penalty, 0.0, 5.0),
        ]
        for name, value, low, high in checks:
            if value is not None and not low <= value <= high:
                raise InvalidInput(f"{name} must be between {low} and {high}, not {value}.")
        if len(self.stop) > 16 or any(len(s) > 200 for s in self.stop):
            raise InvalidInput("At most 16 stop sequences of up to 200 characters each.")
        return self

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GenerationOptions:
        base = dict(PRESETS.get(name, {}))
        base.update(overrides)
        return cls(**base)


def preset_for(temperature: float | None, top_p: float | None, top_k: int | None) -> str:
    """Which preset these sampling values are, or ``custom``.

    >>> preset_for(0.1, 0.5, 10)
    'classification'
    >>> preset_for(0.1, 0.5, 11)
    'custom'
    """
    for name, values in PRESETS.items():
        if (temperature, top_p, top_k) == (values["temperature"], values["top_p"], values["top_k"]):
            return name
    return CUSTOM


def parse_stop_sequences(text: str) -> list[str]:
    """One stop sequence per line; ``\\n`` written literally means a newline."""
    return [line.replace("\\n", "\n") for line in text.splitlines() if line.strip()]


