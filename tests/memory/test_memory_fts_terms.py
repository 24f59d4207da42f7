"""Full-text search leaves out words nearly every row contains, so its cost stays bounded."""

from __future__ import annotations

from pathlib import Path

from memory import store
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
