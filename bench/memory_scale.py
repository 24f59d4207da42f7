"""Memory at scale: ingest throughput against the raw encoder, search latency, ANN recall.

1. Ingest: the same N texts are embedded by the bare encoder, then imported through
   ``memory.importer`` into a fresh store; the ratio of the two throughputs is printed
   (target >= 0.85).
2. Search latency at 10k, 100k and 1M stored memories: rows with synthetic clustered vectors
   (384-d, like MiniLM's) are written to SQLite and indexed; at 10k and 100k the full hybrid
   ``Memory.search_sync`` is timed (query embedding, FTS5, index, fusion, neighbours), at 1M the
   query embedding plus the index search. p50/p99 (targets at 100k: 15 ms / 50 ms on 2 cores).
3. Approximate-index recall@10 against exact search on the same vectors (target >= 0.95).

    python bench/memory_scale.py [--sizes 10000,100000,1000000] [--ingest 2000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory import store  # noqa: E402
from memory.db import Database  # noqa: E402
from memory.embedder import SentenceTransformerEmbedder  # noqa: E402
from memory.importer import ImportReport, import_records  # noqa: E402
from memory.index import VectorIndex  # noqa: E402
from memory.schema import migrations  # noqa: E402
from memory.service import Memory  # noqa: E402
from memory.settings import MemorySettings  # noqa: E402
from memory.types import Scope  # noqa: E402

WORDS = (
    "garden tomato invoice meeting flight Lisbon doctor birthday kitten bicycle recipe tax "
    "holiday piano football concert budget report server backup laptop coffee rain"
).split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        f"note {i}: " + " ".join(rng.choice(WORDS, size=int(rng.integers(8, 24)))) for i in range(n)
    ]


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n // 500), dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        out[start : start + m] = centres[
            rng.integers(0, len(centres), m)
        ] + 0.6 * rng.standard_normal((m, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def ingest(embedder: SentenceTransformerEmbedder, n: int) -> None:
    texts = sentences(n)
    embedder.embed(texts[:64])  # warm
    t = time.monotonic()
    embedder.embed(texts)
    raw = n / (time.monotonic() - t)
    with tempfile.TemporaryDirectory() as d:
        db = Database.open(Path(d) / "f.db", [migrations])
        memory = Memory(db, embedder, MemorySettings(), Path(d) / "index")
        memory.warm_sync()
        t = time.monotonic()
        report = import_records(
            memory,
            (
                (
                    i,
                    {
                        "text": x,
                        "scope": Scope(1),
                        "ts": None,
                        "ref": str(i),
                        "kind": "note",
                        "role": None,
                    },
                )
                for i, x in enumerate(texts)
            ),
            ImportReport(),
        )
        ours = report.imported / (time.monotonic() - t)
        db.close()
    print(
        f"ingest: raw encoder {raw:.0f} texts/s, import {ours:.0f} texts/s, ratio {ours / raw:.2f} (target >= 0.85)"
    )


def scale(embedder: SentenceTransformerEmbedder, n: int, queries: list[str], full: bool) -> None:
    dim = embedder.dim
    vectors = clustered(n, dim, seed=n)
    settings = MemorySettings()
    with tempfile.TemporaryDirectory() as d:
        t = time.monotonic()
        if full:
            db = Database.open(Path(d) / "f.db", [migrations])
            texts = sentences(n, seed=1)
            for start in range(0, n, 20_000):
                rows = [
                    store.NewMemory(
                        1,
                        None,
                        "note",
                        texts[i],
                        str(i),
                        0.0,
                        embedding=vectors[i],
                        model=embedder.model_name,
                    )
                    for i in range(start, min(n, start + 20_000))
                ]
                store.insert_memories(db, rows)
            memory = Memory(db, embedder, settings, Path(d) / "index")
            memory.warm_sync()
            index = memory.index
        else:
            index = VectorIndex(
                dim,
                embedder.model_name,
                exact_max=settings.exact_index_max,
                nprobe=settings.ivf_nprobe,
            )
            for start in range(0, n, 100_000):
                ids = np.arange(start + 1, min(n, start + 100_000) + 1)
                index.add(ids, vectors[start : start + len(ids)], np.ones(len(ids)))
        build = time.monotonic() - t
        lat = []
        for q in queries:
            t = time.monotonic()
            if full:
                memory.search_sync(q, Scope(1), k=10)
            else:
                index.search(embedder.embed([q])[0], 10, chat_id=1)
            lat.append(time.monotonic() - t)
        what = "hybrid search" if full else "embed + index search"
        line = f"{n:>9,} memories ({index.kind}, built in {build:.0f} s): {what} p50 {pct(lat, 50):.1f} ms p99 {pct(lat, 99):.1f} ms"
        if index.kind != "flat":
            exact = __import__("faiss").IndexFlatIP(dim)
            exact.add(vectors)
            rng = np.random.default_rng(7)
            probes = vectors[rng.choice(n, 200, replace=False)] + 0.05 * rng.standard_normal(
                (200, dim)
            ).astype(np.float32)
            probes /= np.linalg.norm(probes, axis=1, keepdims=True)
            _, truth = exact.search(probes, 10)
            recall = np.mean(
                [
                    len({i for i, _ in index.search(p, 10)} & set((truth[j] + 1).tolist())) / 10
                    for j, p in enumerate(probes)
                ]
            )
            line += f"; recall@10 vs exact {recall:.3f} (target >= 0.95)"
        print(line, flush=True)
        if full:
            db.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--ingest", type=int, default=2000)
    ap.add_argument(
        "--full-max",
        type=int,
        default=100_000,
        help="largest size timed with the full hybrid search",
    )
    args = ap.parse_args()
    started = time.monotonic()
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    if args.ingest:
        ingest(embedder, args.ingest)
    queries = [f"what did I note about {a} and {b}?" for a in WORDS for b in WORDS[:10]]
    for n in (int(s) for s in args.sizes.split(",")):
        scale(embedder, n, queries, full=n <= args.full_max)
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
