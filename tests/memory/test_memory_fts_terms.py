"""Full-text search leaves out words nearly every row contains, so its cost stays bounded."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memory import fts_terms, store
from memory.db import Database
from memory.fts_terms import TermFilter
from memory.schema import migrations
from memory.search import HybridSearcher
from memory.settings import MemorySettings
from memory.store import Filters
from memory.types import Scope


def fill(db: Database, n: int) -> None:
    rows = [
        store.NewMemory(
            1,
            None,
            "note",
            f"note {i} about the weather" + (" and kumquats" if i % 50 == 0 else ""),
            f"h{i}",
            0.0,
        )
        for i in range(n)
    ]
    store.insert_memories(db, rows)


def test_common_words_are_left_out_and_rare_ones_kept(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "f.db", [migrations])
    fill(db, 300)
    terms = TermFilter(db, max_postings=100)
    # "note" and "weather" are in every row; "kumquats" in 6; the rarest come first within the bound
    assert terms.keep(["note", "weather", "kumquats"]) == ["kumquats"]
    assert terms.keep(["note"]) == []
    searcher = HybridSearcher(db, MemorySettings(fts_max_postings=100))
    hits = searcher.search(
        "weather note kumquats", Filters(Scope(1)), 10, query_vector=None, index=None
    )
    assert hits and all("kumquats" in h.text for h in hits)
    db.close()


def test_small_tables_search_every_word(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "f.db", [migrations])
    fill(db, 80)
    assert TermFilter(db, max_postings=100).keep(["note", "weather", "kumquats"]) == [
        "note",
        "weather",
        "kumquats",
    ]
    db.close()


class _Counting:
    """The database, counting the statements run through it."""

    def __init__(self, db: Database) -> None:
        self.db, self.statements = db, 0

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        with self.db.read() as conn:
            outer = self

            class Conn:
                def execute(self, *args: Any) -> Any:
                    outer.statements += 1
                    return conn.execute(*args)

            yield Conn()


def test_counts_are_kept_until_the_store_grows_by_a_tenth(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "f.db", [migrations])
    fill(db, 300)
    counting = _Counting(db)
    terms = TermFilter(counting, max_postings=100)  # type: ignore[arg-type]
    assert terms.keep(["kumquats", "weather"]) == ["kumquats"]
    first = counting.statements  # the store's size, then each word in both tables
    assert first == 1 + 2 * 2
    assert terms.keep(["weather", "kumquats"]) == ["kumquats"]
    assert counting.statements == first + 1  # the size only: both counts kept
    # 200 more rows, each with "kumquats": it is now in more rows than the bound, and the store
    # has grown by more than a tenth, so it is counted again and left out.
    store.insert_memories(
        db, [store.NewMemory(1, None, "note", f"kumquats {i}", f"k{i}", 0.0) for i in range(200)]
    )
    assert terms.keep(["kumquats", "weather"]) == []
    db.close()


def test_no_more_words_are_kept_than_the_bound(tmp_path: Path, monkeypatch: Any) -> None:
    db = Database.open(tmp_path / "f.db", [migrations])
    fill(db, 300)
    monkeypatch.setattr(fts_terms, "MAX_KEPT", 3)
    terms = TermFilter(db, max_postings=100)
    terms.keep(["a1", "a2", "a3", "a4", "kumquats"])
    assert list(terms._kept) == ["a3", "a4", "kumquats"]  # the least recently used went first
    db.close()


def test_a_forget_drops_the_kept_counts(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(fts_max_postings=100)
    fill(memory.db, 300)
    memory.search_sync("kumquats weather", Scope(1), k=3)
    assert "kumquats" in memory.searcher.terms._kept
    assert memory.forget_sync(1, Scope(1))
    assert not memory.searcher.terms._kept
    memory.search_sync("kumquats", Scope(1), k=3)
    memory.forget_user_sync(12345)  # nobody's: still a forget
    assert not memory.searcher.terms._kept


def test_counts_are_dropped_only_between_searches(tmp_path: Path) -> None:
    """``clear`` waits for the database's lock, which a search holds while it reads and
    updates the counts: a forget on another thread cannot empty them in between."""
    db = Database.open(tmp_path / "f.db", [migrations])
    fill(db, 300)
    terms = TermFilter(db, max_postings=100)
    terms.keep(["kumquats"])
    with db.read():  # as ``keep`` holds it
        other = threading.Thread(target=terms.clear)
        other.start()
        other.join(0.3)
        assert other.is_alive() and "kumquats" in terms._kept
    other.join(5)
    assert not other.is_alive() and not terms._kept
    db.close()
