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

A word's count is kept (``MAX_KEPT`` words, the least recently used dropped first) until the
store has grown by a tenth since it was taken: counting costs about 0.1 ms a word and table, a
person's questions repeat their words (names, topics), and the counts only bound the cost, so
one a little out of date chooses the same words or nearly. At 100k turns the counting was about
2 ms of each search (``bench/memory_scale.py``). A forget drops them all (``clear``): the words
someone asked about are not kept past what they asked to forget.
"""

from __future__ import annotations

from collections import OrderedDict

from memory.db import Database

MAX_KEPT = 4096  # words whose counts are kept
REGROWTH = 1.1  # a count is taken again once the store has grown by this factor since


class TermFilter:
    def __init__(self, db: Database, max_postings: int) -> None:
        self.db = db
        self.max_postings = max_postings
        # word -> (its count, bounded by ``limit + 1``; the store's size when counted; limit)
        self._kept: OrderedDict[str, tuple[int, int, int]] = OrderedDict()

    def clear(self) -> None:
        """Drop every kept count. Under the database's lock, which ``keep`` holds while it reads
        and updates them: a forget on one thread must not empty them between the two."""
        with self.db.lock:
            self._kept.clear()

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
                kept = self._kept.get(word)
                if kept is not None and kept[2] == limit and total <= kept[1] * REGROWTH:
                    counts[word] = kept[0]
                    self._kept.move_to_end(word)
                    continue
                counts[word] = sum(
                    conn.execute(
                        f"SELECT count(*) FROM (SELECT rowid FROM {table} WHERE {table} MATCH ? LIMIT ?)",
                        (f'"{word}"', limit + 1),
                    ).fetchone()[0]
                    for table in ("memories_fts", "turns_fts")
                )
                self._kept[word] = (counts[word], total, limit)
                self._kept.move_to_end(word)
                while len(self._kept) > MAX_KEPT:
                    self._kept.popitem(last=False)
        # Rarest first, while the postings read in all stay within the bound.
        chosen, spent = set(), 0
        for word in sorted(words, key=lambda w: counts[w]):
            if counts[word] > limit or spent + counts[word] > self.max_postings:
                break
            chosen.add(word)
            spent += counts[word]
        return [w for w in words if w in chosen]
