"""The training package's tables: the job queue and the pipeline state machine.

``migrations`` is also exported by ``agents.training.jobs`` (where the composition root takes it).
Released steps are never edited or renumbered; new ones are added at the end.
"""

import sqlite_utils

from memory.db import Migrations

migrations = Migrations("training")


@migrations()
def m001_train_jobs(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE train_jobs (
            id INTEGER PRIMARY KEY,
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            config TEXT NOT NULL,
            pipeline_id INTEGER,
            progress TEXT,
            result TEXT,
            error TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            pid INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            updated_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX train_jobs_state ON train_jobs (state, id)")


@migrations()
def m002_train_pipelines(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE train_pipelines (
            id INTEGER PRIMARY KEY,
            archetype TEXT NOT NULL,
            description TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'running'
                CHECK (state IN ('running', 'waiting', 'done', 'failed', 'cancelled')),
            stage TEXT NOT NULL DEFAULT 'spec',
            error TEXT,
            chat_id INTEGER,
            message_id INTEGER,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE train_stages (
            pipeline_id INTEGER NOT NULL REFERENCES train_pipelines (id) ON DELETE CASCADE,
            stage TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('running', 'waiting', 'done', 'failed')),
            inputs TEXT,
            outputs TEXT,
            error TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            PRIMARY KEY (pipeline_id, stage)
        )"""
    )


@migrations()
def m003_train_stage_attempts(db: sqlite_utils.Database) -> None:
    # A stage that fails unexpectedly is tried again after a back-off, a bounded number of times:
    # the failed attempts so far, and when the next may start (seconds since the epoch).
    db.execute("ALTER TABLE train_stages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE train_stages ADD COLUMN retry_at REAL")
