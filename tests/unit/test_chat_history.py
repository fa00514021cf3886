"""The chat history store against a real SQLite file: owners, branches, search, retention, two writers at once."""

from __future__ import annotations

import base64
import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from services.chat.history import ChatStore
from services.chat.tree import MAX_TITLE_CHARS, title_from_prompt
from services.db import Database
from services.errors import InvalidInput
from services.images import clean_image


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database.in_dir(tmp_path)


@pytest.fixture
def store(db: Database, clock: Clock) -> ChatStore:
    return ChatStore(db, retention_days=30, max_per_owner=5, clock=clock)


def exchange(store: ChatStore, owner: str, cid: str, parent: str | None, text: str, reply: str) -> tuple[str, str]:
    user = store.add_user(owner, cid, parent_id=parent, text=text)
    answer = store.start_reply(owner, cid, parent_id=user.id, model="llama3.2:1b", digest="d", backend="local",
                               options={"temperature": 0.7})
    answer.content, answer.status = reply, "complete"
    store.finish_reply(owner, cid, answer)
    return user.id, answer.id


def test_a_conversation_is_kept_and_reopened_on_its_last_branch(store: ChatStore) -> None:
    cid = store.create("ana", title="Robe de soirée", model="llama3.2:1b")
    _, first = exchange(store, "ana", cid, None, "Décris une robe", "Une robe rouge.")
    exchange(store, "ana", cid, first, "Plus court ?", "Rouge.")
    stored = store.get("ana", cid)
    assert stored is not None
    assert [t.content for t in stored.path()] == ["Décris une robe", "Une robe rouge.", "Plus court ?", "Rouge."]
    assert stored.conversation().messages_for_request()[-1] == {"role": "assistant", "content": "Rouge."}
    summary = store.summaries("ana")[0]
    assert (summary.title, summary.model, summary.message_count) == ("Robe de soirée", "llama3.2:1b", 4)


def test_regenerate_and_edit_keep_the_earlier_branch(store: ChatStore) -> None:
    cid = store.create("ana", title="t")
    user, first_reply = exchange(store, "ana", cid, None, "Describe a lamp", "A brass lamp.")
    regenerated = store.start_reply("ana", cid, parent_id=user, model="m", digest="", backend="b", options={})
    regenerated.content, regenerated.status = "A linen lamp.", "complete"
    store.finish_reply("ana", cid, regenerated)
    stored = store.get("ana", cid)
    assert stored.siblings(regenerated.id) == [first_reply, regenerated.id]
    assert stored.path()[-1].content == "A linen lamp."
    store.choose("ana", cid, first_reply)  # flip back
    assert store.get("ana", cid).path()[-1].content == "A brass lamp."
    edited = store.add_user("ana", cid, parent_id=None, text="Describe a chair")  # an edit of the first prompt
    stored = store.get("ana", cid)
    assert stored.siblings(edited.id) == [user, edited.id]
    assert [t.content for t in stored.path()] == ["Describe a chair"]
    store.choose("ana", cid, user)  # the earlier prompt, down to its newest reply
    assert store.get("ana", cid).path()[-1].content == "A linen lamp."


def test_only_the_owner_sees_a_conversation(store: ChatStore) -> None:
    cid = store.create("ana", title="private")
    exchange(store, "ana", cid, None, "secret prompt", "secret reply")
    assert store.get("bob", cid) is None
    assert store.summaries("bob") == [] and store.summaries("bob", search="secret") == []
    assert store.tombstone("bob", cid) is None
    for write in (lambda: store.add_user("bob", cid, parent_id=None, text="x"),
                  lambda: store.rename("bob", cid, "mine now")):
        with pytest.raises(InvalidInput):
            write()
    assert store.delete("bob", cid) is None
    assert store.get("ana", cid).title == "private"


def test_search_finds_titles_and_message_text(store: ChatStore) -> None:
    first = store.create("ana", title="Lampe de chevet")
    exchange(store, "ana", first, None, "laiton et lin", "Une lampe élégante.")
    second = store.create("ana", title="Robe")
    exchange(store, "ana", second, None, "satin", "Une robe ÉLÉGANTE en satin.")
    assert {s.id for s in store.summaries("ana", search="élégante")} == {first, second}
    assert [s.id for s in store.summaries("ana", search="chevet")] == [first]
    assert [s.id for s in store.summaries("ana", search="SATIN")] == [second]
    assert [s.id for s in store.summaries("ana", search="Ro")] == [second]  # short: titles only
    assert store.summaries("ana", search='"; DROP TABLE chat_messages; --') == []
    assert store.count("ana") == 2


def test_rename_refuses_a_10_kb_title_and_keeps_one_line(store: ChatStore) -> None:
    cid = store.create("ana", title="x")
    with pytest.raises(InvalidInput, match=f"at most {MAX_TITLE_CHARS} characters; this one has 10,240"):
        store.rename("ana", cid, "t" * 10_240)
    with pytest.raises(InvalidInput, match="empty"):
        store.rename("ana", cid, " \n\t ")
    assert store.rename("ana", cid, "  Nouvelle\n robe\x00 ") == "Nouvelle robe"
    assert len(title_from_prompt("word " * 2_048)) <= 61


def test_a_deleted_conversation_leaves_a_tombstone_without_content(store: ChatStore, db: Database) -> None:
    cid = store.create("ana", title="gone soon")
    exchange(store, "ana", cid, None, "hello", "hi")
    assert store.delete("ana", cid) == (2, 0)
    assert store.get("ana", cid) is None
    assert store.tombstone("ana", cid).reason == "deleted"
    assert db.execute("SELECT COUNT(*) FROM chat_messages").fetchone()[0] == 0
    assert store.summaries("ana", search="hello") == []
    assert store.delete("ana", cid) is None


def test_retention_and_the_per_person_cap_are_enforced(store: ChatStore, clock: Clock) -> None:
    old = store.create("ana", title="old")
    clock.now += 31 * 86_400
    assert store.get("ana", old) is None  # expired before any purge ran
    ids = []
    for i in range(6):
        clock.now += 1
        ids.append(store.create("ana", title=f"c{i}"))
    assert store.tombstone("ana", old).reason == "expired"
    assert store.tombstone("ana", ids[0]).reason == "cap"
    assert [s.id for s in store.summaries("ana")] == ids[:0:-1]
    store.create("bob", title="bob's own")  # one person's cap never removes another's conversations
    assert store.count("ana") == 5 and store.count("bob") == 1


def test_two_tabs_writing_to_one_conversation_lose_nothing(store: ChatStore) -> None:
    cid = store.create("ana", title="t")
    _, leaf = exchange(store, "ana", cid, None, "first", "one")
    # Two tabs that both saw ``leaf`` send at the same instant: both exchanges are kept, as branches.
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def tab(text: str) -> None:
        try:
            barrier.wait()
            exchange(store, "ana", cid, leaf, text, f"reply to {text}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=tab, args=(t,)) for t in ("from tab A", "from tab B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    stored = store.get("ana", cid)
    contents = {t.content for t in stored.messages.values()}
    assert {"from tab A", "reply to from tab A", "from tab B", "reply to from tab B"} <= contents
    assert len(stored.children[leaf]) == 2 and len(stored.messages) == 6


def test_a_reply_being_written_is_live_and_settles(store: ChatStore) -> None:
    cid = store.create("ana", title="t")
    user = store.add_user("ana", cid, parent_id=None, text="hi")
    reply = store.start_reply("ana", cid, parent_id=user.id, model="m", digest="", backend="b", options={})
    assert store.get("ana", cid).messages[reply.id].status == "streaming"
    assert store.settle([reply.id], timeout_s=0.01) is False

    def stopped_run_saves() -> None:
        reply.content, reply.status = "partial", "stopped"
        store.finish_reply("ana", cid, reply)

    threading.Timer(0.05, stopped_run_saves).start()
    assert store.settle([reply.id], timeout_s=5) is True
    saved = store.get("ana", cid).messages[reply.id]
    assert (saved.status, saved.content) == ("stopped", "partial")


def test_a_reply_left_streaming_by_a_stopped_process_shows_stopped(db: Database, clock: Clock) -> None:
    store = ChatStore(db, retention_days=30, max_per_owner=5, clock=clock)
    cid = store.create("ana", title="t")
    user = store.add_user("ana", cid, parent_id=None, text="hi")
    reply = store.start_reply("ana", cid, parent_id=user.id, model="m", digest="", backend="b", options={})
    restarted = ChatStore(db, retention_days=30, max_per_owner=5, clock=clock)
    saved = restarted.get("ana", cid).messages[reply.id]
    assert saved.status == "stopped" and "stopped while this reply" in saved.error


def _png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (800, 600), color).save(out, "PNG")
    return out.getvalue()


def test_pictures_are_stored_with_the_conversation_and_only_for_its_owner(store: ChatStore) -> None:
    cid = store.create("ana", title="t")
    picture = clean_image(_png((200, 20, 20)), "dress.png")
    user = store.add_user("ana", cid, parent_id=None, text="describe", pictures=[picture])
    [pid] = user.images
    assert store.pictures("ana", cid, [pid]) == {pid: picture.data}
    assert store.pictures("ana", cid, [pid], thumbnails=True)[pid] == picture.thumbnail
    assert store.pictures("bob", cid, [pid]) == {}
    info = store.picture_info("ana", cid)[pid]
    assert (info.name, info.width, info.height, info.mime) == ("dress.png", 800, 600, "image/jpeg")
    edit = store.add_user("ana", cid, parent_id=None, text="describe briefly", keep_pictures=[pid])
    encoded = {key: base64.b64encode(data).decode() for key, data in store.pictures("ana", cid, edit.images).items()}
    request = store.get("ana", cid).conversation(edit.id).messages_for_request(encoded)
    assert request == [{"role": "user", "content": "describe briefly", "images": [picture.base64()]}]


def test_retention_and_cap_settings_are_read_and_checked() -> None:
    from services.config import load_settings

    env = {"OLLAMA_HOST": "127.0.0.1:11434"}
    defaults = load_settings(env)
    assert (defaults.chat_retention_days, defaults.chat_max_conversations) == (90.0, 2_000)
    tuned = load_settings({**env, "DASHBOARD_CHAT_RETENTION_DAYS": "7.5", "DASHBOARD_CHAT_MAX_CONVERSATIONS": "50"})
    assert (tuned.chat_retention_days, tuned.chat_max_conversations) == (7.5, 50)
    for key, value, message in (("DASHBOARD_CHAT_RETENTION_DAYS", "forever", "number of days"),
                                ("DASHBOARD_CHAT_RETENTION_DAYS", "0", "positive number of days"),
                                ("DASHBOARD_CHAT_MAX_CONVERSATIONS", "-3", "whole number from 1 to 1000000")):
        with pytest.raises(InvalidInput, match=message):
            load_settings({**env, key: value})
