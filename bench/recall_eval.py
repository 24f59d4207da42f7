"""Shared by the recall benchmarks: recall@k of evidence refs for the project's search and for
the plain retrievers and fusions it is compared with.

For each question the comparisons rank, within its chat and with the words the search keeps,
plain BM25 (each row by its own words, in a plain FTS5 table of the bench's) and plain dense
(each row by MiniLM's vector of its whole text, ``PlainDense``; the project's index keeps the
mean of a text's sentences instead) alone, and fused: reciprocal-rank fusion (k 60, and the
smaller k in ``RRF_KS``) and score fusion at several dense weights. Each is measured as R@k (the
mean share of a question's evidence among the top k), and as any@5 and all@10 (whether any of it
is in the top 5, all of it in the top 10, averaged over questions). "bm25+ctx" is the project's
full-text list alone (turns also by the words beside them, ``turns_fts``). "ours" is
``Memory.search_sync`` with the settings given, end to end; "ours+ctx" also counts the turns
attached to its hits (``Hit.before``/``after``: what the model is shown with them), so it is
reported apart and never as the headline figure.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from memory import store
from memory.embedder import Embedder, SentenceTransformerEmbedder
from memory.search import Candidates, fuse
from memory.service import Memory
from memory.settings import MemorySettings
from memory.store import Filters
from memory.text import content_hash, match_of, query_words
from memory.types import Scope

KS = (5, 10)
# Besides the mean share of a question's evidence in the top k (R@k): whether any of it is in the
# top 5, and whether all of it is in the top 10, as the issue reports its held-out set.
EXTRA = ("any@5", "all@10")


def measure(evidence: frozenset[str], got: Sequence[str | None]) -> dict[int | str, float]:
    """R@k for each of ``KS`` (the share of ``evidence`` among the top k), then ``EXTRA``."""
    out: dict[int | str, float] = {k: len(evidence & set(got[:k])) / len(evidence) for k in KS}
    out["any@5"] = float(bool(evidence & set(got[:5])))
    out["all@10"] = float(evidence <= set(got[:10]))
    return out


DENSE_WEIGHTS = (0.2, 0.3, 0.5, 0.7)
RRF_KS = (5, 20)  # besides the usual 60; 5 was the best of 5, 20, 60 on LoCoMo 1-5


@dataclass
class Question:
    scope: Scope
    text: str
    evidence: frozenset[str]
    group: str = "all"
    now: datetime | None = None  # when it is asked: "last year" counts from here
    category: int | None = None


class CachedEmbedder(Embedder):
    """The real embedder, remembering each text's vector (in ``path`` between runs): a question
    is embedded once, not by every search of every run. ``daemons_embedder`` is the one to
    wrap: the search embeds its query as the daemon does."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner, self.path = inner, path
        self.model_name = inner.model_name
        self.known: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as saved:
                self.known = {k: saved[k] for k in saved.files}

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.inner.dim

    def load(self) -> None:
        self.inner.load()

    @property
    def ready(self) -> bool:
        return self.inner.ready

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.sha256(f"{self.model_name}\0{t}".encode()).hexdigest() for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in self.known))
        if todo:
            text_of = dict(zip(keys, texts, strict=True))
            for k, v in zip(todo, self.inner.embed([text_of[k] for k in todo]), strict=True):
                self.known[k] = v
        return np.stack([self.known[k] for k in keys]).astype(np.float32)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        """A search's query as the inner embedder embeds one (the daemon's int8 copy where it
        has one: ``SentenceTransformerEmbedder._quantise``), remembered apart from ``embed``'s."""
        key = hashlib.sha256(f"{self.model_name}\0query\0{chr(0).join(texts)}".encode()).hexdigest()
        if key not in self.known:
            self.known[key] = self.inner.embed_query(texts)
        return self.known[key].astype(np.float32)

    def save(self) -> None:
        np.savez(self.path, **self.known)  # type: ignore[arg-type]


def variants() -> list[str]:
    return [
        "bm25",
        "bm25+ctx",
        "dense",
        "rrf",
        *(f"rrf{k}" for k in RRF_KS),
        *(f"score{w}" for w in DENSE_WEIGHTS),
        "ours",
        "ours+ctx",
    ]


class PlainBM25:
    """Every row ranked by its own words alone, in an FTS5 table of the bench's own (the same
    tokenizer, one table for every kind): the baseline, as a plain BM25 index would rank."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute(
            "CREATE VIRTUAL TABLE plain USING fts5(text, chat UNINDEXED,"
            " tokenize='porter unicode61 remove_diacritics 2')"
        )
        with memory.db.read() as conn:
            rows = conn.execute("SELECT id, text, chat_id FROM memories").fetchall()
        self.conn.executemany("INSERT INTO plain (rowid, text, chat) VALUES (?, ?, ?)", rows)

    def search(self, query: str, scope: Scope, n: int) -> dict[int, float]:
        match = match_of(self.memory.searcher.terms.keep(query_words(query)))
        if match is None:
            return {}
        rows = self.conn.execute(
            "SELECT rowid, bm25(plain) AS r FROM plain WHERE plain MATCH ? AND chat = ?"
            " ORDER BY r LIMIT ?",
            (match, scope.chat_id, n),
        ).fetchall()
        return {int(i): -float(r) for i, r in rows}


class PlainDense:
    """Every row ranked by MiniLM's vector of its whole text (the model reads its first 256
    tokens), brute force within the chat: the baseline, as plain dense retrieval would rank.
    Not the project's index, whose vectors are the means of sentences (``memory/search.py``)."""

    def __init__(self, memory: Memory) -> None:
        with memory.db.read() as conn:
            rows = conn.execute("SELECT id, text, chat_id FROM memories ORDER BY id").fetchall()
        self.chats: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if not rows:
            return
        ids, texts, chats = (np.array(column) for column in zip(*rows, strict=True))
        vectors = memory.embedder.embed(texts.tolist())
        for chat in np.unique(chats):
            self.chats[int(chat)] = (ids[chats == chat], vectors[chats == chat])

    def search(self, vector: np.ndarray, scope: Scope, n: int) -> dict[int, float]:
        if scope.chat_id not in self.chats:
            return {}
        ids, vectors = self.chats[scope.chat_id]
        sims = vectors @ np.asarray(vector, dtype=np.float32).reshape(-1)
        top = np.argsort(-sims)[:n]
        return {int(ids[i]): float(sims[i]) for i in top}


def _rank(c: Candidates, name: str) -> list[int]:
    if name in ("bm25", "bm25+ctx"):
        scores = c.fts
    elif name == "dense":
        scores = c.dense
    elif name.startswith("rrf"):
        scores = fuse(c, 0.0, "rrf", int(name.removeprefix("rrf") or 60))
    else:
        scores = fuse(c, float(name.removeprefix("score")), "score")
    return sorted(scores, key=lambda i: -scores[i])


def evaluate(
    memory: Memory, questions: Iterable[Question]
) -> dict[str, dict[str, dict[int | str, float]]]:
    """``{group: {variant: {k or extra: mean}}}`` (``measure``); group "all" holds every
    question."""
    sums: dict[str, dict[str, dict[int | str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    s = memory.settings
    plain_bm25 = PlainBM25(memory)
    plain_dense = PlainDense(memory)
    for q in questions:
        filters = Filters(q.scope)
        vector = memory.vectors([q.text], [content_hash(q.text)])[0]
        n = max(s.search_candidates, max(KS) * 3)
        # The project's full-text list ("bm25+ctx"); no vector: its dense list is not used here.
        c = memory.searcher.candidates(q.text, filters, None, memory.index, n)
        plain = Candidates(
            plain_bm25.search(q.text, q.scope, n), plain_dense.search(vector, q.scope, n)
        )
        ids = [*c.fts, *plain.fts, *plain.dense]
        refs = {i: r.ref for i, r in store.rows_by_id(memory.db, ids, filters).items()}
        ranked: dict[str, list[str | None]] = {}
        for name in variants()[:-2]:
            ranked[name] = [refs.get(i) for i in _rank(c if name == "bm25+ctx" else plain, name)]
        hits = memory.search_sync(q.text, q.scope, k=max(KS), now=q.now)
        ranked["ours"] = [h.ref for h in hits]
        for name, got in ranked.items():
            for key, value in measure(q.evidence, got).items():
                for group in {"all", q.group}:
                    sums[group][name][key].append(value)
        for k in KS:
            seen = {r for h in hits[:k] for r in (h.ref, *(t.ref for t in (*h.before, *h.after)))}
            share = len(q.evidence & seen) / len(q.evidence)
            for group in {"all", q.group}:
                sums[group]["ours+ctx"][k].append(share)
    return {
        g: {v: {k: sum(xs) / len(xs) for k, xs in ks.items()} for v, ks in vs.items()}
        for g, vs in sums.items()
    }


def daemons_embedder(settings: MemorySettings) -> SentenceTransformerEmbedder:
    """The bundled model as the daemon loads it, so a search's query is embedded as there
    (``memory.embedding_traced``, ``embedding_query_int8``)."""
    return SentenceTransformerEmbedder(
        trace=settings.embedding_traced, query_int8=settings.embedding_query_int8
    )


def recall_ours(memory: Memory, questions: Iterable[Question]) -> dict[int | str, float]:
    """Mean recall@k (and ``EXTRA``) of the project's search alone, as configured."""
    shares: dict[int | str, list[float]] = defaultdict(list)
    for q in questions:
        got = [h.ref for h in memory.search_sync(q.text, q.scope, k=max(KS), now=q.now)]
        for key, value in measure(q.evidence, got).items():
            shares[key].append(value)
    return {
        key: sum(shares[key]) / len(shares[key]) if shares[key] else 0.0 for key in (*KS, *EXTRA)
    }


def count(questions: Sequence[Question], group: str) -> int:
    return sum(1 for q in questions if group in ("all", q.group))


def table(title: str, results: dict[str, dict[int | str, float]], n: int) -> str:
    """R@k, then any@5 and all@10 where measured ("ours+ctx" has R@k only)."""
    columns: list[int | str] = [*KS, *EXTRA]
    lines = [
        f"{title} ({n} questions)",
        f"  {'ranking':<12}" + "".join(f"{f'R@{c}' if c in KS else c:>8}" for c in columns),
    ]
    for name in variants():
        if name in results:
            got = results[name]
            lines.append(
                (
                    f"  {name:<12}"
                    + "".join(f"{got[c]:>8.3f}" if c in got else f"{'':>8}" for c in columns)
                ).rstrip()
            )
    return "\n".join(lines)
