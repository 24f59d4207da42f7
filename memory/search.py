"""Hybrid recall: FTS5 BM25 and dense similarity fused into one ranking.

Both retrievers run inside the same scope filter (chat, user, kinds, time, not superseded), so
nothing outside the caller's scope is ever a candidate. Fusion is reciprocal rank by default:
each list counts by rank, 1/(``rrf_k`` + rank), scaled so that first in both lists is 1. It was
chosen over score fusion (each list's scores standardised, mixed with ``dense_weight``; still
``fusion = "score"``) on held-out data, figures from ``bench/memory_locomo.py`` and
``bench/memory_journal.py``: on LoCoMo's held-out half as messages RRF gives R@5 0.579, score
fusion 0.566 (as notes 0.510 and 0.546), and on the journals, where the dense side is the
stronger, RRF gives 0.756 and the BM25-heavy score fusion 0.622, below dense alone (0.722). A weight fitted to one kind of data
does not carry to another; ranks do. ``rrf_k`` 5 (not the usual 60) was chosen on LoCoMo's
tuning half only: a small k lets each list's head count, so a retriever's first few picks are
not drowned by a long tail the other retriever disagrees with.

Conversation turns are found by more than their own words: full text ranks a turn in
``turns_fts`` by its own words plus 0.3 (``turn_context_words``) of the words of the turns just
before and after it, with the length of all three. (The index can also key a turn with the turn
before it, ``turn_context_weight``; off by default: in a chat with an assistant that turn is the
assistant's long reply, and keyed with it a person's message lost its own meaning. On the
generated journals with an assistant's replies R@5 0.678 -> 0.756, R@10 0.878 -> 0.978, and
0.567 -> 0.700, 0.822 -> 0.956 where the replies quote the entry; on LoCoMo's held-out half,
two people, 0.673 -> 0.653, 0.758 -> 0.729.) A reply ("Travel was also her great passion!")
shares no word with the question about it; the turn it answered does. Only the other side's turn counts (another
role: the question a reply answers, the reply a question got): one person's run of turns, a
journal kept in a chat, are not each other's context. On LoCoMo's held-out half (the speakers
as the two sides) the search went from R@5 0.605 to 0.638 (R@10 0.699 to 0.737); on the
generated journals kept as one person's turns it went from 0.544 (every neighbour counted) to
0.756, where the neighbours are unrelated entries. 0.2 to 0.5 were within 0.005 of each other
on LoCoMo's tuning half. A turn found by its neighbours ranks below one with the words itself;
the turns around a hit are attached to it, and ``shown_once`` shows each turn once (a reply
that is a hit too, under its question).

Every text of more than one sentence but a fact (``SENTENCE_KINDS``: notes, documents,
summaries, lessons and, since memory m006, conversation turns) is embedded by sentence: its
vector is the mean of its sentences' vectors, which are kept (``memories.parts``). Among the
candidates, such a row is also scored by its best sentence (or the whole, when better), and
dense counts half by that list and half by the whole vectors: a long note is found by the one
sentence that answers, a turn of small talk and one piece of news by the news. Rows without
sentence vectors (facts, one-sentence texts) rank the same in both lists, so for them this is
plain RRF. Chosen on LoCoMo's tuning half as notes (weights 1, 0.5, 0.5 against 1, 1, 1); held
out as notes R@5 0.541 -> 0.575, journals 0.756 -> 0.811. Turns joined later, with nothing
tuned for them: LoCoMo as messages, tuning half R@5 / R@10 0.670 / 0.758 -> 0.674 / 0.772,
held out 0.646 / 0.726 -> 0.664 / 0.740; the generated journals as one person's turns 0.756 ->
0.811, with an assistant's replies 0.767 -> 0.822 (echoing the entry: 0.711 / 0.933 -> 0.789 /
0.967). It costs no extra encoding (the sentences instead of the whole), and a turn's sentence
vectors take about 2 KB in half precision (``store.PARTS_DTYPE``, memory m007; 4 KB before; the
turn's own vector 1.5 KB). (An earlier try, with
turns keyed with the turn before them in the index and their sentences as a third list beside
the whole turn's vector, lost R@5 on LoCoMo's held-out half.) Then, in order:

- short turns rank lower (``short_turns_rank_lower``): a conversation turn's score is scaled by
  sqrt(its length / twice the median length of the turns of its side found with it), between
  1/2 and 1. Its side's: in a chat with an assistant the person's turns are the short ones, and
  measured against the assistant's replies they were all halved (the generated journals with an
  assistant's replies about twice as long, ``--with-replies``: R@5 0.556 against all turns,
  0.678 by side, 0.589 without the scale; LoCoMo, two people, held out 0.683 against 0.673).
  Chat is full of short turns that echo a topic without saying anything about it ("Wow, the
  boiler!"), and BM25's length normalisation ranks exactly those first. The scale is relative, so
  in a terse chat a short turn is a typical one; and it at most halves a score, so a short turn
  first in both lists still ranks level with a long turn only one list ranks first, and above
  those it ranks lower. Chosen on LoCoMo's tuning half (twice the
  median and the square root: the best of 1 to 3 times and powers 0.5 to 1; the floor costs
  0.005 there); held out as messages R@5 0.638 -> 0.683, R@10 0.737 -> 0.754; on the generated
  journals kept as one person's turns 0.678 -> 0.733 (R@10 0.989 both). Notes too
  (``short_notes_rank_lower``), measured against the notes found with them, the same scale
  unchanged: they had been left alone on the grounds that a short note is a deliberate one, but
  scaling them gained on both benchmarks (LoCoMo's turns as notes, held out, R@5 / R@10
  0.577 / 0.657 -> 0.612 / 0.693, tuning half 0.572 / 0.693 -> 0.620 / 0.711; the generated
  journals, six chats, 0.817 -> 0.839). What is short on purpose (a code, a number) is a fact,
  and facts and documents are never scaled;
- recency (optional): the score blends with a factor halving every ``recency_half_life_days``;
- MMR (optional, ``mmr_lambda`` < 1): picks hits that are relevant but unlike those already chosen;
- neighbours as context: a conversation hit carries the turns just before and after it
  (``Hit.before``/``Hit.after``: the question it answers, the reply it got), for the model's
  context and for ``/recall``. They are attached, never ranked, so they cannot push another
  relevant hit out of the top k (ranking them beside their hit did, on data it was not tuned on).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from memory import store
from memory.db import Database
from memory.fts_terms import TermFilter
from memory.index import VectorIndex
from memory.rows import Row
from memory.settings import MemorySettings
from memory.store import Filters
from memory.text import match_of, query_words
from memory.types import SENTENCE_KINDS, Hit


@dataclass
class Candidates:
    fts: dict[int, float]
    dense: dict[int, float]
    # Candidates with sentence vectors: similarity of the best of the row and its sentences.
    sentences: dict[int, float] = field(default_factory=dict)
    vector: np.ndarray | None = None  # the query's, as the dense side used it
    # Rows of candidates already read (through the same filters), so they are read once.
    rows: dict[int, Row] = field(default_factory=dict)


# The query's vector, or how to get it: called after full-text search, so the query can be
# embedded on another thread meanwhile (``Memory.search_sync``).
QueryVector = np.ndarray | Callable[[], np.ndarray | None] | None


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


RRF_K = 60  # the constant of Cormack et al. (2009); it damps the head of each list


def reciprocal_rank(
    *lists: dict[int, float], k: int = RRF_K, weights: tuple[float, ...] | None = None
) -> dict[int, float]:
    """sum over lists of weight / (k + rank), ranks from 1, best score first in each list."""
    out: dict[int, float] = {}
    for n, scores in enumerate(lists):
        w = 1.0 if weights is None else weights[n]
        for rank, i in enumerate(sorted(scores, key=lambda i: -scores[i]), 1):
            out[i] = out.get(i, 0.0) + w / (k + rank)
    return out


def by_sentence(c: Candidates) -> dict[int, float]:
    """The dense list with each row that has sentence vectors scored by its best sentence (or
    the whole, when better), so a long note is found by the one sentence that answers."""
    if not c.sentences:
        return c.dense
    return {**{i: v for i, v in c.dense.items() if i not in c.sentences}, **c.sentences}


def fuse(
    c: Candidates, dense_weight: float, method: str = "rrf", rrf_k: int = RRF_K
) -> dict[int, float]:
    if method == "rrf":
        top = 2.0 / (rrf_k + 1)  # first in both lists: recency and MMR expect scores up to 1
        if c.sentences:
            # Dense counts half by the whole vector and half by the best sentence: for rows
            # without sentence vectors the two lists agree, and this is plain RRF.
            fused = reciprocal_rank(c.fts, c.dense, by_sentence(c), k=rrf_k, weights=(1, 0.5, 0.5))
        else:
            fused = reciprocal_rank(c.fts, c.dense, k=rrf_k)
        return {i: v / top for i, v in fused.items()}
    fts, dense = standardise(c.fts), standardise(c.dense)
    if not dense:
        return fts
    if not fts:
        return dense
    return {
        i: (1 - dense_weight) * fts.get(i, 0.0) + dense_weight * dense.get(i, 0.0)
        for i in set(fts) | set(dense)
    }


def scale_short_texts(
    ids: list[int],
    rows: dict[int, Row],
    scores: dict[int, float],
    roles: dict[int, str],
    kinds: Iterable[str] = ("message",),
) -> None:
    """Scale the score of each row of ``kinds`` among ``ids`` by sqrt(length / (2 x the median
    length of the rows of its group among them)), between 1/2 and 1. Relative to the rows found
    with it, so a terse chat's short turns are its typical ones and lose little; and to its own
    group: a conversation turn's side (``roles``: the turn's role), so a person's turns are not
    measured against an assistant's long replies, and notes against notes. A group with fewer
    than three rows found is measured against all of them: one row is no measure of how its
    group is written."""
    scaled = set(kinds)
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i in ids:
        if rows[i].kind in scaled:
            groups.setdefault((rows[i].kind, roles.get(i)), []).append(len(rows[i].text))
    if not groups:
        return
    every = 2.0 * statistics.median(n for lengths in groups.values() for n in lengths)
    full = {
        group: 2.0 * statistics.median(lengths) if len(lengths) >= 3 else every
        for group, lengths in groups.items()
    }
    for i in ids:
        if rows[i].kind in scaled:
            n = len(rows[i].text) / full[(rows[i].kind, roles.get(i))]
            scores[i] *= min(1.0, max(0.5, n**0.5))


def shown_once(hits: list[Hit], shown: Iterable[int | None] = ()) -> list[Hit]:
    """The hits to show, best first, each turn once: a hit already attached to a better one (a
    reply that is a hit of its own, under the question it answers) or in ``shown`` is left out,
    and so are attached turns shown before. Returns copies; the hits are not changed."""
    seen = set(shown)
    out = []
    for h in hits:
        if h.id in seen:
            continue
        before = [t for t in h.before if t.id not in seen]
        after = [t for t in h.after if t.id not in seen]
        out.append(replace(h, before=before, after=after))
        seen.update([h.id, *(t.id for t in (*before, *after))])
    return out


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
        query_vector: QueryVector,
        index: VectorIndex | None,
        n: int,
    ) -> Candidates:
        fts: dict[int, float] = {}
        match = match_of(self.terms.keep(query_words(query)))
        if match is not None:
            fts = dict(
                store.fts_search(
                    self.db, match, filters, n, context=self.settings.turn_context_words
                )
            )
        # Read the rows full text found now: while the query is embedded on another thread, this
        # costs nothing, and the search needs most of them.
        rows = store.rows_by_id(self.db, list(fts), filters) if fts else {}
        if callable(query_vector):
            query_vector = query_vector()
        dense: dict[int, float] = {}
        if query_vector is not None and index is not None and index.ntotal:
            chat = filters.scope.chat_id if filters.scope else None
            few = None
            if filters.kinds or filters.since is not None or filters.until is not None:
                few = store.ids_matching(self.db, filters, self.settings.exact_filter_max)
            if few is not None:
                # A narrow filter (a time window, a kind): exact over the rows it lets through,
                # rather than over-fetching from the index and filtering afterwards.
                return Candidates(
                    fts,
                    dict(index.search(query_vector, n, among=few)),
                    vector=query_vector,
                    rows=rows,
                )
            want = n
            # The index knows chats but not kinds/times/users: over-fetch and filter in SQLite,
            # widening until enough survive or the chat is exhausted.
            for _ in range(4):
                found = index.search(query_vector, want, chat_id=chat)
                self._read(rows, [i for i, _ in found], filters)
                dense = {i: s for i, s in found if i in rows}
                if len(dense) >= n or len(found) < want:
                    break
                want *= 4
            dense = dict(sorted(dense.items(), key=lambda kv: -kv[1])[:n])
        return Candidates(fts, dense, vector=query_vector, rows=rows)

    def _read(self, rows: dict[int, Row], ids: list[int], filters: Filters) -> None:
        """Add to ``rows`` those of ``ids`` not read yet that the filters let through. A row
        read and filtered out is read again: few are."""
        missing = [i for i in ids if i not in rows]
        if missing:
            rows.update(store.rows_by_id(self.db, missing, filters))

    def search(
        self,
        query: str,
        filters: Filters,
        k: int,
        *,
        query_vector: QueryVector,
        index: VectorIndex | None,
    ) -> list[Hit]:
        if k <= 0:
            return []
        s = self.settings
        n = max(s.search_candidates, k * 3)
        c = self.candidates(query, filters, query_vector, index, n)
        if c.vector is not None and index is not None:
            # Only rows of the kinds embedded by sentence have sentence vectors: the others
            # already read are not looked for (at 100k turns, about 0.8 ms a search).
            ids = [
                i for i in (*c.fts, *c.dense) if i not in c.rows or c.rows[i].kind in SENTENCE_KINDS
            ]
            c.sentences = self.best_sentences(ids, c.vector, index.model)
        scores = fuse(c, s.dense_weight, s.fusion, s.rrf_k)
        # Dense search always returns something; without a word in common, below its
        # candidates' average or below ``dense_min_similarity`` (by the row and by its best
        # sentence) it is not a match, only the nearest thing in the index: with one memory in
        # a chat, the average is that memory, and "garden" found "the boiler code is 4821".
        strong = {i for i, v in standardise(by_sentence(c)).items() if v > 0}
        floor = s.dense_min_similarity
        weak = {
            i
            for i, v in standardise(c.dense).items()
            if i not in c.fts
            and ((v <= 0 and i not in strong) or max(c.dense[i], c.sentences.get(i, -1.0)) < floor)
        }
        scores = {i: v for i, v in scores.items() if i not in weak}
        if not scores:
            return []
        ranked = sorted(scores, key=lambda i: -scores[i])[: max(n, k)]
        rows = c.rows
        self._read(rows, ranked, filters)
        ranked = [i for i in ranked if i in rows]
        scaled = [
            kind
            for kind, on in (
                ("message", s.short_turns_rank_lower),
                ("note", s.short_notes_rank_lower),
            )
            if on
        ]
        if scaled:
            # A turn's side; notes have none, so with turns not scaled nothing is read.
            turns = [i for i in ranked if rows[i].kind == "message"] if "message" in scaled else []
            roles = store.roles_of(self.db, turns) if turns else {}
            scale_short_texts(ranked, rows, scores, roles, scaled)
            ranked.sort(key=lambda i: -scores[i])
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
        for i in ranked[:k]:
            provenance = {"fts": i in c.fts, "dense": i in c.dense}
            hits.append(rows[i].hit(scores[i], **provenance))
        if s.attach_turns > 0:
            self._attach(hits, filters, s.attach_turns)
        return hits

    def best_sentences(
        self, ids: list[int], query_vector: np.ndarray, model: str
    ) -> dict[int, float]:
        """For the candidates with sentence vectors: the similarity of the best of the row's
        own vector and its sentences'."""
        q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        size = store.PARTS_DTYPE.itemsize * len(q)
        found = store.parts_of(self.db, list(dict.fromkeys(ids)), model)
        rows = [(i, p) for i, p in found.items() if p and len(p) % size == 0]  # else: not q's size
        if not rows:
            return {}
        parts = store.parts_array(b"".join(p for _, p in rows), len(q))
        starts = np.cumsum([0] + [len(p) // size for _, p in rows[:-1]])
        # The row's own vector is the normalised sum of its sentences' (``embed_texts``).
        sums = np.add.reduceat(parts, starts)
        wholes = (sums @ q) / np.maximum(np.linalg.norm(sums, axis=1), 1e-12)
        best = np.maximum(np.maximum.reduceat(parts @ q, starts), wholes)
        return {i: float(b) for (i, _), b in zip(rows, best, strict=True)}

    def _attach(self, hits: list[Hit], filters: Filters, n: int) -> None:
        """Give each conversation hit the ``n`` turns before and after it that the caller may
        see (its scope; any kind, time or superseded state). A turn may be a hit and attached
        to another (a reply found by its question's words): ``shown_once`` is how to show them."""
        turns = [h.id for h in hits if h.kind == "message"]
        if not turns:
            return
        around = store.adjacent_turns(self.db, turns, n)
        wanted = {j for before, after in around.values() for j in (*before, *after)}
        visible = store.rows_by_id(
            self.db, sorted(wanted), Filters(filters.scope, include_superseded=True)
        )
        for h in hits:
            before, after = around.get(h.id, ([], []))
            h.before = [visible[j].hit() for j in before if j in visible]
            h.after = [visible[j].hit() for j in after if j in visible]

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
