"""The chat playground's conversation: its turns, how each ended, its figures and its exports.

The options a turn was sent with (``services.ollama.options``) are recorded on it, so an export says
exactly how each reply was made. A ``Conversation`` is one path through a stored conversation's tree
(``services.chat.history``): each turn names its parent, and pictures are referred to by id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from services import format as fmt
from services.errors import InvalidInput

MAX_PROMPT_CHARS = 200_000


def validate_prompt(text: str | None) -> str:
    if text is None or not text.strip():
        raise InvalidInput("Type a message first: an empty prompt would only load the model.")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"The message is {len(text):,} characters long; the playground accepts up to {MAX_PROMPT_CHARS:,}."
        )
    return text


TurnStatus = Literal["streaming", "complete", "stopped", "error"]


@dataclass
class ChatTurn:
    """One message of the conversation, with how it ended and its measured figures."""

    role: Literal["user", "assistant"]
    content: str
    thinking: str = ""
    status: TurnStatus = "complete"
    error: str = ""
    model: str = ""
    digest: str = ""
    backend: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    parent_id: str | None = None
    images: list[str] = field(default_factory=list)  # ids of the pictures attached to a user turn


@dataclass
class Conversation:
    """One path of a conversation: the system prompt and the turns from the first message to a leaf."""

    system_prompt: str = ""
    turns: list[ChatTurn] = field(default_factory=list)

    def add_user(self, text: str) -> ChatTurn:
        turn = ChatTurn(role="user", content=validate_prompt(text))
        self.turns.append(turn)
        return turn

    def start_assistant(self, *, model: str, digest: str, backend: str, options: dict[str, Any]) -> ChatTurn:
        turn = ChatTurn(role="assistant", content="", status="streaming", model=model, digest=digest,
                        backend=backend, options=options)
        self.turns.append(turn)
        return turn

    def messages_for_request(self, pictures: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The history as Ollama's messages; failed replies with no text are left out.

        ``pictures`` maps a picture id to its raw base64, for the user turns that carry pictures.
        """
        messages: list[dict[str, Any]] = []
        if self.system_prompt.strip():
            messages.append({"role": "system", "content": self.system_prompt})
        for turn in self.turns:
            if turn.role == "assistant" and (turn.status == "streaming" or not turn.content):
                continue
            message: dict[str, Any] = {"role": turn.role, "content": turn.content}
            if turn.images and pictures is not None:
                message["images"] = [pictures[i] for i in turn.images if i in pictures]
            messages.append(message)
        return messages

    @property
    def picture_count(self) -> int:
        return sum(len(t.images) for t in self.turns)

    def to_json(self, *, exported_by: str = "ollama-operator-dashboard", title: str = "",
                pictures: Mapping[str, Mapping[str, Any]] | None = None) -> str:
        """The whole path as JSON; ``pictures`` (id -> name, mime, size, base64 data) are embedded."""
        document: dict[str, Any] = {
            "format": "ollama-dashboard-conversation/1",
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "exported_by": exported_by,
            "title": title,
            "system_prompt": self.system_prompt,
            "turns": [asdict(t) for t in self.turns],
        }
        if pictures:
            document["pictures"] = {key: dict(value) for key, value in pictures.items()}
        return json.dumps(document, indent=2, ensure_ascii=False)

    def to_markdown(self, *, title: str = "", pictures: Mapping[str, Mapping[str, Any]] | None = None) -> str:
        lines = [f"# {title or 'Conversation'}", "", f"Exported {datetime.now(UTC).isoformat(timespec='seconds')}", ""]
        if self.system_prompt.strip():
            lines += ["## System prompt", "", self.system_prompt, ""]
        for turn in self.turns:
            if turn.role == "user":
                lines += ["## User", "", turn.content, ""]
                for picture in turn.images:
                    info = (pictures or {}).get(picture, {})
                    lines += [f"_Picture: {info.get('name', picture)} ({info.get('width', '?')} × "
                              f"{info.get('height', '?')} px)_", ""]
                continue
            lines += [f"## Assistant ({turn.model}, digest {turn.digest[:12] or 'unknown'})", ""]
            if turn.thinking:
                lines += ["<details><summary>Thinking</summary>", "", turn.thinking, "", "</details>", ""]
            lines += [turn.content or "_(no text)_", ""]
            if turn.status != "complete":
                lines += [f"_Status: {turn.status}{': ' + turn.error if turn.error else ''}_", ""]
            if turn.stats:
                lines += [f"_{format_stats_line(turn.stats)}_", ""]
            if turn.options:
                lines += ["Options: `" + json.dumps(turn.options, sort_keys=True) + "`", ""]
        return "\n".join(lines)


def format_stats_line(stats: dict[str, Any]) -> str:
    """The stats row as one line of text, from ``GenerationStats.as_dict()``."""
    parts = []
    ttft = stats.get("time_to_first_token_s")
    if ttft is not None:
        parts.append(f"first token {fmt.seconds(ttft)}")
    tps = stats.get("tokens_per_second")
    if tps:
        parts.append(f"{tps:.1f} tokens/s")
    if stats.get("eval_count"):
        parts.append(fmt.count(stats["eval_count"], "token"))
    if stats.get("prompt_eval_count"):
        parts.append("prompt " + fmt.count(stats["prompt_eval_count"], "token"))
    load_s = (stats.get("load_duration") or 0) / 1e9
    if load_s >= 0.5:
        parts.append(f"cold start: model load {load_s:.1f} s")
    if stats.get("total_duration"):
        parts.append(f"total {fmt.seconds(stats['total_duration'] / 1e9)}")
    if stats.get("done_reason") == "length":
        parts.append("stopped at the token limit")
    return " · ".join(parts)
