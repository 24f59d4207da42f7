"""Documents into memory: ingest throughput against the raw encoder, planted-fact recall, latency.

A PDF of ``--pages`` pages (default 300) is written with fpdf2: each page a few paragraphs of
everyday sentences, and on ``--facts`` pages spread through it one planted sentence each.

1. Ingest: ``memory.ingest.ingest_file_sync`` (pypdf text, chunking, embedding, one SQLite
   transaction, the FAISS index) into a fresh store, against the bare encoder embedding the same
   chunks' texts with the same batch size. The two run interleaved, ``--rounds`` times each, and
   the medians are compared: pages/s and chunks/s of ingest, and its ratio to the encoder's
   chunks/s (target >= 0.85).
2. Recall: for each planted fact a question in other words is searched (hybrid search, k = 5,
   documents only); a hit is the chunk of the right page. Target 1.0.
3. Search latency over the stored document: p50 and p99 of ``Memory.search_sync`` over the
   questions, repeated ``--repeats`` times.

    python bench/documents.py [--pages 300] [--facts 10] [--rounds 3] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory.db import Database  # noqa: E402
from memory.documents import convert  # noqa: E402
from memory.embedder import SentenceTransformerEmbedder  # noqa: E402
from memory.ingest import ingest_file_sync, limits_of, pieces_of  # noqa: E402
from memory.schema import migrations  # noqa: E402
from memory.service import Memory  # noqa: E402
from memory.settings import MemorySettings  # noqa: E402
from memory.text import clean  # noqa: E402
from memory.types import Scope  # noqa: E402

SUBJECTS = (
    "The tenant|The landlord|The committee|Our neighbour|The inspector|The bakery|The school".split(
        "|"
    )
)
VERBS = "repaired|inspected|painted|cleaned|discussed|measured|ordered|replaced|reported".split("|")
OBJECTS = (
    "the hallway lights|the boiler|the front gate|the roof gutters|the laundry room|"
    "the parking spaces|the kitchen tiles|the stairwell carpet|the garden hedge"
).split("|")
WHEN = "on Monday|last week|before the winter|in the spring|after the meeting|twice a year".split(
    "|"
)
FACTS = [
    (
        "The spare key to the bicycle shed is kept under the blue flowerpot.",
        "where is the spare key for the bike shed hidden?",
    ),
    (
        "Rubbish bins must be put out on Thursday evenings before nine o'clock.",
        "which evening do the rubbish bins go out?",
    ),
    (
        "Pets are allowed only with written permission from the housing office.",
        "am I allowed to keep a pet?",
    ),
    (
        "The deposit of two months' rent is returned within thirty days of leaving.",
        "when will I get my deposit back after moving out?",
    ),
    (
        "Quiet hours run from ten at night until seven in the morning.",
        "until what time in the morning must it be quiet?",
    ),
    (
        "Satellite dishes may not be fixed to the balcony railings.",
        "can I mount a satellite dish on my balcony?",
    ),
    (
        "The washing machines in the basement are free to use on Sundays.",
        "is the basement laundry free on some day?",
    ),
    (
        "Visitors may park in the courtyard for at most three hours.",
        "how long can a guest leave their car in the courtyard?",
    ),
    (
        "Smoke detectors are tested by the caretaker every March.",
        "when are the smoke alarms checked?",
    ),
    (
        "Subletting the flat requires the landlord's approval in advance.",
        "may I sublet my apartment?",
    ),
    (
        "Barbecues with charcoal are forbidden on every balcony of the building.",
        "can I grill with charcoal on the balcony?",
    ),
    (
        "The rent rises by two percent each January under the index clause.",
        "how much does the rent go up every year?",
    ),
]


def filler(rng: np.random.Generator, n: int) -> str:
    return " ".join(
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(WHEN)}."
        for _ in range(n)
    )


def make_pdf(path: Path, pages: int, facts: int, seed: int = 0) -> dict[int, tuple[str, str]]:
    from fpdf import FPDF

    rng = np.random.default_rng(seed)
    planted = {
        int(p): FACTS[i % len(FACTS)]
        for i, p in enumerate(np.linspace(5, pages - 3, facts).round().astype(int))
    }
    pdf = FPDF()
    pdf.set_font("Helvetica", size=10)
    for page in range(1, pages + 1):
        pdf.add_page()
        pdf.multi_cell(0, 5, f"House rules and minutes, page {page}", new_x="LMARGIN", new_y="NEXT")
        for paragraph in range(3):
            text = filler(rng, 5)
            if page in planted and paragraph == 1:
                text += " " + planted[page][0]
            pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))
    return planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--facts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    settings = MemorySettings()
    embedder = SentenceTransformerEmbedder(
        batch_size=settings.embedding_batch_size, threads=settings.embedding_threads
    )
    embedder.load()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        pdf = work / "rules.pdf"
        planted = make_pdf(pdf, args.pages, args.facts)
        # The texts exactly as memory stores (and embeds) them: cleaned.
        chunks = [clean(p.text) for p in pieces_of(convert(pdf, limits_of(settings)), settings)]
        print(f"{args.pages} pages, {len(chunks)} chunks, {len(planted)} planted facts")
        embedder.embed(chunks[:64])  # warm-up, outside the timings

        raw_s, ingest_s = [], []
        memory: Memory | None = None
        for r in range(args.rounds):
            t0 = time.perf_counter()
            embedder.embed(chunks)
            raw_s.append(time.perf_counter() - t0)
            db = Database.open(work / f"round{r}.db", [migrations])
            memory = Memory(db, embedder, settings, work / f"index{r}")
            memory.warm_sync()
            t0 = time.perf_counter()
            result = ingest_file_sync(memory, pdf, Scope(1))
            ingest_s.append(time.perf_counter() - t0)
            assert result.chunks == len(chunks)
            if r < args.rounds - 1:
                db.close()
        assert memory is not None
        raw, ingest = statistics.median(raw_s), statistics.median(ingest_s)
        print(
            f"raw encoder: {len(chunks) / raw:.1f} chunks/s (median of {args.rounds}: {raw:.2f} s)"
        )
        print(
            f"ingest: {args.pages / ingest:.1f} pages/s, {len(chunks) / ingest:.1f} chunks/s "
            f"(median {ingest:.2f} s)"
        )
        print(f"ingest / raw encoder: {raw / ingest:.3f} (target >= 0.85)")

        found, latencies = 0, []
        for page, (_fact, question) in planted.items():
            hits = memory.search_sync(question, Scope(1), k=5, kinds=["document"])
            if any(h.ref == f"rules.pdf#page={page}" for h in hits):
                found += 1
            else:
                print(f"  missed page {page}: {question!r} -> {[h.ref for h in hits]}")
        for _ in range(args.repeats):
            for _page, (_fact, question) in planted.items():
                t0 = time.perf_counter()
                memory.search_sync(question, Scope(1), k=5, kinds=["document"])
                latencies.append((time.perf_counter() - t0) * 1000)
        print(f"recall@5 of planted facts: {found / len(planted):.3f} ({found}/{len(planted)})")
        print(
            f"search latency over {len(latencies)} queries: p50 {np.percentile(latencies, 50):.1f} ms, "
            f"p99 {np.percentile(latencies, 99):.1f} ms"
        )
        memory.db.close()


if __name__ == "__main__":
    main()
