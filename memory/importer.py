"""Bulk import of JSON Lines into memory (``familiar memory import``) and its record format.

One object per line: ``text`` (required), optional ``chat_id`` (an integer Telegram chat id,
default 0), ``user`` (an integer Telegram user id), ``ts`` (ISO-8601), ``ref``, ``kind`` (default "note"; "message" rows also become
conversation turns, with ``role``, default "user"). Bad lines are reported and skipped, never
fatal. A file that ``familiar memory export`` or ``/export`` wrote (one JSON document, not lines)
is read too: its ``memories``, less superseded facts, each message turn with its role. Rows are
committed in batches, each batch with its vectors in the same transaction, so a process killed
mid-import leaves only whole batches behind, each fully searchable. Running the same import
again is safe: a record already stored (same chat, kind, text and ref) is counted as already
present and not stored, or embedded, a second time.

Throughput: embedding the next rows overlaps with writing the previous ones (a writer thread),
and rows are embedded in pools that double from one batch up to ``pool`` (2,048): the encoder sorts
each call's texts by length and pads each of its batches to the longest, so on texts of mixed
length (chat turns of 20 to 600 characters) a call of 256 padded away about a quarter of the
encoder's time (measured with ``bench/memory_scale.py``). Committing stays per batch.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from memory import store
from memory.store import NewMemory
from memory.text import MemoryInputError, checked
from memory.types import Scope

MAX_ERRORS = 20


@dataclass
class ImportReport:
    imported: int = 0
    skipped: int = 0
    present: int = 0  # already stored (an earlier run of the same import): not stored again
    errors: list[str] = field(default_factory=list)  # the first few, "line N: why"
    unit: str = "line"  # "entry" for an export document

    def skip(self, n: int, why: object) -> None:
        self.skipped += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{self.unit} {n}: {why}")


def parse_record(obj: Any) -> dict[str, Any]:
    """Validate one decoded JSON object; raises ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    text = obj.get("text")
    if not isinstance(text, str):
        raise ValueError("'text' missing or not a string")
    chat_id = obj.get("chat_id", 0)
    user = obj.get("user", obj.get("user_id"))
    if not isinstance(chat_id, int) or isinstance(chat_id, bool):
        raise ValueError(f"'chat_id' must be an integer (a Telegram chat id), not {chat_id!r}")
    if user is not None and (not isinstance(user, int) or isinstance(user, bool)):
        raise ValueError(f"'user' must be an integer (a Telegram user id), not {user!r}")
    ts = obj.get("ts")
    when = None
    if ts is not None:
        try:
            when = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"'ts' is not ISO-8601: {ts!r}") from None
    ref = obj.get("ref")
    kind = obj.get("kind") or "note"
    role = obj.get("role") or ("user" if kind == "message" else None)
    return {
        "text": text,
        "scope": Scope(chat_id, user),
        "ts": when,
        "ref": None if ref is None else str(ref),
        "kind": str(kind),
        "role": role,
    }


def read_jsonl(
    lines: Iterable[str | bytes], report: ImportReport
) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        if not line.strip():
            continue
        try:
            yield n, parse_record(json.loads(line))
        except ValueError as exc:  # JSONDecodeError is a ValueError
            report.skip(n, exc)


def export_document(path: Path) -> list[Any] | None:
    """The records of an export file (one JSON document with ``memories``), or None when the
    file is JSON Lines. Superseded facts are left out; a message keeps its role."""
    with path.open("rb") as f:
        first = f.readline().strip()
    try:
        head = json.loads(first)
    except ValueError:
        head = None
    if isinstance(head, dict) and "memories" not in head:
        return None  # a JSON Lines record (good or bad: read_jsonl says which)
    if not first.startswith(b"{"):
        return None
    try:
        doc = json.loads(path.read_bytes())
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("memories"), list):
        return None
    roles = {
        (m.get("chat_id"), m.get("ts"), m.get("text")): m.get("role")
        for m in doc.get("messages") or []
        if isinstance(m, dict)
    }
    records = []
    for m in doc["memories"]:
        if isinstance(m, dict):
            if m.get("superseded_by") is not None:
                continue
            if m.get("kind") == "message" and "role" not in m:
                m = {**m, "role": roles.get((m.get("chat_id"), m.get("ts"), m.get("text")))}
        records.append(m)
    return records


def read_records(
    path: Path, report: ImportReport
) -> tuple[int, Iterator[tuple[int, dict[str, Any]]]]:
    """(how many, the parsed records) of a JSON Lines file or an export document."""
    records = export_document(path)
    if records is None:
        with path.open("rb") as f:
            total = sum(1 for line in f if line.strip())

        def lines() -> Iterator[tuple[int, dict[str, Any]]]:
            with path.open("rb") as f:
                yield from read_jsonl(f, report)

        return total, lines()
    report.unit = "entry"

    def entries() -> Iterator[tuple[int, dict[str, Any]]]:
        for n, obj in enumerate(records, start=1):
            try:
                yield n, parse_record(obj)
            except ValueError as exc:
                report.skip(n, exc)

    return len(records), entries()


def check_records(path: Path, max_text_bytes: int) -> ImportReport:
    """Validate every record without storing anything (``--strict`` runs this first)."""
    report = ImportReport()
    for n, rec in read_records(path, report)[1]:
        try:
            checked(rec["text"], max_text_bytes)
        except MemoryInputError as exc:
            report.skip(n, exc)
    return report


def import_records(
    memory: Any,
    records: Iterable[tuple[int, dict[str, Any]]],
    report: ImportReport,
    *,
    batch_size: int = 256,
    pool: int = 2048,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Embed ``pool`` records at a time and store them in batches of ``batch_size``; the writer
    thread commits while the next pool embeds."""
    # Room for two pools' batches, so the next pool embeds while the last one is written.
    pending: queue.Queue[list[NewMemory] | None] = queue.Queue(maxsize=2 * (pool // batch_size + 1))
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            while (batch := pending.get()) is not None:
                memory.tell_times(batch)
                ids = store.insert_memories(memory.db, batch)
                if batch[0].embedding is not None:
                    memory._index_add(
                        ids, np.stack([m.embedding for m in batch if m.embedding is not None])
                    )
                report.imported += len(batch)
                if progress:
                    progress(len(batch))
        except BaseException as exc:  # surfaced to the caller below
            failure.append(exc)
            while pending.get() is not None:  # drain so the producer never blocks forever
                pass

    thread = threading.Thread(target=writer, name="memory-import", daemon=True)
    thread.start()
    try:
        batch: list[NewMemory] = []
        size = batch_size  # the first rows are committed soon; then pools double up to ``pool``
        for n, rec in records:
            if failure:
                break
            try:
                batch.append(
                    memory.new(
                        rec["text"],
                        rec["scope"],
                        rec["kind"],
                        ts=rec["ts"],
                        ref=rec["ref"],
                        role=rec["role"],
                    )
                )
            except MemoryInputError as exc:
                report.skip(n, exc)
            if len(batch) >= size:
                _queue_new(memory, batch, report, batch_size, pending)
                batch = []
                size = min(max(pool, batch_size), size * 2)
        if batch and not failure:
            _queue_new(memory, batch, report, batch_size, pending)
    finally:
        pending.put(None)
        thread.join()
    if failure:
        raise failure[0]
    memory.save_index()
    return report


def _queue_new(
    memory: Any,
    batch: list[NewMemory],
    report: ImportReport,
    batch_size: int,
    pending: queue.Queue[list[NewMemory] | None],
) -> None:
    """Embed the records of ``batch`` not stored yet and hand them to the writer in batches."""
    if fresh := _not_stored(memory.db, batch, report):
        for part in _slices(_embedded(memory, fresh), batch_size):
            pending.put(part)


def _not_stored(db: Any, batch: list[NewMemory], report: ImportReport) -> list[NewMemory]:
    """The records of ``batch`` not stored yet; the others are counted as already present."""
    with db.read() as conn:
        new = [
            m
            for m in batch
            if conn.execute(
                "SELECT 1 FROM memories WHERE content_hash = ? AND chat_id = ? AND kind = ?"
                " AND ref IS ? LIMIT 1",
                (m.content_hash, m.chat_id, m.kind, m.ref),
            ).fetchone()
            is None
        ]
    report.present += len(batch) - len(new)
    return new


def _slices(items: list[NewMemory], size: int) -> Iterator[list[NewMemory]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _embedded(memory: Any, batch: list[NewMemory]) -> list[NewMemory]:
    if memory.embedder.ready:
        memory.embed_items(batch)
    return batch
