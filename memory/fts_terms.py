"""Bounding full-text search cost by leaving out query words that nearly every row contains.

FTS5 computes BM25 for every row a query matches before it can sort, so one common word (a name
in every turn, "note" in every note) makes a search touch the whole table. Such words carry
little weight: FTS5's IDF is clamped to ~0 for a word in more than half the rows. So on a table
larger than ``max_postings`` rows, each query word is first counted, stopping at the bound (an
unranked match with a LIMIT reads at most that many postings); words in more than half the rows
are left out, and of the rest the rarest are kept while their postings add up to no more than
the bound. The rarer words carry the ranking, and a search never ranks more rows than the bound.
The counts are global, not per chat: a word common overall is treated as common everywhere.
They add up both full-text tables (turns are in ``turns_fts``, where a word also counts for the
turns beside it, as it is read there).
"""

from __future__ import annotations

from memory.db import Database


class TermFilter:
    def __init__(self, db: Database, max_postings: int) -> None:
        self.db = db
        self.max_postings = max_postings

    def keep(self, words: list[str]) -> list[str]:
        """The words worth searching for, in their order; may be empty (then skip full text)."""
        if not words:
            return []
        with self.db.read() as conn:
            total = conn.execute("SELECT max(rowid) FROM memories").fetchone()[0] or 0
            if total <= self.max_postings:
                return words  # no word can match more rows than the bound: nothing to save
            limit = int(min(total / 2, self.max_postings))
            counts = {}
            for word in words:
                counts[word] = sum(
                    conn.execute(
                        f"SELECT count(*) FROM (SELECT rowid FROM {table} WHERE {table} MATCH ? LIMIT ?)",
                        (f'"{word}"', limit + 1),
                    ).fetchone()[0]
                    for table in ("memories_fts", "turns_fts")
                )
        # Rarest first, while the postings read in all stay within the bound.
        chosen, spent = set(), 0
        for word in sorted(words, key=lambda w: counts[w]):
            if counts[word] > limit or spent + counts[word] > self.max_postings:
                break
            chosen.add(word)
            spent += counts[word]
        return [w for w in words if w in chosen]
