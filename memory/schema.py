"""The memory package's tables, as numbered migrations (never edit a released step; add one).

``memories`` is the unit of recall: every message, summary, fact, note and lesson is one row with
its scope, kind, time, content hash and embedding. Its ``id`` is also the vector's id in FAISS,
so it is AUTOINCREMENT: an id is never reused after a delete, and "rows above the index's highest
id" is exactly what the index has not seen. Full text is kept in sync by triggers, so no code
path can forget to update it: ``memories_fts`` (external content) holds every row but
conversation turns, which are in ``turns_fts`` with the turns beside them (m004).
"""

from __future__ import annotations

import numpy as np
import sqlite_utils

from memory.db import Migrations
from memory.text import sentences

migrations = Migrations("memory")


@migrations()
def m001_memories_messages(db: sqlite_utils.Database) -> None:
    # One statement at a time: executescript() would COMMIT the migration's transaction.
    for statement in _M001:
        db.execute(statement)


_M001 = [
    s.strip()
    for s in """
        CREATE TABLE memories (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL,
            user_id INTEGER,
            kind TEXT NOT NULL,
            text TEXT NOT NULL,
            ts REAL NOT NULL,
            created_at REAL NOT NULL,
            ref TEXT,
            content_hash TEXT NOT NULL,
            embedding BLOB,
            embedding_model TEXT,
            embedding_dim INTEGER,
            pinned INTEGER NOT NULL DEFAULT 0,
            source TEXT,
            superseded_by INTEGER,
            superseded_at REAL,
            meta TEXT
        );;
        CREATE INDEX memories_scope ON memories (chat_id, kind, ts);;
        CREATE INDEX memories_user ON memories (user_id);;
        CREATE INDEX memories_hash ON memories (content_hash, embedding_model);;
        CREATE INDEX memories_model ON memories (embedding_model);;

        CREATE VIRTUAL TABLE memories_fts USING fts5(
            text, content='memories', content_rowid='id',
            tokenize='porter unicode61 remove_diacritics 2'
        );;
        CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
            INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
        END;;
        CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
            INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END;;
        CREATE TRIGGER memories_au AFTER UPDATE OF text ON memories BEGIN
            INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
            INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);
        END;;

        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL,
            user_id INTEGER,
            role TEXT NOT NULL,
            text TEXT NOT NULL,
            ts REAL NOT NULL,
            telegram_message_id INTEGER,
            meta TEXT,
            memory_id INTEGER REFERENCES memories(id) ON DELETE SET NULL
        );;
        CREATE INDEX messages_chat ON messages (chat_id, id);;
        CREATE INDEX messages_user ON messages (user_id);;
        CREATE INDEX messages_memory ON messages (memory_id);;

        CREATE TABLE summaries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL,
            memory_id INTEGER NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
            first_message_id INTEGER NOT NULL,
            last_message_id INTEGER NOT NULL,
            created_at REAL NOT NULL
        );;
        CREATE INDEX summaries_chat ON summaries (chat_id, last_message_id);;
    """.split(";;")
    if s.strip()
]


@migrations()
def m002_one_turn_per_telegram_message(db: sqlite_utils.Database) -> None:
    # A replayed update (the daemon killed while answering) must find the turn it stored, not add
    # it again. Copies stored before this step keep their text; only the later ones lose the
    # Telegram id (it stays in ``meta``), so nothing the user wrote is deleted.
    db.execute(
        """UPDATE messages
           SET meta = json_set(coalesce(meta, '{}'), '$.duplicate_of_telegram_message_id',
                               telegram_message_id),
               telegram_message_id = NULL
           WHERE role = 'user' AND telegram_message_id IS NOT NULL
             AND id > (SELECT min(m.id) FROM messages m
                       WHERE m.chat_id = messages.chat_id AND m.role = 'user'
                         AND m.telegram_message_id = messages.telegram_message_id)"""
    )
    db.execute(
        "CREATE UNIQUE INDEX messages_telegram_turn ON messages (chat_id, telegram_message_id)"
        " WHERE role = 'user' AND telegram_message_id IS NOT NULL"
    )


@migrations()
def m003_sentence_vectors(db: sqlite_utils.Database) -> None:
    # ``parts``: the vectors of a note's, document's, summary's or lesson's sentences (float32,
    # float16 since m007; one after another), derived with its embedding: such a row is found by
    # its best sentence too, and its own vector is their mean. Rows embedded before are
    # embedded again when the memory warms up (the index drops and re-adds them): those kinds,
    # to get their sentences, and any text over 254 characters, whose vector was made from its
    # first 256 tokens only (the model's window). Every token covers a character, so a shorter
    # text was whole.
    db.execute("ALTER TABLE memories ADD COLUMN parts BLOB")
    db.execute(
        "UPDATE memories SET embedding = NULL, embedding_model = NULL, embedding_dim = NULL"
        " WHERE embedding IS NOT NULL"
        " AND (kind IN ('note', 'document', 'summary', 'lesson') OR length(text) > 254)"
    )


# The turn just before or after a conversation turn (in its chat, by message id, turns with a
# memory only). Its words count for the turn only when it is the other side's (the question a
# reply answers, the reply a question got: another role), and everyone who may see the turn may
# see it too (the same person's, or the assistant's): one person's run of turns (a journal kept
# in a chat) are not each other's context, and in a group one member's search must not find
# their own turns by the words of another's.
_NEXT_TO = (
    "(SELECT CASE WHEN {a}.role != t.role"
    " AND ({a}.user_id IS NULL OR t.user_id IS NULL OR {a}.user_id = t.user_id)"
    " THEN {a}.text END FROM messages {a} WHERE {a}.chat_id = t.chat_id AND {a}.id {op} t.id"
    " AND {a}.memory_id IS NOT NULL ORDER BY {a}.id {order} LIMIT 1)"
)
_PREVIOUS_TURN = (
    "(SELECT id FROM messages WHERE chat_id = {row}.chat_id AND id < {row}.id"
    " AND memory_id IS NOT NULL ORDER BY id DESC LIMIT 1)"
)
_NEXT_TURN = (
    "(SELECT id FROM messages WHERE chat_id = {row}.chat_id AND id > {row}.id"
    " AND memory_id IS NOT NULL ORDER BY id LIMIT 1)"
)


# Whether the row ``old`` is in ``memories_fts``: all but turns.
_IN_MEMORIES_FTS = (
    "(old.kind != 'message' OR NOT EXISTS (SELECT 1 FROM messages WHERE memory_id = old.id))"
)


def _rewindow(ids: str) -> str:
    """Trigger statements that index again the turns with these message ids (an SQL list)."""
    return (
        f"DELETE FROM turns_fts WHERE rowid IN (SELECT memory_id FROM messages WHERE id IN ({ids}));\n"
        "  INSERT INTO turns_fts (rowid, own, around)"
        f" SELECT memory_id, own, around FROM turn_windows WHERE message_id IN ({ids});"
    )


@migrations()
def m004_turns_in_context(db: sqlite_utils.Database) -> None:
    # ``turns_fts``: conversation turns ranked by their own words and, at a lower weight
    # (``memory.turn_context_words``), the words of the turns just before and after them; the
    # row's length counts both, so a one-line reply is not favoured for its brevity. An answer
    # ("Travel was also her great passion!") is found by the question it answers ("What other
    # hobbies did your mother have?"). Triggers on ``messages`` keep it in step within the
    # writing transaction, as ``memories_fts``: a turn stored or forgotten re-indexes the turns
    # beside it, so a forgotten turn's words leave its neighbours' rows too. A regular (not
    # external-content) table: the neighbours' text is not a column anywhere to point it at.
    before = _NEXT_TO.format(a="p", op="<", order="DESC")
    after = _NEXT_TO.format(a="n", op=">", order="ASC")
    new_prev, old_prev = _PREVIOUS_TURN.format(row="new"), _PREVIOUS_TURN.format(row="old")
    new_next, old_next = _NEXT_TURN.format(row="new"), _NEXT_TURN.format(row="old")
    statements = [
        "CREATE VIRTUAL TABLE turns_fts USING fts5("
        "own, around, tokenize='porter unicode61 remove_diacritics 2')",
        "CREATE VIEW turn_windows AS SELECT t.id AS message_id, t.memory_id AS memory_id,"
        f" t.text AS own, coalesce({before}, '') || ' ' || coalesce({after}, '') AS around"
        " FROM messages t WHERE t.memory_id IS NOT NULL",
        "CREATE TRIGGER turns_fts_ai AFTER INSERT ON messages WHEN new.memory_id IS NOT NULL"
        f" BEGIN\n  {_rewindow(f'{new_prev}, new.id')}\nEND",
        "CREATE TRIGGER turns_fts_ad AFTER DELETE ON messages WHEN old.memory_id IS NOT NULL"
        " BEGIN\n  DELETE FROM turns_fts WHERE rowid = old.memory_id;\n"
        f"  {_rewindow(f'{old_prev}, {old_next}')}\nEND",
        # A turn's memory forgotten sets its ``memory_id`` to NULL (the foreign key): the same.
        "CREATE TRIGGER turns_fts_au AFTER UPDATE OF memory_id ON messages"
        " WHEN old.memory_id IS NOT new.memory_id"
        " BEGIN\n  DELETE FROM turns_fts WHERE rowid = old.memory_id;\n"
        f"  {_rewindow(f'{new_prev}, new.id, {new_next}')}\nEND",
        "INSERT INTO turns_fts (rowid, own, around) SELECT memory_id, own, around FROM turn_windows",
        # ``memories_fts`` keeps every other row: a turn's words are searched in one table, once.
        # A turn is a "message" row with a row in ``messages``; a "message" row without one (an
        # older `memory add --kind message`; now every message is a turn) stays where it is.
        # Kinds and texts never change, so the values deleted are the ones indexed.
        "INSERT INTO memories_fts (memories_fts, rowid, text) SELECT 'delete', m.id, m.text"
        " FROM memories m WHERE m.kind = 'message' AND m.id IN (SELECT memory_id FROM messages)",
        "DROP TRIGGER memories_ai",
        "DROP TRIGGER memories_ad",
        "DROP TRIGGER memories_au",
        # A message's turn is stored after it (``store.insert_memories``): not indexed here.
        "CREATE TRIGGER memories_ai AFTER INSERT ON memories WHEN new.kind != 'message' BEGIN\n"
        "  INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);\nEND",
        # Before the delete: after it, the foreign key has already let go of its turn.
        f"CREATE TRIGGER memories_bd BEFORE DELETE ON memories WHEN {_IN_MEMORIES_FTS} BEGIN\n"
        "  INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);\n"
        "END",
        f"CREATE TRIGGER memories_au AFTER UPDATE OF text ON memories WHEN {_IN_MEMORIES_FTS}"
        " BEGIN\n"
        "  INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.id, old.text);\n"
        "  INSERT INTO memories_fts(rowid, text) VALUES (new.id, new.text);\nEND",
    ]
    for statement in statements:
        db.execute(statement)


@migrations()
def m005_chat_time_index(db: sqlite_utils.Database) -> None:
    # A time window without a kind ("what did I say about the boiler last March?") reads a
    # chat's rows by time; ``memories_scope`` (chat, kind, ts) can use only its first column
    # there, so SQLite read every row of the chat: 12 ms a search in a chat of 100k rows, and
    # in every windowed search (``store.ids_matching``, the window's list of rows).
    db.execute("CREATE INDEX memories_chat_time ON memories (chat_id, ts)")


@migrations()
def m006_turns_by_sentence(db: sqlite_utils.Database) -> None:
    # Conversation turns are embedded by sentence too (``types.SENTENCE_KINDS``), as notes since
    # m003: a turn of several sentences keeps its sentences' vectors and its own is their mean.
    # The turns embedded whole are embedded again when the memory warms up (the index drops and
    # re-adds them), in the background as any pending row; a turn of one sentence gets the same
    # vector either way and keeps it. Once, at the first open: about 2 s at 100k turns.
    db.conn.create_function("sentence_count", 1, lambda text: len(sentences(text)))
    db.execute(
        "UPDATE memories SET embedding = NULL, embedding_model = NULL, embedding_dim = NULL"
        " WHERE kind = 'message' AND embedding IS NOT NULL AND sentence_count(text) > 1"
    )


def _half(blob: bytes | None) -> bytes | None:
    """float32 sentence vectors as float16; a blob that is not whole float32s (never written so)
    is dropped: the row is then ranked by its own vector alone."""
    if blob is None or len(blob) % 4:
        return None
    return np.frombuffer(blob, dtype="<f4").astype("<f2").tobytes()


@migrations()
def m007_sentence_vectors_in_half(db: sqlite_utils.Database) -> None:
    # ``parts`` in half precision (``store.PARTS_DTYPE``): half the bytes for what only ranks
    # candidates by their best sentence. Once, at the first open, in one transaction.
    db.conn.create_function("half_precision", 1, _half, deterministic=True)
    db.execute("UPDATE memories SET parts = half_precision(parts) WHERE parts IS NOT NULL")


@migrations()
def m008_times_told_of(db: sqlite_utils.Database) -> None:
    # The time a memory's words place what it tells at, when not the time it was said
    # ("yesterday I went bowling": the day before; ``when.time_spoken_of``), so that a
    # question's window finds it too (``Filters.about``). Derived from the text in the chats'
    # time zone: read before a row is stored (``store.tell_times``); ``about_read`` 0 marks the
    # rows from before, read at warm-up (``store.read_times_told``). Adding columns is instant.
    db.execute("ALTER TABLE memories ADD COLUMN about_since REAL")
    db.execute("ALTER TABLE memories ADD COLUMN about_until REAL")
    db.execute("ALTER TABLE memories ADD COLUMN about_read INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "CREATE INDEX memories_chat_about ON memories (chat_id, about_until)"
        " WHERE about_until IS NOT NULL"
    )
    db.execute("CREATE INDEX memories_about_unread ON memories (id) WHERE about_read = 0")
    # The zone they were read in: another (``jobs.timezone`` changed) reads them all again.
    db.execute("CREATE TABLE memory_times_zone (zone TEXT NOT NULL)")
