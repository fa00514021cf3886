"""What a comparison round is made of: the contestants (slot, model, backend), the round's spec (prompt, system
prompt, options, the same seed for all), and one column's snapshot as the page draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.config import Backend
from services.errors import InvalidInput
from services.ollama.stream import live_rate
from services.ollama.wire import GenerationStats, validate_model_name

SLOTS = ("A", "B", "C", "D")
MIN_MODELS, MAX_MODELS = 2, 4
DEMO_KEEP_ALIVE = "15m"
MAX_COMPARE_PROMPT_CHARS = 50_000
METADATA_WAIT_S = 2.0

ColumnStatus = Literal["pending", "warming", "ready", "waiting", "streaming", "done", "error", "stopped"]
TERMINAL: frozenset[str] = frozenset({"done", "error", "stopped"})


@dataclass(frozen=True)
class Contestant:
    """One column: a model on a named backend, shown as ``slot`` (A to D) in blind mode."""

    slot: str
    model: str
    backend: Backend


@dataclass(frozen=True)
class RoundSpec:
    """What every column is sent: the same prompt, system prompt, options and seed."""

    prompt: str
    system: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 42
    warm_up: bool = True

    def request_options(self) -> dict[str, Any]:
        return {**dict(self.options), "seed": int(self.seed)}

    def messages(self) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return [*messages, {"role": "user", "content": self.prompt}]


def validate_lineup(contestants: Sequence[Contestant]) -> None:
    """2 to 4 models, distinct (model, backend) pairs, distinct slots, valid names."""
    if not MIN_MODELS <= len(contestants) <= MAX_MODELS:
        raise InvalidInput(f"Choose {MIN_MODELS} to {MAX_MODELS} models to compare (now {len(contestants)}).")
    pairs = [(c.model, c.backend.name) for c in contestants]
    if len(set(pairs)) != len(pairs):
        raise InvalidInput("The same model on the same backend is chosen twice; pick different models.")
    if len({c.slot for c in contestants}) != len(contestants):
        raise InvalidInput("Two columns share a slot letter.")
    for contestant in contestants:
        validate_model_name(contestant.model)


def validate_round(spec: RoundSpec) -> RoundSpec:
    if not spec.prompt or not spec.prompt.strip():
        raise InvalidInput("Type a prompt first (or pick one from a deck).")
    if len(spec.prompt) > MAX_COMPARE_PROMPT_CHARS:
        raise InvalidInput(f"The prompt is {len(spec.prompt):,} characters; at most {MAX_COMPARE_PROMPT_CHARS:,}.")
    if not 0 <= int(spec.seed) < 2**31:
        raise InvalidInput("The seed must be between 0 and 2147483647.")
    return spec


@dataclass(frozen=True)
class ColumnSnapshot:
    """One column at one instant, as the page draws it (immutable, so a redraw is consistent)."""

    slot: str
    model: str
    backend: str
    backend_kind: str = ""
    status: ColumnStatus = "pending"
    content: str = ""
    thinking: str = ""
    digest: str = ""
    ollama_version: str = ""
    error: str = ""
    first_token_s: float | None = None
    elapsed_s: float = 0.0
    chunks: int = 0
    last_chunk_s: float | None = None
    warmup_s: float | None = None
    stats: GenerationStats | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def live_tokens_per_s(self) -> float | None:
        """Chunks per second since the first one, up to now while streaming (it falls if a column stalls)."""
        end = self.elapsed_s if not self.terminal else (self.last_chunk_s or self.elapsed_s)
        return live_rate(self.chunks, self.first_token_s, end)

    @property
    def tokens_per_s(self) -> float | None:
        """Ollama's own figure once done (eval_count / eval_duration), the live estimate before."""
        if self.stats is not None and self.stats.tokens_per_second:
            return self.stats.tokens_per_second
        return self.live_tokens_per_s

    @property
    def load_s(self) -> float:
        return self.stats.load_s if self.stats is not None else 0.0

    @property
    def cold_start(self) -> bool:
        """The model was loaded during this request, so its time to first token includes the load."""
        return self.stats is not None and self.stats.cold_start

    def as_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot, "model": self.model, "backend": self.backend, "backend_kind": self.backend_kind,
            "digest": self.digest, "ollama_version": self.ollama_version, "status": self.status,
            "content": self.content, "thinking": self.thinking, "error": self.error,
            "first_token_s": self.first_token_s, "elapsed_s": round(self.elapsed_s, 4),
            "chunks": self.chunks, "warmup_s": self.warmup_s, "cold_start": self.cold_start,
            "load_s": self.load_s, "tokens_per_second": self.tokens_per_s,
            "stats": self.stats.as_dict() if self.stats is not None else {},
        }


