"""The row types of memory's store: what is written (``NewMemory``), what is read (``Row``),
and the scope filter every read applies (``Filters``). Times are UTC epoch seconds (REAL)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from memory.types import Hit, Scope

COLUMNS = "id, chat_id, user_id, kind, text, ts, ref, pinned, source, superseded_by, meta"


def to_epoch(ts: datetime | None) -> float:
    if ts is None:
        return time.time()
    if ts.tzinfo is None:  # naive times are taken as UTC, the store's only zone
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


@dataclass
class NewMemory:
    chat_id: int
    user_id: int | None
    kind: str
    text: str
    content_hash: str
    ts: float
    ref: str | None = None
    pinned: bool = False
    source: str | None = None
    meta: dict[str, Any] | None = None
    embedding: np.ndarray | None = None
    model: str | None = None
    parts: np.ndarray | None = None  # its sentences' vectors (``SENTENCE_KINDS``), with embedding
    # Set for conversation turns: the row also goes into ``messages``.
    role: str | None = None
    telegram_message_id: int | None = None
    # The time its words tell of (memory m008), read before it is stored (``store.tell_times``);
    # a row stored unread is read at the next warm-up.
    about: tuple[float, float] | None = None
    about_read: bool = False


@dataclass
class Row:
    id: int
    chat_id: int
    user_id: int | None
    kind: str
    text: str
    ts: float
    ref: str | None
    pinned: bool
    source: str | None
    superseded_by: int | None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, r: Sequence[Any]) -> Row:
        return cls(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            bool(r[7]),
            r[8],
            r[9],
            json.loads(r[10]) if r[10] else {},
        )

    def hit(self, score: float = 0.0, **provenance: Any) -> Hit:
        return Hit(
            self.id,
            self.text,
            score,
            self.kind,
            self.chat_id,
            self.user_id,
            from_epoch(self.ts),
            self.ref,
            {"pinned": self.pinned, **provenance},
        )


@dataclass
class Filters:
    """The scope and constraints every read applies; ``sql()`` is spliced into WHERE."""

    scope: Scope | None
    kinds: Sequence[str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_superseded: bool = False
    # The window also lets through a row whose words tell of a time in it ("yesterday I went
    # bowling", memory m008), for a question's time; never for what lists or forgets by time.
    about: bool = False

    def sql(self, alias: str = "m", *, by_id: bool = False) -> tuple[str, list[Any]]:
        """``by_id``: the query already picks rows by primary key; a unary ``+`` keeps SQLite from
        choosing the (chat, kind, ts) index instead and scanning the whole chat."""
        clauses: list[str] = ["1"]
        params: list[object] = []
        if by_id:
            alias = f"+{alias}"
        if self.scope is not None:
            clauses.append(f"{alias}.chat_id = ?")
            params.append(self.scope.chat_id)
            if self.scope.user_id is not None:
                clauses.append(f"({alias}.user_id IS NULL OR {alias}.user_id = ?)")
                params.append(self.scope.user_id)
        if self.kinds:
            clauses.append(f"{alias}.kind IN ({','.join('?' * len(self.kinds))})")
            params.extend(self.kinds)
        if self.about and self.since is not None and self.until is not None:
            clauses.append(
                f"(({alias}.ts >= ? AND {alias}.ts <= ?)"
                f" OR ({alias}.about_until > ? AND {alias}.about_since < ?))"
            )
            since, until = to_epoch(self.since), to_epoch(self.until)
            params.extend((since, until, since, until))
        else:
            if self.since is not None:
                clauses.append(f"{alias}.ts >= ?")
                params.append(to_epoch(self.since))
            if self.until is not None:
                clauses.append(f"{alias}.ts <= ?")
                params.append(to_epoch(self.until))
        if not self.include_superseded:
            clauses.append(f"{alias}.superseded_by IS NULL")
        return " AND ".join(clauses), params


def blob(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
