"""Hybrid recall: FTS5 BM25 and dense similarity fused into one ranking.

Both retrievers run inside the same scope filter (chat, user, kinds, time, not superseded), so
nothing outside the caller's scope is ever a candidate. Fusion is score fusion: each list's
scores are standardised over its own candidates (best 1, average or worse 0) and mixed with
``dense_weight``. Unlike reciprocal-rank fusion it keeps how far apart the candidates are, which
matters when one retriever is confident and the other is not (on LoCoMo, RRF of BM25 and MiniLM
is worse than BM25 alone; this fusion is better than either). Then, in order:

- neighbour context: a conversation turn inherits part of the relevance of the turns one and two
  places away (the answer to a question is often the turn after the one that matches the words;
  on LoCoMo this adds about 0.1 to recall@5);
- recency (optional): the score blends with a factor halving every ``recency_half_life_days``;
- MMR (optional, ``mmr_lambda`` < 1): picks hits that are relevant but unlike those already chosen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from memory import store
from memory.db import Database
from memory.fts_terms import TermFilter
from memory.index import VectorIndex
from memory.settings import MemorySettings
from memory.store import Filters
from memory.text import match_of, query_words
from memory.types import Hit


@dataclass
class Candidates:
    fts: dict[int, float]
    dense: dict[int, float]


def standardise(scores: dict[int, float]) -> dict[int, float]:
    """(s - mean) / (max - mean) over the candidate list: the best is 1, average and below 0.
    Like a z-score it measures distance from the typical candidate, but it is bounded, so one
    list cannot swamp the other (a lone exact keyword match scores 1, as the best dense hit)."""
    if not scores:
        return {}
    values = np.fromiter(scores.values(), dtype=np.float64)
    mean, high = float(values.mean()), float(values.max())
    if high - mean < 1e-12:
        return {i: 1.0 for i in scores}
    return {i: max(0.0, (s - mean) / (high - mean)) for i, s in scores.items()}


def fuse(c: Candidates, dense_weight: float) -> dict[int, float]:
    fts, dense = standardise(c.fts), standardise(c.dense)
    if not dense:
        return fts
    if not fts:
        return dense
    return {
        i: (1 - dense_weight) * fts.get(i, 0.0) + dense_weight * dense.get(i, 0.0)
        for i in set(fts) | set(dense)
    }


class HybridSearcher:
    """Runs one search against the store and (when ready) the vector index."""

    def __init__(self, db: Database, settings: MemorySettings) -> None:
        self.db = db
        self.settings = settings
        self.terms = TermFilter(db, settings.fts_max_postings)

    def candidates(
        self,
        query: str,
        filters: Filters,
        query_vector: np.ndarray | None,
        index: VectorIndex | None,
        n: int,
    ) -> Candidates:
        fts: dict[int, float] = {}
        match = match_of(self.terms.keep(query_words(query)))
        if match is not None:
            fts = dict(store.fts_search(self.db, match, filters, n))
        dense: dict[int, float] = {}
        if query_vector is not None and index is not None and index.ntotal:
            chat = filters.scope.chat_id if filters.scope else None
            want = n
            # The index knows chats but not kinds/times/users: over-fetch and filter in SQLite,
            # widening until enough survive or the chat is exhausted.
            for _ in range(4):
                found = index.search(query_vector, want, chat_id=chat)
                rows = store.rows_by_id(self.db, [i for i, _ in found], filters)
                dense = {i: s for i, s in found if i in rows}
                if len(dense) >= n or len(found) < want:
                    break
                want *= 4
            dense = dict(sorted(dense.items(), key=lambda kv: -kv[1])[:n])
        return Candidates(fts, dense)

    def search(
        self,
        query: str,
        filters: Filters,
        k: int,
        *,
        query_vector: np.ndarray | None,
        index: VectorIndex | None,
    ) -> list[Hit]:
        if k <= 0:
            return []
        s = self.settings
        n = max(s.search_candidates, k * 3)
        c = self.candidates(query, filters, query_vector, index, n)
        scores = fuse(c, s.dense_weight)
        if not scores:
            return []
        if s.neighbour_weight > 0:
            scores = self._with_neighbours(scores, filters, query_vector, index)
        ranked = sorted(scores, key=lambda i: -scores[i])[: max(n, k)]
        rows = store.rows_by_id(self.db, ranked, filters)
        ranked = [i for i in ranked if i in rows]
        if s.recency_half_life_days > 0:
            now = time.time()
            half = s.recency_half_life_days * 86400.0
            for i in ranked:
                fresh = 0.5 ** (max(0.0, now - rows[i].ts) / half)
                scores[i] = (1 - s.recency_weight) * scores[i] + s.recency_weight * fresh
            ranked.sort(key=lambda i: -scores[i])
        if s.mmr_lambda < 1.0 and index is not None and len(ranked) > k:
            ranked = self._mmr(ranked[: k * 4], scores, index, k)
        hits = []
        # Dense search always returns something; below its average and without a word in common
        # it is not a match, only the nearest thing in the index.
        ranked = [i for i in ranked if scores[i] > 0 or i in c.fts]
        for i in ranked[:k]:
            provenance = {"fts": i in c.fts, "dense": i in c.dense}
            hits.append(rows[i].hit(scores[i], **provenance))
        return hits

    def _with_neighbours(
        self,
        scores: dict[int, float],
        filters: Filters,
        query_vector: np.ndarray | None,
        index: VectorIndex | None,
    ) -> dict[int, float]:
        """s'(t) = s(t) + w1 max(s(t±1)) + w2 max(s(t±2)), over the top candidates and the turns
        around them (a turn that matched nothing itself can enter through its neighbours)."""
        w1, w2 = self.settings.neighbour_weight, self.settings.neighbour2_weight
        top = sorted(scores, key=lambda i: -scores[i])[:50]
        near = store.neighbours(self.db, top)
        if not near:
            return scores
        # Adjacency is symmetric, so the top turns' lists also say who lies next to them; turns
        # far from every top turn keep their own score (their neighbours are weak anyway).
        links: dict[int, tuple[set[int], set[int]]] = {}
        for i, (first, second) in near.items():
            for dist, js in ((0, first), (1, second)):
                for j in js:
                    links.setdefault(i, (set(), set()))[dist].add(j)
                    links.setdefault(j, (set(), set()))[dist].add(i)
        extra = [j for j in links if j not in scores]
        allowed = store.rows_by_id(self.db, extra, filters) if extra else {}
        out = dict(scores)
        for j in allowed:
            out[j] = 0.0
        for i, (near1, near2) in links.items():
            if i in out:
                out[i] += w1 * max((scores.get(j, 0.0) for j in near1), default=0.0)
                out[i] += w2 * max((scores.get(j, 0.0) for j in near2), default=0.0)
        return out

    def _mmr(
        self, ranked: list[int], scores: dict[int, float], index: VectorIndex, k: int
    ) -> list[int]:
        lam = self.settings.mmr_lambda
        with index.lock:
            present = set(index.ids().tolist())
            ids = [i for i in ranked if i in present]
            if len(ids) <= k:
                return ranked
            vectors = index._reconstruct(np.array(ids, dtype=np.int64))
        chosen: list[int] = []
        remaining = list(range(len(ids)))
        sims = vectors @ vectors.T
        while remaining and len(chosen) < k:
            best, best_value = remaining[0], -1e9
            for r in remaining:
                redundancy = max((sims[r, c] for c in chosen), default=0.0)
                value = lam * scores[ids[r]] - (1 - lam) * redundancy
                if value > best_value:
                    best, best_value = r, value
            chosen.append(best)
            remaining.remove(best)
        picked = [ids[c] for c in chosen]
        return picked + [i for i in ranked if i not in set(picked)]
