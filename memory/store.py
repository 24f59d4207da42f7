"""Synchronous SQLite access for memory rows: writes, vectors, search reads, export and stats.
The row types live in ``memory.rows``, the conversation tables in ``memory.turns`` (both
re-exported here).

The facade calls these through ``db.run`` (on the database thread) or directly from worker
threads and the CLI; each function takes the lock through ``db.transaction()``/``db.read()``.
Times are stored as UTC epoch seconds (REAL) so range filters and recency are plain arithmetic.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import tzinfo
from typing import Any

import numpy as np
from loguru import logger

from memory.db import Database
from memory.rows import COLUMNS as _COLUMNS
from memory.rows import Filters, NewMemory, Row, from_epoch, to_epoch
from memory.rows import blob as _blob
from memory.turns import (
    MSG_COLUMNS,
    add_summary,
    adjacent_turns,
    answer_to,
    conversation_between,
    find_turn,
    latest_summary,
    latest_user_turn,
    message_id_of,
    message_of,
    messages_between,
    previous_turn_vectors,
    recent_messages,
    turn_of,
    turns_in_chats,
    user_turns,
)
from memory.types import SENTENCE_KINDS, TOLD_KINDS, Scope
from memory.when import READING, time_spoken_of

__all__ = [  # the row types and the conversation tables stay importable from here
    "Filters",
    "NewMemory",
    "Row",
    "add_summary",
    "adjacent_turns",
    "answer_to",
    "find_turn",
    "conversation_between",
    "from_epoch",
    "latest_summary",
    "latest_user_turn",
    "message_id_of",
    "messages_between",
    "previous_turn_vectors",
    "recent_messages",
    "to_epoch",
    "turn_of",
    "turns_in_chats",
    "user_turns",
]


# -- writes -----------------------------------------------------------------------------------
# A row's sentence vectors (``parts``) in half precision, one after another (memory m007): a
# sentence vector serves only to rank candidates by their best sentence, where float16's three
# significant digits change no order that matters, and a turn of several sentences keeps about
# 2 KB of them instead of 4 KB. The row's own vector stays float32: the index is built from it.
PARTS_DTYPE = np.dtype("<f2")


def parts_blob(parts: np.ndarray | None) -> bytes | None:
    return None if parts is None else np.asarray(parts, dtype=PARTS_DTYPE).tobytes()


def parts_array(blob: bytes, dim: int) -> np.ndarray:
    """Stored sentence vectors as a float32 (sentences, dim) array."""
    return np.frombuffer(blob, dtype=PARTS_DTYPE).astype(np.float32).reshape(-1, dim)


def insert_memories(db: Database, rows: Sequence[NewMemory]) -> list[int]:
    now = time.time()
    ids: list[int] = []
    with db.transaction() as conn:
        for r in rows:
            memory_id = _insert_memory(conn, r, now)
            ids.append(memory_id)
            if r.role is not None:
                conn.execute(
                    "INSERT INTO messages (chat_id, user_id, role, text, ts, telegram_message_id, meta,"
                    " memory_id) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        r.chat_id,
                        r.user_id,
                        r.role,
                        r.text,
                        r.ts,
                        r.telegram_message_id,
                        json.dumps(r.meta) if r.meta else None,
                        memory_id,
                    ),
                )
    return ids


def _insert_memory(conn: sqlite3.Connection, r: NewMemory, now: float) -> int:
    cur = conn.execute(
        "INSERT INTO memories (chat_id, user_id, kind, text, ts, created_at, ref, content_hash,"
        " embedding, embedding_model, embedding_dim, pinned, source, meta, parts,"
        " about_since, about_until, about_read)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            r.chat_id,
            r.user_id,
            r.kind,
            r.text,
            r.ts,
            now,
            r.ref,
            r.content_hash,
            _blob(r.embedding),
            r.model if r.embedding is not None else None,
            None if r.embedding is None else int(r.embedding.shape[-1]),
            int(r.pinned),
            r.source,
            json.dumps(r.meta) if r.meta else None,
            parts_blob(r.parts) if r.embedding is not None else None,
            *(r.about or (None, None)),
            int(r.about_read),
        ),
    )
    return int(cur.lastrowid)  # type: ignore[arg-type]


def revise_turn(
    db: Database, message_id: int, old_text: str, item: NewMemory, meta: dict[str, Any]
) -> int | None:
    """A user turn's words replaced by ``item``'s (the person edited their message): the turn
    gets a new memory row (new text, vector, sentence vectors, time told of) in place of its old
    one, and ``meta`` merged into its own; returns the new row's id. A new id, so the vector
    index, which is reconciled with SQLite by ids after a crash, cannot keep the old words'
    vector. Full text follows by the triggers on the turn's memory (m004: its ``turns_fts`` row
    and its neighbours'); the old words stay in FTS5's segments until ``purge_deleted``. None
    (nothing changed) when the turn no longer reads ``old_text`` (revised meanwhile) or is gone."""
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT memory_id, meta FROM messages WHERE id = ? AND text = ?",
            (message_id, old_text),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        new_id = _insert_memory(conn, item, time.time())  # a turn's row: not in memories_fts
        # While the turn still points at it, so it is known not to be in memories_fts; the
        # foreign key lets go of the turn (its full text row goes), and the update re-indexes it.
        conn.execute("DELETE FROM memories WHERE id = ?", (int(row[0]),))
        merged = {**(json.loads(row[1]) if row[1] else {}), **meta}
        conn.execute(
            "UPDATE messages SET text = ?, meta = ?, memory_id = ? WHERE id = ?",
            (item.text, json.dumps(merged), new_id, message_id),
        )
    return new_id


def purge_deleted(db: Database) -> None:
    """After a forget, leave the deleted text in no byte of the store: FTS5 keeps a deleted
    row's words in its index segments (a delete adds a marker) until they are merged, so both
    full-text indexes are merged into one segment each ('optimize'; the pages freed are zeroed,
    ``secure_delete``), then the WAL, which holds earlier versions of the pages, is checkpointed
    and truncated. Another connection reading at that moment (a backup) can keep the WAL from
    being truncated; it is then at the next checkpoint (at the latest when the store closes)."""
    with db.transaction() as conn:
        for table in ("memories_fts", "turns_fts"):
            conn.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")
    with db.read() as conn:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    if busy:
        logger.info("after a forget, the WAL was not truncated (a reader): at the next checkpoint")


def set_embeddings(
    db: Database,
    ids: Sequence[int],
    vectors: np.ndarray,
    model: str,
    parts: Sequence[np.ndarray | None] | None = None,
) -> None:
    parts = parts if parts is not None else [None] * len(ids)
    with db.transaction() as conn:
        conn.executemany(
            "UPDATE memories SET embedding = ?, embedding_model = ?, embedding_dim = ?, parts = ?"
            " WHERE id = ?",
            [
                (_blob(v), model, int(vectors.shape[1]), parts_blob(p), int(i))
                for i, v, p in zip(ids, vectors, parts, strict=True)
            ],
        )


def supersede(db: Database, old_id: int, new_id: int) -> None:
    with db.transaction() as conn:
        conn.execute(
            "UPDATE memories SET superseded_by = ?, superseded_at = ? WHERE id = ?",
            (new_id, time.time(), old_id),
        )


def touch(db: Database, memory_id: int, pinned: bool) -> None:
    """A fact heard again: refresh its time, and pin it if asked (never unpin silently)."""
    with db.transaction() as conn:
        conn.execute(
            "UPDATE memories SET ts = max(ts, ?), pinned = max(pinned, ?) WHERE id = ?",
            (time.time(), int(pinned), memory_id),
        )


def delete_memory(db: Database, memory_id: int, scope: Scope) -> bool:
    where, params = Filters(scope, include_superseded=True).sql("memories")
    with db.transaction() as conn:
        cur = conn.execute(f"DELETE FROM memories WHERE id = ? AND {where}", (memory_id, *params))
        if cur.rowcount:
            conn.execute("DELETE FROM messages WHERE memory_id IS NULL")
        return cur.rowcount > 0


# What else holds a user's words, besides their own rows: the assistant's answers to their turns
# (meta ``reply_to``); a chat's compaction summaries from the first that covers one of their
# turns on (each one starts from the one before); and the hourly summaries of an hour they spoke
# in (``jobs.summarize``: the row's ``ts`` is the hour's start). The running summary is written
# again from what is left when next needed; a past hour's summary is not.
_DRAWN_FROM_USER = """
SELECT a.memory_id FROM messages a
 WHERE a.role = 'assistant' AND a.memory_id IS NOT NULL
   AND json_extract(a.meta, '$.reply_to') IN (SELECT id FROM messages WHERE user_id = :u)
UNION
SELECT s.memory_id FROM summaries s
 WHERE s.last_message_id >= (SELECT min(id) FROM messages
                              WHERE user_id = :u AND chat_id = s.chat_id)
UNION
SELECT h.id FROM memories h
 WHERE h.kind = 'summary' AND h.ref LIKE 'hour:%' AND EXISTS (
   SELECT 1 FROM messages m WHERE m.user_id = :u AND m.chat_id = h.chat_id
      AND m.ts >= h.ts AND m.ts < h.ts + 3600)
"""


def delete_user(db: Database, user_id: int) -> list[int]:
    """Every row of the user (messages, their memories, facts, notes) and every row drawn from
    their words (``_DRAWN_FROM_USER``); returns the memory ids."""
    with db.transaction() as conn:
        ids = sorted(
            {r[0] for r in conn.execute("SELECT id FROM memories WHERE user_id = ?", (user_id,))}
            | {r[0] for r in conn.execute(_DRAWN_FROM_USER, {"u": user_id})}
        )
        for start in range(0, len(ids), 900):
            part = ids[start : start + 900]
            conn.execute(f"DELETE FROM memories WHERE id IN ({','.join('?' * len(part))})", part)
        conn.execute("DELETE FROM messages WHERE user_id = ? OR memory_id IS NULL", (user_id,))
        return ids


# -- reads ------------------------------------------------------------------------------------
def cached_embeddings(
    db: Database, hashes: Iterable[str], model: str
) -> dict[tuple[str, bool], tuple[bytes, bytes | None]]:
    """Vectors (and sentence vectors) already computed for these content hashes with this model,
    by (hash, whether the row was of ``SENTENCE_KINDS``): the two are embedded differently."""
    unique = list(dict.fromkeys(hashes))
    out: dict[tuple[str, bool], tuple[bytes, bytes | None]] = {}
    with db.read() as conn:
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            rows = conn.execute(
                f"SELECT content_hash, kind IN ({','.join('?' * len(SENTENCE_KINDS))}), embedding,"
                " parts FROM memories WHERE embedding_model = ? AND embedding IS NOT NULL AND"
                f" content_hash IN ({','.join('?' * len(part))})",
                (*SENTENCE_KINDS, model, *part),
            )
            for h, by_sentence, blob, parts in rows:
                out.setdefault((h, bool(by_sentence)), (blob, parts))
    return out


def parts_of(db: Database, ids: Sequence[int], model: str) -> dict[int, bytes]:
    """The sentence vectors of those of the given rows that have some, of ``model``."""
    return _column_by_id(db, ids, "parts", "parts IS NOT NULL AND embedding_model = ?", model)


def pending_embeddings(
    db: Database, model: str, after_id: int, limit: int
) -> list[tuple[int, str, str, str]]:
    """(id, text, hash, kind) of rows without a vector from ``model`` (new while the model
    loaded, or another model's)."""
    with db.read() as conn:
        return list(
            conn.execute(
                "SELECT id, text, content_hash, kind FROM memories WHERE id > ? AND"
                " (embedding IS NULL OR embedding_model IS NOT ?) ORDER BY id LIMIT ?",
                (after_id, model, limit),
            )
        )


def embedded_ids(db: Database, model: str, after_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(ids, chats) of every row above ``after_id`` holding a vector from ``model``, by id."""
    with db.read() as conn:
        rows = conn.execute(
            "SELECT id, chat_id FROM memories WHERE embedding_model = ? AND embedding IS NOT NULL"
            " AND id > ? ORDER BY id",
            (model, after_id),
        ).fetchall()
    arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def vectors_for(
    db: Database, ids: Sequence[int], dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, chats, vectors) for the given ids that still exist."""
    out_ids, chats, blobs = [], [], []
    with db.read() as conn:
        for start in range(0, len(ids), 900):
            part = [int(i) for i in ids[start : start + 900]]
            for i, c, b in conn.execute(
                f"SELECT id, chat_id, embedding FROM memories WHERE embedding IS NOT NULL AND"
                f" id IN ({','.join('?' * len(part))})",
                part,
            ):
                out_ids.append(i)
                chats.append(c)
                blobs.append(b)
    vectors = (
        np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)
        if blobs
        else np.zeros((0, dim), np.float32)
    )
    return np.array(out_ids, dtype=np.int64), np.array(chats, dtype=np.int64), vectors


def rows_by_id(db: Database, ids: Sequence[int], filters: Filters) -> dict[int, Row]:
    where, params = filters.sql(by_id=True)
    out: dict[int, Row] = {}
    with db.read() as conn:
        for start in range(0, len(ids), 900):
            part = [int(i) for i in ids[start : start + 900]]
            for r in conn.execute(
                f"SELECT {_COLUMNS} FROM memories m WHERE m.id IN ({','.join('?' * len(part))}) AND {where}",
                (*part, *params),
            ):
                out[r[0]] = Row.of(r)
    return out


def _told(kind: str, text: str, ts: float, tz: tzinfo) -> tuple[float, float] | None:
    """The time a row's words tell of (memory m008, ``when.time_spoken_of``; rows of
    ``TOLD_KINDS`` only), as epochs. Most rows name no time; only the words' first test is paid
    for them."""
    w = time_spoken_of(text, from_epoch(ts), tz) if kind in TOLD_KINDS else None
    return None if w is None else (to_epoch(w.since), to_epoch(w.until))


def tell_times(items: Sequence[NewMemory], tz: tzinfo) -> None:
    """Read the time rows about to be stored tell of: ``insert_memories`` writes it with them."""
    for item in items:
        item.about, item.about_read = _told(item.kind, item.text, item.ts, tz), True


def read_times_told(db: Database, tz: tzinfo, limit: int = 500) -> int:
    """Read the time up to ``limit`` rows stored unread tell of (rows from before memory m008,
    or stored without ``tell_times``); the number read."""
    with db.read() as conn:
        rows = conn.execute(
            "SELECT id, text, ts, kind FROM memories WHERE about_read = 0 LIMIT ?", (limit,)
        ).fetchall()
    told = [(*(_told(kind, text, ts, tz) or (None, None)), i) for i, text, ts, kind in rows]
    if told:
        with db.transaction() as conn:
            conn.executemany(
                "UPDATE memories SET about_since = ?, about_until = ?, about_read = 1"
                " WHERE id = ? AND about_read = 0",
                told,
            )
    return len(told)


def times_told_in(db: Database, tz: tzinfo) -> bool:
    """Make the times told of read in ``tz`` and by this ``when.READING``: if they were read in
    another zone, or by an earlier reading, they are all to be read again (True). The first
    zone is taken as it is. (Kept as "zone;reading" in ``memory_times_zone``; the first reading
    kept the zone alone.)"""
    zone = f"{getattr(tz, 'key', None) or tz};{READING}"
    with db.transaction() as conn:
        kept = conn.execute("SELECT zone FROM memory_times_zone").fetchone()
        if kept is not None and kept[0] == zone:
            return False
        conn.execute("DELETE FROM memory_times_zone")
        conn.execute("INSERT INTO memory_times_zone (zone) VALUES (?)", (zone,))
        if kept is None:
            return False
        conn.execute(
            "UPDATE memories SET about_read = 0, about_since = NULL, about_until = NULL"
            " WHERE about_read = 1"
        )
        return True


def ids_matching(db: Database, filters: Filters, limit: int) -> list[int] | None:
    """The ids of every row the filters let through, or None when there are more than
    ``limit``: a narrow filter (a time window, a kind) is searched exactly over these few."""
    where, params = filters.sql()
    with db.read() as conn:
        ids = [
            int(i)
            for (i,) in conn.execute(
                f"SELECT m.id FROM memories m WHERE {where} LIMIT ?", (*params, limit + 1)
            )
        ]
    return ids if len(ids) <= limit else None


def fts_search(
    db: Database, match: str, filters: Filters, limit: int, *, context: float = 0.0
) -> list[tuple[int, float]]:
    """(id, relevance) by BM25, best first; relevance is -bm25 so larger is better.

    Conversation turns (rows with a ``messages`` row) are ranked in ``turns_fts`` by their own
    words plus ``context`` times the words of the other side's turns beside them (0: by their
    own words, the length of all three still counting); every other row in ``memories_fts``.
    The two lists are merged by score: both are BM25 with the same tokenizer."""
    where, params = filters.sql()
    with db.read() as conn:
        rows = conn.execute(
            f"SELECT m.id, bm25(memories_fts) AS r FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid"
            f" WHERE memories_fts MATCH ? AND {where} ORDER BY r LIMIT ?",
            (match, *params, limit),
        ).fetchall()
        rows += conn.execute(
            f"SELECT m.id, bm25(turns_fts, 1.0, ?) AS r FROM turns_fts JOIN memories m ON m.id = turns_fts.rowid"
            f" WHERE turns_fts MATCH ? AND {where} ORDER BY r LIMIT ?",
            (float(context), match, *params, limit),
        ).fetchall()
    # A turn matched only by its neighbours' words, with ``context`` 0, scores 0: not a match.
    # A row in both (a turn of another kind than "message": an import may make one) counts once.
    best: dict[int, float] = {}
    for i, r in rows:
        if r < 0:
            best[int(i)] = max(best.get(int(i), 0.0), -float(r))
    return sorted(best.items(), key=lambda kv: -kv[1])[:limit]


def list_rows(
    db: Database, filters: Filters, limit: int, *, pinned_only: bool = False
) -> list[Row]:
    if filters.about and filters.since is not None and filters.until is not None:
        # Said then, and told of then: apart, each by its own index, and merged. Together
        # SQLite reads and sorts the whole window (51 ms for a year of 100k rows, not 0.02).
        said = list_rows(db, replace(filters, about=False), limit, pinned_only=pinned_only)
        where, params = replace(filters, since=None, until=None, about=False).sql()
        where += " AND m.about_until > ? AND m.about_since < ?"
        params += [to_epoch(filters.since), to_epoch(filters.until)]
        if pinned_only:
            where += " AND m.pinned = 1"
        with db.read() as conn:
            told = [
                Row.of(r)
                for r in conn.execute(
                    f"SELECT {_COLUMNS} FROM memories m WHERE {where}"
                    " ORDER BY m.ts DESC, m.id DESC LIMIT ?",
                    (*params, limit),
                )
            ]
        merged = {r.id: r for r in (*said, *told)}.values()
        return sorted(merged, key=lambda r: (r.ts, r.id), reverse=True)[:limit]
    where, params = filters.sql()
    if pinned_only:
        where += " AND m.pinned = 1"
    # Newest first, read in order from the (chat, ts) index, or the (chat, kind, ts) one for a
    # kind. Several kinds (``/memories``: facts, notes, summaries, lessons; a chat's few among
    # its many turns) are found by the (chat, kind, ts) index and sorted: ``+`` keeps SQLite
    # from reading the whole chat backwards by time for them (100 ms at 100k turns).
    by_time = "+m.ts" if filters.kinds and len(filters.kinds) > 1 else "m.ts"
    with db.read() as conn:
        return [
            Row.of(r)
            for r in conn.execute(
                f"SELECT {_COLUMNS} FROM memories m WHERE {where}"
                f" ORDER BY {by_time} DESC, m.id DESC LIMIT ?",
                (*params, limit),
            )
        ]


def history(db: Database, memory_id: int) -> list[Row]:
    """The fact and every fact it superseded, newest first."""
    out: list[Row] = []
    with db.read() as conn:
        current: int | None = memory_id
        seen: set[int] = set()
        while current is not None and current not in seen:
            seen.add(current)
            r = conn.execute(f"SELECT {_COLUMNS} FROM memories WHERE id = ?", (current,)).fetchone()
            if r is None:
                break
            out.append(Row.of(r))
            prev = conn.execute(
                "SELECT id FROM memories WHERE superseded_by = ? ORDER BY id DESC", (current,)
            ).fetchone()
            current = prev[0] if prev else None
    return out


def export_rows(db: Database, *, chat_id: int | None, user_id: int | None) -> dict[str, list[dict]]:
    clauses, params = ["1"], []
    if chat_id is not None:
        clauses.append("chat_id = ?")
        params.append(chat_id)
    if user_id is not None:
        clauses.append("user_id = ?")
        params.append(user_id)
    where = " AND ".join(clauses)
    with db.read() as conn:
        memories = [
            {
                "id": r[0],
                "chat_id": r[1],
                "user_id": r[2],
                "kind": r[3],
                "text": r[4],
                "ts": from_epoch(r[5]).isoformat(),
                "ref": r[6],
                "pinned": bool(r[7]),
                "source": r[8],
                "superseded_by": r[9],
                "meta": json.loads(r[10]) if r[10] else None,
            }
            for r in conn.execute(
                f"SELECT {_COLUMNS} FROM memories WHERE {where} ORDER BY id", params
            )
        ]
        messages = [
            {
                "id": m.id,
                "chat_id": m.chat_id,
                "user_id": m.user_id,
                "role": m.role,
                "text": m.text,
                "ts": m.ts.isoformat(),
                "telegram_message_id": m.telegram_message_id,
                "meta": m.meta or None,
            }
            for m in map(
                message_of,
                conn.execute(
                    f"SELECT {MSG_COLUMNS} FROM messages WHERE {where} ORDER BY id", params
                ),
            )
        ]
    return {"memories": memories, "messages": messages}


def stats(db: Database) -> dict[str, Any]:
    with db.read() as conn:
        kinds = dict(conn.execute("SELECT kind, count(*) FROM memories GROUP BY kind").fetchall())
        models = dict(
            conn.execute(
                "SELECT coalesce(embedding_model, '(none)'), count(*) FROM memories GROUP BY embedding_model"
            ).fetchall()
        )
        chats = conn.execute("SELECT count(DISTINCT chat_id) FROM memories").fetchone()[0]
        messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        superseded = conn.execute(
            "SELECT count(*) FROM memories WHERE superseded_by IS NOT NULL"
        ).fetchone()[0]
    return {
        "memories": sum(kinds.values()),
        "by_kind": kinds,
        "by_embedding_model": models,
        "chats": chats,
        "messages": messages,
        "superseded": superseded,
    }


def _by_id(
    db: Database,
    ids: Sequence[int],
    columns: str,
    where: str = "1",
    *params: object,
    table: str = "memories",
    key: str = "id",
) -> dict[int, tuple[Any, ...]]:
    """``{id: (columns...)}`` of the given memories (those ``where`` holds for), in chunks under
    SQLite's variable limit; from another ``table`` whose ``key`` is a memory id."""
    out: dict[int, tuple[Any, ...]] = {}
    with db.read() as conn:
        for start in range(0, len(ids), 900):
            part = [int(i) for i in ids[start : start + 900]]
            for row in conn.execute(
                f"SELECT {key}, {columns} FROM {table}"
                f" WHERE {key} IN ({','.join('?' * len(part))}) AND {where}",
                (*part, *params),
            ):
                out[row[0]] = tuple(row[1:])
    return out


def _column_by_id(
    db: Database,
    ids: Sequence[int],
    column: str,
    where: str = "1",
    *params: object,
    table: str = "memories",
    key: str = "id",
) -> dict[int, Any]:
    """``{id: column}`` (``_by_id`` for one column)."""
    rows = _by_id(db, ids, column, where, *params, table=table, key=key)
    return {i: row[0] for i, row in rows.items()}


def roles_of(db: Database, ids: Sequence[int]) -> dict[int, str]:
    """``{memory id: role}`` of those of the given rows that are conversation turns."""
    return _column_by_id(db, ids, "role", table="messages", key="memory_id")


def turns_said(db: Database, ids: Sequence[int]) -> dict[int, tuple[str, dict[str, Any]]]:
    """``{memory id: (role, meta)}`` of those of the given rows that are conversation turns
    (the meta says who spoke in a group, whose words a forward passed on)."""
    rows = _by_id(db, ids, "role, meta", table="messages", key="memory_id")
    return {i: (role, json.loads(meta) if meta else {}) for i, (role, meta) in rows.items()}


def chats_of(db: Database, ids: Sequence[int]) -> dict[int, int]:
    return _column_by_id(db, ids, "chat_id")


def hashes_of(db: Database, ids: Sequence[int]) -> dict[int, str]:
    return _column_by_id(db, ids, "content_hash")


def document_rows(db: Database, chat_id: int, refs: Sequence[str]) -> dict[tuple[str, str], int]:
    """``{(ref, content hash): id}`` of the chat's document rows with these refs."""
    out: dict[tuple[str, str], int] = {}
    unique = sorted(set(refs))
    with db.read() as conn:
        for start in range(0, len(unique), 900):
            part = unique[start : start + 900]
            for memory_id, ref, digest in conn.execute(
                "SELECT id, ref, content_hash FROM memories WHERE chat_id = ? AND kind = 'document'"
                f" AND ref IN ({','.join('?' * len(part))})",
                [chat_id, *part],
            ):
                out[(ref, digest)] = memory_id
    return out
