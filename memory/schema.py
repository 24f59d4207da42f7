"""The memory package's tables, as numbered migrations (never edit a released step; add one).

``memories`` is the unit of recall: every message, summary, fact, note and lesson is one row with
its scope, kind, time, content hash and embedding. Its ``id`` is also the vector's id in FAISS,
so it is AUTOINCREMENT: an id is never reused after a delete, and "rows above the index's highest
id" is exactly what the index has not seen. ``memories_fts`` is an external-content FTS5 table
kept in sync by triggers, so no code path can forget to update it.
"""

from __future__ import annotations

import sqlite_utils

from memory.db import Migrations
from memory.types import SENTENCE_KINDS

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
    # one after another), derived with its embedding: such a row is found by its best sentence
    # too, and its own vector is their mean. Rows embedded before are embedded again when the
    # memory warms up (the index drops and re-adds them): those kinds, to get their sentences,
    # and any text over 254 characters, whose vector was made from its first 256 tokens only
    # (the model's window). Every token covers a character, so a shorter text was whole.
    db.execute("ALTER TABLE memories ADD COLUMN parts BLOB")
    db.execute(
        "UPDATE memories SET embedding = NULL, embedding_model = NULL, embedding_dim = NULL"
        " WHERE embedding IS NOT NULL"
        f" AND (kind IN ({','.join(repr(k) for k in SENTENCE_KINDS)}) OR length(text) > 254)"
    )
