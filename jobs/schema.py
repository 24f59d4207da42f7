"""The jobs package's tables, as numbered migrations (never edit a released step; add one).

``job_runs``: one row per run of a scheduled job (times are UTC epoch seconds). ``reminders``:
what people asked to be reminded of, one-shot (``due_at``) or recurring (``cron``).
``job_summaries``: which chat-hour has which summary memory, so a re-run replaces, never duplicates.
``job_digests``: the periods admin digests were sent for, so the next one starts where it ended.
``job_lesson_weeks``: which week's 👎 feedback was synthesised into which lessons (and from which
votes, so an unchanged week is not sent to the model again); ``job_lesson_cards``: the "lesson"
memories written into each chat, so a re-run replaces them instead of adding copies.
"""

from __future__ import annotations

import sqlite_utils

from memory.db import Migrations

migrations = Migrations("jobs")


@migrations()
def m001_runs_reminders_summaries(db: sqlite_utils.Database) -> None:
    for statement in (
        """CREATE TABLE job_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            outcome TEXT NOT NULL,          -- running, ok, failed, timeout, interrupted
            error TEXT,
            output TEXT,
            trigger TEXT NOT NULL DEFAULT 'schedule'   -- schedule, catch-up, manual
        )""",
        "CREATE INDEX job_runs_job ON job_runs (job, started_at)",
        """CREATE TABLE reminders (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL,
            user_id INTEGER,
            text TEXT NOT NULL,
            due_at REAL,                    -- one-shot: when (UTC epoch)
            cron TEXT,                      -- recurring: crontab expression
            timezone TEXT NOT NULL,
            created_at REAL NOT NULL,
            delivered_at REAL,              -- one-shot: when it went out (then inactive)
            last_fired_at REAL,
            active INTEGER NOT NULL DEFAULT 1
        )""",
        "CREATE INDEX reminders_chat ON reminders (chat_id, active)",
        """CREATE TABLE job_summaries (
            chat_id INTEGER NOT NULL,
            hour_start REAL NOT NULL,
            memory_id INTEGER,
            last_message_id INTEGER NOT NULL,
            message_count INTEGER NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (chat_id, hour_start)
        )""",
    ):
        db.execute(statement)


@migrations()
def m002_digests_lessons(db: sqlite_utils.Database) -> None:
    for statement in (
        """CREATE TABLE job_digests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            period_start REAL NOT NULL,     -- UTC epoch seconds
            period_end REAL NOT NULL,
            sent_at REAL NOT NULL,
            account TEXT NOT NULL           -- the one-line account of what it reported
        )""",
        """CREATE TABLE job_lesson_weeks (
            week_start REAL PRIMARY KEY,    -- Monday 00:00 in the jobs time zone, as UTC epoch
            week TEXT NOT NULL,             -- ISO week label, e.g. 2026-W14
            feedback TEXT NOT NULL,         -- JSON [[answer_id, user_id, updated_at], ...] of the 👎 used
            lessons TEXT NOT NULL,          -- JSON list of the lesson texts (may be empty)
            model TEXT,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE job_lesson_cards (
            memory_id INTEGER PRIMARY KEY,  -- the "lesson" row in memories
            chat_id INTEGER NOT NULL,
            text TEXT NOT NULL,
            week TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX job_lesson_cards_chat ON job_lesson_cards (chat_id)",
    ):
        db.execute(statement)


@migrations()
def m003_health_snapshot(db: sqlite_utils.Database) -> None:
    # The daemon's latest health results, so `familiar health` in another process can show the
    # checks only the daemon can run (Telegram reachability, the model breaker, the index).
    db.execute(
        "CREATE TABLE health_snapshot (name TEXT PRIMARY KEY, status TEXT NOT NULL,"
        " detail TEXT NOT NULL, checked_at REAL NOT NULL)"
    )


@migrations()
def m004_reminder_source_key(db: sqlite_utils.Database) -> None:
    # The message that asked for the reminder ("telegram:CHAT:MESSAGE"): a replayed /remind or
    # /every (the daemon killed before the update was marked done) finds it instead of adding one.
    db.execute("ALTER TABLE reminders ADD COLUMN source_key TEXT")
    db.execute(
        "CREATE UNIQUE INDEX reminders_source ON reminders (source_key) WHERE source_key IS NOT NULL"
    )


@migrations()
def m005_agent_tasks(db: sqlite_utils.Database) -> None:
    # Scheduled agent tasks: at each cron time the agent answers ``prompt`` in the chat, with tools.
    db.execute(
        """CREATE TABLE agent_tasks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL,
            user_id INTEGER,
            cron TEXT NOT NULL,
            prompt TEXT NOT NULL,
            timezone TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_run_at REAL,
            active INTEGER NOT NULL DEFAULT 1
        )"""
    )
    db.execute("CREATE INDEX agent_tasks_chat ON agent_tasks (chat_id, active)")


@migrations()
def m006_reminder_sending_at(db: sqlite_utils.Database) -> None:
    # Set before a one-shot is sent, kept until it is marked delivered: after a crash between the
    # two, the restart sends it again and says it may be a repeat.
    db.execute("ALTER TABLE reminders ADD COLUMN sending_at REAL")


@migrations()
def m007_agent_task_running_at(db: sqlite_utils.Database) -> None:
    # Set when a scheduled task's run starts, cleared when it ends: after a crash in between,
    # the restart runs it again (with a note) instead of losing the run.
    db.execute("ALTER TABLE agent_tasks ADD COLUMN running_at REAL")


@migrations()
def m008_reminder_topic(db: sqlite_utils.Database) -> None:
    # The place in the chat a reminder was set in (a group's forum topic): it is delivered there,
    # not to the group's General topic. NULL: the chat itself (every reminder set before this).
    db.execute("ALTER TABLE reminders ADD COLUMN topic INTEGER")
