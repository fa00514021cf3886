"""Conversations kept per person in the dashboard's SQLite file: a tree of messages, pictures, search, retention.

Every read and write names its owner (the signed-in person's ``sub``; ``local`` in open mode) and is
filtered by it, so nobody, admins included, can open another person's conversation.

Messages are only ever appended, never rewritten as a list: each one names its parent, so regenerating a
reply or editing a prompt adds a sibling (a branch the person can flip back to), and two tabs of one person
writing to one conversation at once each add their own messages, which end up as neighbours or branches;
neither erases the other. The conversation remembers the leaf that was last written or chosen, so a
reload or another browser reopens the same branch. Full-text search uses SQLite's FTS5 (trigram, so any
substring of three characters or more matches) where the library has it, titles always.

Retention (``DASHBOARD_CHAT_RETENTION_DAYS``) and a per-person cap are enforced when the store starts, on
every new conversation, and hourly while it is used; an expired conversation is never listed or opened
even before it is purged. A deleted or purged conversation leaves a tombstone (id, owner, when, why; no
content), so an old link can say what happened to it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.chat.conversation import ChatTurn
from services.chat.tree import (
    MAX_TITLE_CHARS,
    ConversationSummary,
    PictureInfo,
    StoredConversation,
    Tombstone,
    clean_title,
    validate_title,
)
from services.db import Database
from services.errors import InvalidInput
from services.images import CleanImage

log = logging.getLogger(__name__)

DAY_S = 86_400.0
MAX_MESSAGES = 1_000  # per conversation, branches included
MAX_PICTURES = 64  # per conversation
PURGE_EVERY_S = 3_600.0
TOMBSTONE_DAYS = 365.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS chat_conversations (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL, title_folded TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '', system_prompt TEXT NOT NULL DEFAULT '', leaf_id TEXT,
        message_count INTEGER NOT NULL DEFAULT 0, picture_count INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL, updated_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS chat_conversations_owner ON chat_conversations (owner, updated_at DESC)",
    "CREATE INDEX IF NOT EXISTS chat_conversations_updated ON chat_conversations (updated_at)",
    """CREATE TABLE IF NOT EXISTS chat_messages (
        n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, conversation_id TEXT NOT NULL,
        parent_id TEXT, role TEXT NOT NULL, content TEXT NOT NULL, thinking TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '',
        digest TEXT NOT NULL DEFAULT '', backend TEXT NOT NULL DEFAULT '', options TEXT NOT NULL DEFAULT '{}',
        stats TEXT NOT NULL DEFAULT '{}', images TEXT NOT NULL DEFAULT '[]', created_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS chat_messages_conversation ON chat_messages (conversation_id, n)",
    """CREATE TABLE IF NOT EXISTS chat_pictures (
        id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, name TEXT NOT NULL, mime TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, data BLOB NOT NULL, thumbnail BLOB NOT NULL,
        created_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS chat_pictures_conversation ON chat_pictures (conversation_id)",
    """CREATE TABLE IF NOT EXISTS chat_tombstones (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, at REAL NOT NULL, reason TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS chat_tombstones_at ON chat_tombstones (at)",
)
_SEARCH_SCHEMA = (
    """CREATE VIRTUAL TABLE IF NOT EXISTS chat_search USING fts5(
        content, content='chat_messages', content_rowid='n', tokenize='trigram')""",
    """CREATE TRIGGER IF NOT EXISTS chat_messages_search_insert AFTER INSERT ON chat_messages BEGIN
        INSERT INTO chat_search (rowid, content) VALUES (new.n, new.content); END""",
    """CREATE TRIGGER IF NOT EXISTS chat_messages_search_delete AFTER DELETE ON chat_messages BEGIN
        INSERT INTO chat_search (chat_search, rowid, content) VALUES ('delete', old.n, old.content); END""",
    """CREATE TRIGGER IF NOT EXISTS chat_messages_search_update AFTER UPDATE OF content ON chat_messages BEGIN
        INSERT INTO chat_search (chat_search, rowid, content) VALUES ('delete', old.n, old.content);
        INSERT INTO chat_search (rowid, content) VALUES (new.n, new.content); END""",
)


def _turn(row: sqlite3.Row) -> ChatTurn:
    return ChatTurn(role=row["role"], content=row["content"], thinking=row["thinking"], status=row["status"],
                    error=row["error"], model=row["model"], digest=row["digest"], backend=row["backend"],
                    options=json.loads(row["options"]), stats=json.loads(row["stats"]), created_at=row["created_at"],
                    id=row["id"], parent_id=row["parent_id"], images=json.loads(row["images"]))


class ChatStore:
    """Conversations of every person, in the shared database. Thread-safe; one per process (``runtime``)."""

    def __init__(self, db: Database, *, retention_days: float, max_per_owner: int, clock: Any = time.time) -> None:
        self._db = db
        self.retention_days = retention_days
        self.max_per_owner = max_per_owner
        self._clock = clock
        self._live: set[str] = set()  # replies being written by a script run of this process
        self._live_changed = threading.Condition()
        self._next_purge = 0.0
        with db.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            try:
                for statement in _SEARCH_SCHEMA:
                    conn.execute(statement)
                self.full_text = True
            except sqlite3.OperationalError:  # an SQLite built without FTS5: titles and substring search only
                self.full_text = False
            # Replies that were streaming when a previous process stopped can never finish.
            conn.execute("UPDATE chat_messages SET status='stopped', error='the dashboard stopped while this reply "
                         "was being written' WHERE status='streaming'")
        self.purge()

    # ---- retention ------------------------------------------------------------------------------------
    def _cutoff(self) -> float:
        return self._clock() - self.retention_days * DAY_S

    def purge(self, owner: str | None = None) -> int:
        """Delete what retention or the per-person cap no longer allows; returns how many went.

        With ``owner`` (a new conversation of theirs), only that person's cap is checked: every query here
        runs on an index, so it costs the same with a thousand conversations as with none.
        """
        now = self._clock()
        with self._db.transaction() as conn:
            expired = [(r["id"], r["owner"], "expired") for r in conn.execute(
                "SELECT id, owner FROM chat_conversations WHERE updated_at < ?", (self._cutoff(),))]
            owners = [owner] if owner is not None else [r[0] for r in conn.execute(
                "SELECT owner FROM chat_conversations GROUP BY owner HAVING COUNT(*) > ?", (self.max_per_owner,))]
            over = [(r["id"], person, "cap") for person in owners for r in conn.execute(
                "SELECT id FROM chat_conversations WHERE owner = ? ORDER BY updated_at DESC LIMIT -1 OFFSET ?",
                (person, self.max_per_owner))]
            gone = {cid: (person, reason) for cid, person, reason in expired + over}
            for cid, (person, reason) in gone.items():
                self._remove(conn, cid, person, reason, now)
            if owner is None:
                self._next_purge = now + PURGE_EVERY_S
                conn.execute("DELETE FROM chat_tombstones WHERE at < ?", (now - TOMBSTONE_DAYS * DAY_S,))
        if gone:
            log.info("chat history: removed %d conversation(s) (retention %g days, cap %d per person)",
                     len(gone), self.retention_days, self.max_per_owner)
        return len(gone)

    def _purge_if_due(self) -> None:
        if self._clock() >= self._next_purge:
            self.purge()

    @staticmethod
    def _remove(conn: sqlite3.Connection, cid: str, owner: str, reason: str, now: float) -> None:
        conn.execute("DELETE FROM chat_messages WHERE conversation_id = ?", (cid,))
        conn.execute("DELETE FROM chat_pictures WHERE conversation_id = ?", (cid,))
        conn.execute("DELETE FROM chat_conversations WHERE id = ?", (cid,))
        conn.execute("INSERT OR REPLACE INTO chat_tombstones (id, owner, at, reason) VALUES (?,?,?,?)",
                     (cid, owner, now, reason))

    # ---- reading --------------------------------------------------------------------------------------
    def summaries(self, owner: str, *, search: str = "", limit: int = 25, offset: int = 0) -> list[ConversationSummary]:
        """The person's conversations, most recent activity first; ``search`` matches titles and messages."""
        self._purge_if_due()
        where, params = self._filter(owner, search)
        rows = self._db.execute(
            "SELECT id, title, model, message_count, created_at, updated_at FROM chat_conversations c "
            f"WHERE {where} ORDER BY updated_at DESC LIMIT ? OFFSET ?",
            (*params, max(1, min(limit, 500)), max(offset, 0))).fetchall()
        return [ConversationSummary(**dict(r)) for r in rows]

    def count(self, owner: str, *, search: str = "") -> int:
        where, params = self._filter(owner, search)
        return int(self._db.execute(f"SELECT COUNT(*) FROM chat_conversations c WHERE {where}", params).fetchone()[0])

    def _filter(self, owner: str, search: str) -> tuple[str, tuple[Any, ...]]:
        where, params = "c.owner = ? AND c.updated_at >= ?", (owner, self._cutoff())
        needle = clean_title(search)[:200]
        if not needle:
            return where, params
        folded = needle.casefold()
        if self.full_text and len(needle) >= 3:
            phrase = '"' + needle.replace('"', '""') + '"'
            return (where + " AND (instr(c.title_folded, ?) > 0 OR c.id IN (SELECT m.conversation_id FROM "
                    "chat_messages m WHERE m.n IN (SELECT rowid FROM chat_search WHERE chat_search MATCH ?)))",
                    (*params, folded, phrase))
        return where + " AND instr(c.title_folded, ?) > 0", (*params, folded)

    def get(self, owner: str, conversation_id: str) -> StoredConversation | None:
        """The conversation, or None when it does not exist for this person (never someone else's)."""
        row = self._db.execute(
            "SELECT * FROM chat_conversations WHERE id = ? AND owner = ? AND updated_at >= ?",
            (str(conversation_id)[:64], owner, self._cutoff())).fetchone()
        if row is None:
            return None
        messages: dict[str, ChatTurn] = {}
        children: dict[str | None, list[str]] = {}
        for message in self._db.execute("SELECT * FROM chat_messages WHERE conversation_id = ? ORDER BY n",
                                        (row["id"],)):
            turn = _turn(message)
            messages[turn.id] = turn
            children.setdefault(turn.parent_id, []).append(turn.id)
        with self._live_changed:
            live = set(self._live)
        for turn in messages.values():
            if turn.status == "streaming" and turn.id not in live:
                turn.status = "stopped"  # its writer is gone (it is being saved right now, or it crashed)
        return StoredConversation(id=row["id"], owner=row["owner"], title=row["title"], model=row["model"],
                                  system_prompt=row["system_prompt"], leaf_id=row["leaf_id"],
                                  created_at=row["created_at"], updated_at=row["updated_at"], messages=messages,
                                  children=children)

    def tombstone(self, owner: str, conversation_id: str) -> Tombstone | None:
        """Why a conversation of this person is gone (deleted, expired, over the cap), if it ever existed."""
        row = self._db.execute("SELECT id, at, reason FROM chat_tombstones WHERE id = ? AND owner = ?",
                               (str(conversation_id)[:64], owner)).fetchone()
        return Tombstone(**dict(row)) if row is not None else None

    def pictures(self, owner: str, conversation_id: str, ids: Iterable[str], *,
                 thumbnails: bool = False) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        column = "thumbnail" if thumbnails else "data"
        rows = self._db.execute(
            f"SELECT p.id, p.{column} AS blob FROM chat_pictures p JOIN chat_conversations c "
            "ON c.id = p.conversation_id WHERE c.owner = ? AND p.conversation_id = ? "
            f"AND p.id IN ({','.join('?' * len(wanted))})",
            (owner, conversation_id, *wanted)).fetchall()
        return {r["id"]: bytes(r["blob"]) for r in rows}

    def picture_info(self, owner: str, conversation_id: str) -> dict[str, PictureInfo]:
        rows = self._db.execute(
            "SELECT p.id, p.name, p.mime, p.width, p.height FROM chat_pictures p JOIN chat_conversations c "
            "ON c.id = p.conversation_id WHERE c.owner = ? AND p.conversation_id = ?",
            (owner, conversation_id)).fetchall()
        return {r["id"]: PictureInfo(**dict(r)) for r in rows}

    # ---- writing --------------------------------------------------------------------------------------
    def create(self, owner: str, *, title: str, model: str = "", system_prompt: str = "") -> str:
        """A new, empty conversation; the per-person cap and retention are enforced at once."""
        now = self._clock()
        cid = uuid.uuid4().hex[:16]
        title = clean_title(title)[:MAX_TITLE_CHARS] or "New conversation"
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO chat_conversations (id, owner, title, title_folded, model, system_prompt, created_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?)",
                (cid, owner, title, title.casefold(), model, system_prompt, now, now))
        self.purge(owner)
        return cid

    def _writable(self, conn: sqlite3.Connection, owner: str, cid: str, *, messages: int = 1,
                  pictures: int = 0) -> sqlite3.Row:
        row = conn.execute("SELECT message_count, picture_count FROM chat_conversations WHERE id = ? AND owner = ?",
                           (cid, owner)).fetchone()
        if row is None:
            raise InvalidInput("This conversation was deleted (in another tab or browser, or by the retention "
                               "policy), so nothing more can be added to it. Start a new conversation.")
        if row["message_count"] + messages > MAX_MESSAGES:
            raise InvalidInput(f"This conversation has reached {MAX_MESSAGES:,} messages; start a new one.")
        if row["picture_count"] + pictures > MAX_PICTURES:
            raise InvalidInput(f"This conversation already holds {row['picture_count']} pictures (at most "
                               f"{MAX_PICTURES}); start a new one to send more.")
        return row

    def _insert(self, conn: sqlite3.Connection, cid: str, turn: ChatTurn) -> None:
        conn.execute(
            "INSERT INTO chat_messages (id, conversation_id, parent_id, role, content, thinking, status, error, model, "
            "digest, backend, options, stats, images, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (turn.id, cid, turn.parent_id, turn.role, turn.content, turn.thinking, turn.status, turn.error,
             turn.model, turn.digest, turn.backend, json.dumps(turn.options), json.dumps(turn.stats),
             json.dumps(turn.images), turn.created_at))

    def _check_parent(self, conn: sqlite3.Connection, cid: str, parent_id: str | None) -> None:
        if parent_id is None:
            return
        if conn.execute("SELECT 1 FROM chat_messages WHERE id = ? AND conversation_id = ?",
                        (parent_id, cid)).fetchone() is None:
            raise InvalidInput("The message this one answers is no longer in the conversation.")

    def add_user(self, owner: str, cid: str, *, parent_id: str | None, text: str, pictures: Sequence[CleanImage] = (),
                 keep_pictures: Sequence[str] = (), system_prompt: str | None = None) -> ChatTurn:
        """Append a prompt under ``parent_id`` with new pictures (stored with it) or earlier ones (an edit)."""
        now = self._clock()
        picture_ids = list(keep_pictures)
        with self._db.transaction() as conn:
            self._writable(conn, owner, cid, pictures=len(pictures))
            self._check_parent(conn, cid, parent_id)
            for picture in pictures:
                pid = uuid.uuid4().hex[:16]
                conn.execute("INSERT INTO chat_pictures (id, conversation_id, name, mime, width, height, data, "
                             "thumbnail, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                             (pid, cid, picture.name, picture.mime, picture.width, picture.height, picture.data,
                              picture.thumbnail, now))
                picture_ids.append(pid)
            turn = ChatTurn(role="user", content=text, parent_id=parent_id, images=picture_ids)
            self._insert(conn, cid, turn)
            sets = "leaf_id = ?, message_count = message_count + 1, picture_count = picture_count + ?, updated_at = ?"
            params: tuple[Any, ...] = (turn.id, len(pictures), now)
            if system_prompt is not None:
                sets += ", system_prompt = ?"
                params += (system_prompt,)
            conn.execute(f"UPDATE chat_conversations SET {sets} WHERE id = ?", (*params, cid))
        return turn

    def start_reply(self, owner: str, cid: str, *, parent_id: str, model: str, digest: str, backend: str,
                    options: Mapping[str, Any]) -> ChatTurn:
        """Append a reply being streamed (status ``streaming``) under the prompt it answers."""
        turn = ChatTurn(role="assistant", content="", status="streaming", model=model, digest=digest, backend=backend,
                        options=dict(options), parent_id=parent_id)
        with self._live_changed:
            self._live.add(turn.id)
        try:
            with self._db.transaction() as conn:
                self._writable(conn, owner, cid)
                self._check_parent(conn, cid, parent_id)
                self._insert(conn, cid, turn)
                conn.execute("UPDATE chat_conversations SET leaf_id = ?, model = ?, message_count = message_count + 1, "
                             "updated_at = ? WHERE id = ?", (turn.id, model, self._clock(), cid))
        except BaseException:
            self._release(turn.id)
            raise
        return turn

    def finish_reply(self, owner: str, cid: str, turn: ChatTurn) -> None:
        """Save how a reply ended (text, thinking, status, error, figures); it is no longer live."""
        try:
            with self._db.transaction() as conn:
                conn.execute(
                    "UPDATE chat_messages SET content = ?, thinking = ?, status = ?, error = ?, stats = ? WHERE id = ? "
                    "AND conversation_id IN (SELECT id FROM chat_conversations WHERE id = ? AND owner = ?)",
                    (turn.content, turn.thinking, turn.status, turn.error, json.dumps(turn.stats), turn.id, cid, owner))
                conn.execute("UPDATE chat_conversations SET updated_at = ? WHERE id = ? AND owner = ?",
                             (self._clock(), cid, owner))
        finally:
            self._release(turn.id)

    def _release(self, message_id: str) -> None:
        with self._live_changed:
            self._live.discard(message_id)
            self._live_changed.notify_all()

    def is_live(self, message_id: str) -> bool:
        with self._live_changed:
            return message_id in self._live

    def settle(self, message_ids: Iterable[str], timeout_s: float = 1.5) -> bool:
        """Wait until none of these replies is being written (a stopped run is saving it); False on timeout."""
        wanted = set(message_ids)
        deadline = time.monotonic() + timeout_s
        with self._live_changed:
            while wanted & self._live:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._live_changed.wait(left)
        return True

    def choose(self, owner: str, cid: str, message_id: str) -> None:
        """Show the branch through ``message_id`` (down to its newest leaf) from now on, in every browser."""
        stored = self.get(owner, cid)
        if stored is None or message_id not in stored.messages:
            raise InvalidInput("That message is no longer in this conversation.")
        self._db.execute("UPDATE chat_conversations SET leaf_id = ? WHERE id = ? AND owner = ?",
                         (stored.latest_leaf(message_id), cid, owner))

    def update_settings(self, owner: str, cid: str, *, system_prompt: str) -> None:
        self._db.execute("UPDATE chat_conversations SET system_prompt = ? WHERE id = ? AND owner = ?",
                         (system_prompt, cid, owner))

    def rename(self, owner: str, cid: str, title: str | None) -> str:
        title = validate_title(title)
        cursor = self._db.execute(
            "UPDATE chat_conversations SET title = ?, title_folded = ? WHERE id = ? AND owner = ?",
            (title, title.casefold(), cid, owner))
        if cursor.rowcount == 0:
            raise InvalidInput("This conversation no longer exists; it cannot be renamed.")
        return title

    def delete(self, owner: str, cid: str) -> tuple[int, int] | None:
        """Delete a conversation with its messages and pictures; returns their counts (None when already gone)."""
        with self._db.transaction() as conn:
            row = conn.execute("SELECT message_count, picture_count FROM chat_conversations WHERE id = ? AND owner = ?",
                               (cid, owner)).fetchone()
            if row is None:
                return None
            self._remove(conn, cid, owner, "deleted", self._clock())
        return int(row["message_count"]), int(row["picture_count"])
