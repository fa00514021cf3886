"""A stored conversation as a tree of messages, and the titles conversations carry.

Each message names its parent; siblings are the alternatives a regenerate or an edit created, oldest
first. The path from the first message to a leaf is what a browser shows and what is sent to a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.chat.conversation import ChatTurn, Conversation
from services.errors import InvalidInput

MAX_TITLE_CHARS = 120
AUTO_TITLE_CHARS = 60


def clean_title(text: str) -> str:
    """One line of printable text (control characters and runs of whitespace collapse to one space)."""
    return " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())


def title_from_prompt(text: str, picture_names: Iterable[str] = ()) -> str:
    """A conversation's first title: the start of its first prompt, cut at a word.

    >>> title_from_prompt("Écris une description courte pour une robe de soirée rouge, en deux phrases maximum.")
    'Écris une description courte pour une robe de soirée rouge,…'
    >>> title_from_prompt("", ["dress.jpg"])
    'Picture: dress.jpg'
    """
    line = clean_title(text)
    if not line:
        names = list(picture_names)
        return clean_title(f"Picture: {names[0]}")[:AUTO_TITLE_CHARS] if names else "New conversation"
    if len(line) <= AUTO_TITLE_CHARS:
        return line
    cut = line[:AUTO_TITLE_CHARS]
    return (cut.rsplit(" ", 1)[0] if " " in cut[20:] else cut).rstrip() + "…"


def validate_title(text: str | None) -> str:
    title = clean_title(text or "")
    if not title:
        raise InvalidInput("A title cannot be empty.")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"A title is at most {MAX_TITLE_CHARS} characters; this one has {len(title):,}.")
    return title


@dataclass(frozen=True)
class ConversationSummary:
    """One line of the conversation list."""

    id: str
    title: str
    model: str
    message_count: int
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Tombstone:
    id: str
    at: float
    reason: str  # "deleted", "expired" (retention) or "cap" (the per-person limit)


@dataclass(frozen=True)
class PictureInfo:
    id: str
    name: str
    mime: str
    width: int
    height: int


@dataclass
class StoredConversation:
    """A conversation's whole tree, as read at one instant."""

    id: str
    owner: str
    title: str
    model: str
    system_prompt: str
    leaf_id: str | None
    created_at: float
    updated_at: float
    messages: dict[str, ChatTurn]
    children: dict[str | None, list[str]]  # parent id (None for the first messages) -> child ids, oldest first

    def path(self, leaf_id: str | None = None) -> list[ChatTurn]:
        """Root to ``leaf_id`` (the remembered leaf by default)."""
        node = leaf_id if leaf_id is not None else self.leaf_id
        turns: list[ChatTurn] = []
        while node is not None and node in self.messages and len(turns) <= len(self.messages):
            turns.append(self.messages[node])
            node = self.messages[node].parent_id
        return turns[::-1]

    def conversation(self, leaf_id: str | None = None) -> Conversation:
        return Conversation(system_prompt=self.system_prompt, turns=self.path(leaf_id))

    def siblings(self, message_id: str) -> list[str]:
        turn = self.messages.get(message_id)
        return list(self.children.get(turn.parent_id, [])) if turn is not None else []

    def latest_leaf(self, message_id: str) -> str:
        """Follow the newest child from ``message_id`` down to a leaf."""
        node = message_id
        for _ in range(len(self.messages) + 1):
            kids = self.children.get(node)
            if not kids:
                break
            node = kids[-1]
        return node
