"""Memory at scale on real text: ingest against the raw encoder, search latency split into its
parts, and ANN recall on real MiniLM vectors.

The text comes from a dataset passed as an argument (LoCoMo's JSON: every turn "Speaker: text",
as ``memory_locomo.py`` imports it; or a text file, one sentence per line); its questions (LoCoMo) or a sample of its sentences are
the queries. Nothing is generated from a small vocabulary, so full-text ranking does real work.

1. Ingest (``--ingest N``): N texts of about 250 characters (two sentences joined) are embedded
   by the bare encoder and imported through ``memory.importer`` into a fresh store, alternately,
   ``--repeats`` times; the median of the ratio of the two throughputs is printed (target 0.85).
2. Search at each ``--sizes``: rows are two random sentences joined (real words, real length),
   each a note (or a turn, ``--kind message``) with the normalised sum of its sentences' MiniLM
   vectors and those two as its sentence vectors (as the project embeds both): real MiniLM
   geometry without
   embedding 100k texts on a shared CPU (the unique sentences are embedded once and cached with
   ``--cache``). Timed separately, per query: the query's embedding (and, as its baseline, the
   same model run untraced: ``SentenceTransformerEmbedder._trace``; and as a search's query is
   embedded, "embed query": the int8 copy when ``memory.embedding_query_int8`` is on,
   ``_quantise``), full-text search (the FTS5
   query with the term filter, and reading the rows it found: the search reads them while the
   query is embedded), dense search (index plus the scope filter in SQLite), and the
   whole ``Memory.search_sync`` twice: "search" with the query's vector already known (as in
   the daemon, where the query is usually the message just stored and its vector is reused),
   and "hybrid" with the query to embed (on another thread while full text runs); "hybrid
   float query", the same with the query embedded by the float model (the baseline for the
   int8 copy); then, as the baseline for the thread, "embed then search": the query embedded
   first, then searched with its vector known. All, per query, in turn. p50/p99 (targets at 100k: 15 ms / 50 ms).
3. Where the index is approximate (IVF, past ``exact_index_max``), recall@10 against exact
   search for the real query vectors (target >= 0.95).
4. The time of a forget the user asks for (the text erased from every byte of the store and the
   vector from the saved index), for three rows.

    python bench/memory_scale.py DATASET [--sizes 10000,100000] [--ingest 600] [--cache DIR]

The embedder runs with the daemon's ``memory.embedding_threads`` (1) unless ``--threads`` says
otherwise: two threads per text on a 2-core machine fight full text for the cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory import store  # noqa: E402
from memory.db import Database  # noqa: E402
from memory.embedder import Embedder, SentenceTransformerEmbedder  # noqa: E402
from memory.importer import ImportReport, import_records  # noqa: E402
from memory.schema import migrations  # noqa: E402
from memory.service import Memory  # noqa: E402
from memory.settings import MemorySettings  # noqa: E402
from memory.store import Filters  # noqa: E402
from memory.text import content_hash  # noqa: E402
from memory.types import Scope  # noqa: E402


def read_dataset(path: Path) -> tuple[list[str], list[str]]:
    """(sentences, questions) of a LoCoMo-style JSON file or a plain text file."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        sentences, questions = [], []
        for item in data:
            for value in item["conversation"].values():
                if isinstance(value, list):
                    sentences += [
                        f"{t['speaker']}: {t['text']}"
                        + (
                            f" [shares a photo: {t['blip_caption']}]"
                            if t.get("blip_caption")
                            else ""
                        )
                        for t in value
                    ]
            questions += [qa["question"] for qa in item.get("qa", [])]
        return list(dict.fromkeys(sentences)), list(dict.fromkeys(questions))
    lines = [x.strip() for x in path.read_text().splitlines() if x.strip()]
    return list(dict.fromkeys(lines)), lines[::50]


def embedded(
    embedder: SentenceTransformerEmbedder, texts: list[str], cache: Path | None
) -> np.ndarray:
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    file = cache / f"vectors-{embedder.model_name}-{key}.npy" if cache else None
    if file is not None and file.exists():
        return np.load(file)
    vectors = embedder.embed(texts)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, vectors)
    return vectors


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def ingest(embedder: SentenceTransformerEmbedder, texts: list[str], repeats: int) -> None:
    embedder.embed(texts[:64])  # warm
    ratios, raws, ours = [], [], []
    for _ in range(repeats):
        t = time.monotonic()
        embedder.embed(texts)
        raw = len(texts) / (time.monotonic() - t)
        with tempfile.TemporaryDirectory() as d:
            db = Database.open(Path(d) / "f.db", [migrations])
            memory = Memory(db, embedder, MemorySettings(), Path(d) / "index")
            memory.warm_sync()
            rows = (
                (
                    i,
                    {
                        "text": x,
                        "scope": Scope(1),
                        "ts": None,
                        "ref": str(i),
                        "kind": "message",
                        "role": "user",
                    },
                )
                for i, x in enumerate(texts)
            )
            t = time.monotonic()
            report = import_records(memory, rows, ImportReport())
            mine = report.imported / (time.monotonic() - t)
            db.close()
        raws.append(raw)
        ours.append(mine)
        ratios.append(mine / raw)
    print(
        f"ingest of {len(texts)} texts of {statistics.mean(map(len, texts)):.0f} characters, "
        f"{repeats} alternating runs: raw encoder {statistics.median(raws):.1f} texts/s, import "
        f"{statistics.median(ours):.1f} texts/s, ratio median {statistics.median(ratios):.2f} "
        f"(runs {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.85)",
        flush=True,
    )


class _Known(Embedder):
    """The real embedder, but a query whose vector is already known is not embedded again: as
    in the daemon, where the query is usually the message just stored and its vector is reused
    (``skip`` turns that off, to time the search with the query's embedding)."""

    def __init__(self, inner: SentenceTransformerEmbedder, known: dict[str, np.ndarray]) -> None:
        self.inner, self.known, self.skip = inner, known, False
        self.float_query = False  # a query embedded by ``embed``, not ``embed_query``
        self.model_name = inner.model_name

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not self.skip and all(t in self.known for t in texts):
            return np.stack([self.known[t] for t in texts])
        return self.inner.embed(texts)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        if self.float_query or (not self.skip and all(t in self.known for t in texts)):
            return self.embed(texts)
        return self.inner.embed_query(texts)


def scale(
    embedder: SentenceTransformerEmbedder,
    n: int,
    sentences: list[str],
    vectors: np.ndarray,
    queries: list[str],
    query_vectors: np.ndarray,
    settings: MemorySettings,
    kind: str = "note",
    untraced: SentenceTransformerEmbedder | None = None,
) -> None:
    untraced = untraced or embedder
    rng = np.random.default_rng(n)
    pairs = rng.integers(0, len(sentences), (n, 2))
    with tempfile.TemporaryDirectory() as d:
        t = time.monotonic()
        db = Database.open(Path(d) / "f.db", [migrations])
        for start in range(0, n, 20_000):
            rows = []
            for i in range(start, min(n, start + 20_000)):
                a, b = pairs[i]
                text = f"{sentences[a]} {sentences[b]}"
                v = vectors[a] + vectors[b]
                note = kind == "note"
                rows.append(
                    store.NewMemory(
                        1,
                        None,
                        kind,
                        text,
                        f"{i}:{content_hash(text)}",
                        float(i),
                        embedding=v / np.linalg.norm(v),
                        model=embedder.model_name,
                        # By sentence, as the project embeds both kinds (a turn also has a
                        # row in ``messages``, the two sides taking turns, so each has the
                        # other's as context).
                        parts=np.stack([vectors[a], vectors[b]]),
                        role=None if note else ("user", "assistant")[i % 2],
                    )
                )
            store.insert_memories(db, rows)
        known = _Known(embedder, dict(zip(queries, query_vectors, strict=True)))
        memory = Memory(db, known, settings, Path(d) / "index")
        memory.warm_sync()
        index = memory.index
        assert index is not None
        build = time.monotonic() - t
        parts: dict[str, list[float]] = {
            "embed": [],
            "embed untraced": [],
            "embed query": [],
            "fts": [],
            "dense": [],
            "search": [],
            "hybrid": [],
            "hybrid float query": [],
            "embed then search": [],
        }
        cand = max(settings.search_candidates, 30)
        with_fts = 0  # queries where full-text search found candidates: it takes part
        terms = memory.searcher.terms
        for q, qv in zip(queries, query_vectors, strict=True):
            # Each timed search sees the words' counts kept from the queries before this one
            # only (``TermFilter``), as the daemon's one search of a message would, not those
            # the timings before it took of the same words.
            before = OrderedDict(terms._kept)
            t = time.monotonic()
            embedder.embed([q])
            parts["embed"].append(time.monotonic() - t)
            t = time.monotonic()
            untraced.embed([q])
            parts["embed untraced"].append(time.monotonic() - t)
            t = time.monotonic()
            embedder.embed_query([q])
            parts["embed query"].append(time.monotonic() - t)
            terms._kept = OrderedDict(before)
            t = time.monotonic()
            c = memory.searcher.candidates(q, Filters(Scope(1)), None, None, cand)
            parts["fts"].append(time.monotonic() - t)
            t = time.monotonic()
            memory.searcher.candidates("", Filters(Scope(1)), qv, index, cand)
            parts["dense"].append(time.monotonic() - t)
            terms._kept = OrderedDict(before)
            t = time.monotonic()
            memory.search_sync(q, Scope(1), k=10)  # the vector is known, as for a stored message
            parts["search"].append(time.monotonic() - t)
            known.skip = True
            # The query embedded while full text runs: as a search's query is, and by the float
            # model; in turns, each first every other query.
            for float_query in (False, True) if len(parts["hybrid"]) % 2 else (True, False):
                known.float_query = float_query
                terms._kept = OrderedDict(before)
                t = time.monotonic()
                memory.search_sync(q, Scope(1), k=10)
                parts["hybrid float query" if float_query else "hybrid"].append(
                    time.monotonic() - t
                )
            known.skip = known.float_query = False
            terms._kept = OrderedDict(before)
            t = time.monotonic()
            embedder.embed([q])  # the baseline: embedded first, then searched
            memory.search_sync(q, Scope(1), k=10)
            parts["embed then search"].append(time.monotonic() - t)
            with_fts += bool(c.fts)
        print(
            f"{n:>9,} memories ({index.kind}, built in {build:.0f} s), {len(queries)} queries "
            f"({with_fts} with full-text candidates): "
            + "; ".join(
                f"{k} p50 {pct(v, 50):.1f} ms p99 {pct(v, 99):.1f} ms" for k, v in parts.items()
            ),
            flush=True,
        )
        ratios = [a / b for a, b in zip(parts["hybrid"], parts["embed then search"], strict=True)]
        print(f"  hybrid / embed then search, per query: median {statistics.median(ratios):.3f}")
        ratios = [a / b for a, b in zip(parts["hybrid"], parts["hybrid float query"], strict=True)]
        print(f"  hybrid / hybrid float query, per query: median {statistics.median(ratios):.3f}")
        if index.kind != "flat":
            import faiss

            ids, _, stored = store.vectors_for(db, list(range(1, n + 1)), index.dim)
            exact = faiss.IndexFlatIP(index.dim)
            exact.add(memory._keys(ids, stored, index.model))  # as the index holds them
            _, truth = exact.search(query_vectors, 10)
            recall = np.mean(
                [
                    len({i for i, _ in index.search(qv, 10)} & set(ids[truth[j]].tolist())) / 10
                    for j, qv in enumerate(query_vectors)
                ]
            )
            print(
                f"  ANN recall@10 against exact search, real query vectors: {recall:.3f} (target >= 0.95)"
            )
        # A forget the user asks for: the row deleted, both full-text indexes merged, the WAL
        # truncated and the saved index rewritten (``Memory.forget_sync``), after the searches.
        taken = []
        for gone in (n // 3, n // 2, 2 * n // 3):
            t = time.monotonic()
            memory.forget_sync(gone, Scope(1))
            taken.append(time.monotonic() - t)
        print(f"  forget (erased), 3 rows: {', '.join(f'{x * 1000:.0f}' for x in taken)} ms")
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--ingest", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobe", type=int, default=None, help="override memory.ivf_nprobe")
    ap.add_argument("--cache", type=Path, help="keep the sentences' vectors here between runs")
    ap.add_argument(
        "--kind",
        choices=("note", "message"),
        default="note",
        help="rows as notes or as conversation turns (one chat, in turns_fts too); both by sentence",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=MemorySettings().embedding_threads or 0,
        help="torch's CPU threads for embedding; default the daemon's (memory.embedding_threads); "
        "0: torch's default (one per core)",
    )
    args = ap.parse_args()
    started = time.monotonic()
    sentences, questions = read_dataset(args.dataset)
    embedder = SentenceTransformerEmbedder(  # as the daemon
        threads=args.threads or None,
        trace=True,
        query_int8=MemorySettings().embedding_query_int8,
    )
    # The same model run as it is, for the one-text path's baseline (``_trace``).
    untraced = SentenceTransformerEmbedder(threads=args.threads or None, trace=False)
    untraced.load()
    embedder.load()
    if args.ingest:
        rng = np.random.default_rng(0)
        picks = rng.integers(0, len(sentences), (args.ingest, 2))
        ingest(embedder, [f"{sentences[a]} {sentences[b]}" for a, b in picks], args.repeats)
    queries = questions[:: max(1, len(questions) // args.queries)][: args.queries]
    vectors = embedded(embedder, sentences, args.cache)
    query_vectors = embedded(embedder, queries, args.cache)
    print(f"{len(sentences)} unique sentences, {len(queries)} queries", flush=True)
    for n in (int(s) for s in args.sizes.split(",") if s):
        settings = MemorySettings(**({"ivf_nprobe": args.nprobe} if args.nprobe else {}))
        scale(
            embedder, n, sentences, vectors, queries, query_vectors, settings, args.kind, untraced
        )
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
