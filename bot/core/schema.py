"""The bot package's tables: the Telegram inbox, access control, answers and their feedback.

One ``Migrations("bot")`` for the whole package so the steps keep one order; the composition
root lists it in ``bot.daemon.all_migrations()``. Never edit a released step: add a new one.
"""

from __future__ import annotations

import sqlite_utils

from memory.db import Migrations

migrations = Migrations("bot")


@migrations()
def m001_telegram_inbox_access_feedback(db: sqlite_utils.Database) -> None:
    # Every update is stored here before getUpdates acknowledges it; payload is cleared once
    # handled, so only the id (for de-duplication) outlives the handling.
    db.execute(
        """CREATE TABLE inbox (
            update_id INTEGER PRIMARY KEY,
            received_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            payload TEXT,
            done_at REAL
        )"""
    )
    db.execute("CREATE INDEX inbox_pending ON inbox (state, update_id)")
    db.execute(
        """CREATE TABLE access_users (
            user_id INTEGER PRIMARY KEY,
            added_at REAL NOT NULL,
            added_by INTEGER,
            invite_code TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE access_invites (
            code TEXT PRIMARY KEY,
            created_by INTEGER NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_by INTEGER,
            used_at REAL
        )"""
    )
    db.execute(
        """CREATE TABLE access_groups (
            chat_id INTEGER PRIMARY KEY,
            allowed_by INTEGER NOT NULL,
            allowed_at REAL NOT NULL
        )"""
    )
    # What a stranger did, never what they wrote.
    db.execute(
        """CREATE TABLE access_audit (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            user_id INTEGER,
            chat_id INTEGER,
            event TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE feedback_answers (
            id INTEGER PRIMARY KEY,
            channel TEXT NOT NULL,
            chat_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            answer TEXT NOT NULL,
            created_at REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE feedback (
            answer_id INTEGER NOT NULL REFERENCES feedback_answers(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL,
            chat_id INTEGER NOT NULL,
            rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
            reason TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (answer_id, user_id)
        )"""
    )
    db.execute(
        """CREATE TABLE feedback_reason_prompts (
            chat_id INTEGER NOT NULL,
            message_id INTEGER NOT NULL,
            answer_id INTEGER NOT NULL REFERENCES feedback_answers(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (chat_id, message_id)
        )"""
    )
    # Keys the bot generates for itself (the HMAC key of button data).
    db.execute("CREATE TABLE bot_secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)")


@migrations()
def m002_chat_settings(db: sqlite_utils.Database) -> None:
    # Per-chat preferences, e.g. answering every message in three passes (/think on).
    db.execute(
        "CREATE TABLE chat_settings (chat_id INTEGER PRIMARY KEY, answer_mode TEXT NOT NULL DEFAULT 'single')"
    )


@migrations()
def m003_chat_persona_and_training_optin(db: sqlite_utils.Database) -> None:
    # The archetype whose promoted adapter answers this chat (/persona NAME; NULL: the default
    # model), and whether the chat's 👍-rated answers may become training data (/train optin on).
    db.execute("ALTER TABLE chat_settings ADD COLUMN persona TEXT")
    db.execute("ALTER TABLE chat_settings ADD COLUMN train_optin INTEGER NOT NULL DEFAULT 0")


@migrations()
def m004_replay_keys(db: sqlite_utils.Database) -> None:
    # The message an answer streams into, by the message it answers: a replayed update (the
    # daemon killed mid-answer) finishes that message instead of sending a second answer.
    db.execute(
        """CREATE TABLE answer_drafts (
            channel TEXT NOT NULL,
            chat_id INTEGER NOT NULL,
            source_message_id INTEGER NOT NULL,
            sent_message_id INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'streaming' CHECK (state IN ('streaming', 'done')),
            updated_at REAL NOT NULL,
            PRIMARY KEY (channel, chat_id, source_message_id)
        )"""
    )
    # The message that asked for an invite: a replayed /invite gives the same code, not a second.
    db.execute("ALTER TABLE access_invites ADD COLUMN source_key TEXT")
    db.execute(
        "CREATE UNIQUE INDEX access_invites_source ON access_invites (source_key)"
        " WHERE source_key IS NOT NULL"
    )


@migrations()
def m005_chat_voice_replies(db: sqlite_utils.Database) -> None:
    # Whether voice notes in this chat are answered with a voice note too (/voice on).
    db.execute("ALTER TABLE chat_settings ADD COLUMN voice_replies INTEGER NOT NULL DEFAULT 0")


@migrations()
def m006_feedback_by_reaction(db: sqlite_utils.Database) -> None:
    # The message an answer was shown in, so that a reaction set on it (👍, 👎: Telegram's own,
    # ``Feedback.on_reaction``) counts as a vote; answers shown before this have none.
    db.execute("ALTER TABLE feedback_answers ADD COLUMN message_id INTEGER")
    db.execute(
        "CREATE INDEX feedback_answers_message ON feedback_answers (chat_id, message_id)"
        " WHERE message_id IS NOT NULL"
    )
