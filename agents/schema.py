"""The agents package's tables (``llm_*``, ``review_*``, ``todos``, ``agent_*``), as numbered migrations.

Never renumber or edit a released step; add new ones at the end.
"""

import sqlite_utils

from memory.db import Migrations

migrations = Migrations("agents")


@migrations()
def m001_llm_usage(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE llm_usage (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            day TEXT NOT NULL,              -- UTC date, for daily budgets
            user_id INTEGER,
            chat_id INTEGER,
            purpose TEXT NOT NULL,          -- chat, draft, critique, refine, review, repair, extract, ...
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            latency_ms INTEGER NOT NULL DEFAULT 0,
            ok INTEGER NOT NULL DEFAULT 1,
            error TEXT
        )"""
    )
    db.execute("CREATE INDEX llm_usage_user_day ON llm_usage (user_id, day)")
    db.execute("CREATE INDEX llm_usage_day ON llm_usage (day)")


@migrations()
def m002_review_runs(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE review_runs (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            kind TEXT NOT NULL,             -- three_pass | panel
            chat_id INTEGER,
            user_id INTEGER,
            task TEXT NOT NULL,
            outcome TEXT NOT NULL,          -- clean | refined | approved | threshold | max_rounds
            rounds INTEGER NOT NULL,
            final_text TEXT NOT NULL,
            transcript TEXT NOT NULL,       -- JSON: passes / rounds with scores and usage
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            decision TEXT                   -- accepted | rejected | NULL (set from the buttons)
        )"""
    )
    db.execute("CREATE INDEX review_runs_chat ON review_runs (chat_id, ts)")


@migrations()
def m003_llm_fact_marks(db: sqlite_utils.Database) -> None:
    # The last message of each chat that fact extraction has taken, so that a restart neither
    # forgets turns waiting for the next batch nor hands the same turns to the extractor twice.
    db.execute(
        """CREATE TABLE llm_fact_marks (
            chat_id INTEGER PRIMARY KEY,
            last_message_id INTEGER NOT NULL,
            ts TEXT NOT NULL
        )"""
    )


@migrations()
def m004_todos(db: sqlite_utils.Database) -> None:
    # The to-do list of each chat (agents/tools/todos.py): open while done_at is NULL.
    db.execute(
        """CREATE TABLE todos (
            id INTEGER PRIMARY KEY,
            chat_id INTEGER NOT NULL,
            user_id INTEGER,
            text TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 1,    -- 0 high, 1 normal, 2 low
            due_at REAL,                            -- unix time; NULL: no due date
            due_all_day INTEGER NOT NULL DEFAULT 0, -- due by the end of that day, no time given
            timezone TEXT NOT NULL,                 -- the chat's zone when it was added
            created_at REAL NOT NULL,
            done_at REAL
        )"""
    )
    db.execute("CREATE INDEX todos_open ON todos (chat_id, done_at, priority, due_at)")


@migrations()
def m005_todo_source_key(db: sqlite_utils.Database) -> None:
    # The message that added a to-do (``Incoming.key``): a replayed /todo TEXT adds nothing new.
    db.execute("ALTER TABLE todos ADD COLUMN source_key TEXT")
    db.execute(
        "CREATE UNIQUE INDEX todos_source ON todos (source_key) WHERE source_key IS NOT NULL"
    )


@migrations()
def m006_agent_runs_and_tool_calls(db: sqlite_utils.Database) -> None:
    # One row per answer that offered tools; a paused answer (a call waiting for the user's ✅)
    # keeps everything needed to carry on in ``state``, so a restart while waiting loses nothing.
    db.execute(
        """CREATE TABLE agent_runs (
            id INTEGER PRIMARY KEY,
            chat_id INTEGER NOT NULL,
            user_id INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            status TEXT NOT NULL,           -- running | done | waiting | stopped | failed | expired
            stop_reason TEXT,               -- steps | deadline | budget (a bound was reached)
            state TEXT,                     -- JSON of a paused answer, NULL otherwise
            waiting_for TEXT,               -- the call awaiting confirmation, in plain words
            expires_at REAL,                -- when the wait ends without an answer
            source_key TEXT                 -- the message answered ("CHAT:MESSAGE"), if known
        )"""
    )
    db.execute("CREATE INDEX agent_runs_waiting ON agent_runs (status, expires_at)")
    db.execute("CREATE INDEX agent_runs_source ON agent_runs (source_key)")
    # Every tool call of an answer, beside it: not replayed into later prompts.
    db.execute(
        """CREATE TABLE agent_tool_calls (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT NOT NULL,        -- JSON as the model sent it
            outcome TEXT NOT NULL,          -- ok | error | declined | expired
            result_chars INTEGER NOT NULL DEFAULT 0,
            latency_ms INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            result TEXT,                    -- what a call that changed something returned
            created_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX agent_tool_calls_run ON agent_tool_calls (run_id, id)")


@migrations()
def m007_todo_ids_never_reused(db: sqlite_utils.Database) -> None:
    # ``/todo rm`` deletes rows: without AUTOINCREMENT the next item would take a deleted item's
    # id, and a ✅ button (or a "/todo done 5" typed from an old list) meant for the deleted one
    # would complete the new one. The table is rebuilt with the same columns and indexes.
    db.execute(
        """CREATE TABLE todos_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL,
            user_id INTEGER,
            text TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 1,    -- 0 high, 1 normal, 2 low
            due_at REAL,                            -- unix time; NULL: no due date
            due_all_day INTEGER NOT NULL DEFAULT 0, -- due by the end of that day, no time given
            timezone TEXT NOT NULL,                 -- the chat's zone when it was added
            created_at REAL NOT NULL,
            done_at REAL,
            source_key TEXT                         -- the message that added it, for replays
        )"""
    )
    columns = "id, chat_id, user_id, text, priority, due_at, due_all_day, timezone, created_at"
    columns += ", done_at, source_key"
    db.execute(f"INSERT INTO todos_new ({columns}) SELECT {columns} FROM todos")
    db.execute("DROP TABLE todos")
    db.execute("ALTER TABLE todos_new RENAME TO todos")
    db.execute("CREATE INDEX todos_open ON todos (chat_id, done_at, priority, due_at)")
    db.execute(
        "CREATE UNIQUE INDEX todos_source ON todos (source_key) WHERE source_key IS NOT NULL"
    )
