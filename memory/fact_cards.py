"""Adding memory cards: the dedupe/supersede decision (``memory.facts.decide``) applied to the
store, with the unclear pairs sent to a ``FactJudge`` (a model) in one batch when there is one.

Two passes, so the model call runs on the event loop and never holds the memory worker: the
first decides every new fact against the current cards and collects the unclear pairs; after
the judge has answered, the second decides each again under the guard (the cards may have
changed meanwhile) and applies it, taking the judge's verdict where the pair is still unclear.
Without a judge, or without a verdict, an unclear fact is added: nothing is lost.

Telling a correction or a reworded duplicate from a new fact needs the vectors, so a card added
while the embedding model is still loading (the first seconds after a start) waits for it, up to
``MODEL_WAIT_S``, when a current card could be its earlier version (``may_match_sync``); past
that (a model that cannot load) it is decided on its words alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from loguru import logger

from memory import store
from memory.facts import Decision, FactJudge, content_words, decide, shared_frame
from memory.store import Filters, NewMemory
from memory.text import MemoryInputError
from memory.types import FactResult, Scope

if TYPE_CHECKING:
    from memory.service import Memory

MODEL_WAIT_S = 20.0  # longest a card waits for the model loading (under a tool call's 30 s)
MAX_KNOWN = 5000  # current cards of a chat compared with each new one
VERDICTS = ("duplicate", "superseded", "added")


class FactCards:
    def __init__(self, memory: Memory, judge: FactJudge | None = None) -> None:
        self.m = memory
        self.judge = judge

    def _decide(self, item: NewMemory, scope: Scope) -> tuple[Decision, np.ndarray | None, bool]:
        """(decision, the new fact's vector, whether the matched card is pinned)."""
        m = self.m
        known = store.list_rows(m.db, Filters(Scope(scope.chat_id), ["fact"]), MAX_KNOWN)
        hashes = store.hashes_of(m.db, [r.id for r in known])
        vector = None
        vecs: dict[int, np.ndarray] = {}
        if m.embedder.ready:
            vector = m.vectors([item.text], [item.content_hash])[0]
            ids, _, vs = store.vectors_for(m.db, [r.id for r in known], m.embedder.dim)
            vecs = dict(zip(ids.tolist(), vs, strict=True))
        d = decide(
            item.text,
            item.content_hash,
            vector,
            [(r.id, r.text, hashes[r.id], vecs.get(r.id)) for r in known],
            duplicate_cosine=m.settings.fact_duplicate_cosine,
            supersede_cosine=m.settings.fact_supersede_cosine,
            unclear_cosine=m.settings.fact_judge_cosine if self.judge else 1.0,
        )
        pinned = any(r.pinned for r in known if r.id == d.existing_id)
        return d, vector, pinned

    def may_match_sync(self, items: Sequence[NewMemory], scope: Scope) -> bool:
        """Whether a vector could change the decision for one of ``items``: some current card
        opens with the same two words (a correction needs that frame) or shares half its
        content words (a reworded duplicate). Otherwise it is a new fact, model or not."""
        known = store.list_rows(self.m.db, Filters(Scope(scope.chat_id), ["fact"]), MAX_KNOWN)
        for item in items:
            words = content_words(item.text)
            for row in known:
                if shared_frame(item.text, row.text)[0] >= 2:
                    return True
                if words and 2 * len(words & content_words(row.text)) >= len(words):
                    return True
        return False

    def unclear_sync(self, items: Sequence[NewMemory], scope: Scope) -> list[tuple[str, str]]:
        """The ``(known, new)`` pairs among ``items`` that only a judge can decide."""
        with self.m._guard:
            out = []
            for item in items:
                d, _, _ = self._decide(item, scope)
                if d.action == "unclear":
                    out.append((d.existing_text, item.text))
            return out

    def add_sync(
        self,
        items: Sequence[NewMemory],
        scope: Scope,
        *,
        pinned: bool = False,
        verdicts: dict[tuple[str, str], str] | None = None,
    ) -> list[FactResult]:
        m = self.m
        results = []
        with m._guard:  # one decision at a time, so two racing adds cannot both insert
            for item in items:
                d, vector, old_pinned = self._decide(item, scope)
                if d.action == "unclear":
                    verdict = (verdicts or {}).get((d.existing_text, item.text))
                    d = Decision(verdict or "added", d.existing_id, d.similarity, d.existing_text)
                results.append(self._apply(item, d, vector, pinned, old_pinned))
        return results

    def _apply(
        self,
        item: NewMemory,
        d: Decision,
        vector: np.ndarray | None,
        pinned: bool,
        old_pinned: bool,
    ) -> FactResult:
        m = self.m
        if d.action == "duplicate":
            assert d.existing_id is not None
            store.touch(m.db, d.existing_id, pinned)
            return FactResult("duplicate", d.existing_id)
        if vector is not None:
            item.embedding, item.model = vector, m.embedder.model_name
        with m.db.transaction():
            new_id = m.add_sync([item])[0]
            if d.action == "superseded":
                assert d.existing_id is not None
                store.supersede(m.db, d.existing_id, new_id)
                if not pinned and old_pinned:
                    store.touch(m.db, new_id, True)  # a pinned fact's successor stays pinned
                return FactResult("superseded", new_id, d.existing_id)
        return FactResult("added", new_id)

    async def add(
        self,
        texts: Sequence[str],
        scope: Scope,
        *,
        pinned: bool = False,
        source: str | None,
        skip_bad: bool = False,
    ) -> list[FactResult]:
        """Add each fact; a text that cannot be stored raises ``MemoryInputError``, or with
        ``skip_bad`` (facts a model extracted) is logged and left out of the results."""
        m = self.m
        items = []
        for text in texts:
            try:
                items.append(m.new(text, scope, "fact", pinned=pinned, source=source))
            except MemoryInputError as exc:
                if not skip_bad:
                    raise
                logger.warning("extracted fact not stored: {}", exc)
        if items and not m.embedder.ready and await m._offload(self.may_match_sync, items, scope):
            await m.ready_within(MODEL_WAIT_S)  # the vectors decide a duplicate or a correction
        verdicts: dict[tuple[str, str], str] = {}
        if self.judge is not None and items:
            pairs = await m._offload(self.unclear_sync, items, scope)
            if pairs:
                try:
                    answers = await self.judge.judge(pairs)
                except Exception as exc:  # a model outage must not lose the fact: add it
                    logger.opt(exception=exc).warning("fact judge failed; unclear facts added")
                    answers = []
                verdicts = {p: a for p, a in zip(pairs, answers, strict=False) if a in VERDICTS}
        return await m._offload(
            lambda: self.add_sync(items, scope, pinned=pinned, verdicts=verdicts)
        )
