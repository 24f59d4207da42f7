"""``import_records`` when the disk fills mid-import: the error reaches the caller (no hang, no
silent partial success) and what was stored is whole batches, each fully searchable.

Real SQLite: ``PRAGMA max_page_count`` caps the file, so the write fails with SQLite's own
"database or disk is full", as on a full disk.
"""

from __future__ import annotations

import sqlite3
import threading

from memory import store
from memory.importer import ImportReport, import_records
from memory.types import Scope
from tests.memory.conftest import MakeMemory

BATCH = 20


def test_a_full_disk_mid_import_raises_and_leaves_only_whole_batches(
    make_memory: MakeMemory,
) -> None:
    memory = make_memory()
    pages = memory.db.conn.execute("PRAGMA page_count").fetchone()[0]
    memory.db.conn.execute(f"PRAGMA max_page_count = {pages + 12}")
    fields = {"scope": Scope(3), "kind": "note", "ts": None, "ref": None, "role": None}
    rows = [(n, {"text": f"note {n}: " + "lorem ipsum " * 40, **fields}) for n in range(1, 2001)]
    report = ImportReport()
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            import_records(memory, rows, report, batch_size=BATCH)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the import hung after the writer failed"

    (error,) = outcome
    assert isinstance(error, sqlite3.OperationalError)
    assert "full" in str(error)
    stored = memory.db.conn.execute("SELECT count(*) FROM memories").fetchone()[0]
    assert 0 < stored < len(rows)
    assert stored == report.imported and stored % BATCH == 0  # whole batches, and counted
    # Each stored row has its vector: searchable, not half-imported.
    assert store.pending_embeddings(memory.db, memory.embedder.model_name, 0, 10**9) == []
    assert memory.index is not None and memory.index.ntotal == stored


def test_imported_memories_keep_the_time_their_words_tell_of(make_memory: MakeMemory) -> None:
    """``memory import`` reads the time a row's words tell of as it stores the row (m008)."""
    from datetime import UTC, datetime

    memory = make_memory()
    said = datetime(2022, 3, 17, 15, tzinfo=UTC)
    fields = {"scope": Scope(3), "kind": "note", "ts": said, "ref": None, "role": None}
    texts = ["yesterday I went bowling", "the bees are fine"]
    import_records(
        memory, [(n, {"text": t, **fields}) for n, t in enumerate(texts)], ImportReport()
    )
    with memory.db.read() as conn:
        rows = conn.execute("SELECT about_since, about_read FROM memories ORDER BY id").fetchall()
    assert rows == [(datetime(2022, 3, 16, tzinfo=memory.tz).timestamp(), 1), (None, 1)]
