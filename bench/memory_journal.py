"""Recall on generated journals (``journal_corpus``): long single-speaker notes with planted
facts and paraphrased questions, a benchmark unlike LoCoMo that nothing was tuned on.

Each journal is imported as notes in its own chat; each question is asked in its chat; recall@k
is whether the entry holding the answer is among the top k. Prints plain BM25, plain dense, the
fusions, and the project's search ("ours"), with the corpus size and timing.

``--as-turns`` imports the entries as one person's conversation turns instead (no replies): the
turns beside a turn are then unrelated entries, the case where ranking a turn by its
neighbours' words (``--turn-context-words``, and the index's turn keys) could only crowd out
the entry that answers. ``--with-replies`` gives each such turn an assistant's reply about twice
as long (``journal_corpus.replies``), as in a chat with an assistant, where the person's
turns are the short ones: a length prior over all turns found would rank down exactly the turns
that answer. ``--with-replies echo``: each reply also quotes one of the entry's sentences, as an
assistant takes up what it was told, so a reply may hold the fact and compete with the entry.
``--asking``: each reply ends with a question back ("How are you feeling about it now?"), which
the next entry does not answer: a turn read after the question before it must not lose its own
meaning.

    python bench/memory_journal.py [--seed 7] [--chats 3] [--days 400] [--as-turns]
        [--with-replies [generic|echo]] [--asking] [--turn-context-words W]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from journal_corpus import corpus, replies  # noqa: E402
from recall_eval import CachedEmbedder, Question, daemons_embedder, evaluate, table  # noqa: E402

from memory.db import Database  # noqa: E402
from memory.importer import ImportReport, import_records  # noqa: E402
from memory.schema import migrations  # noqa: E402
from memory.service import Memory  # noqa: E402
from memory.settings import MemorySettings  # noqa: E402
from memory.types import Scope  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--chats", type=int, default=3)
    ap.add_argument("--days", type=int, default=400)
    ap.add_argument("--db", type=Path, help="reuse/keep the imported store here (default: temp)")
    ap.add_argument("--as-turns", action="store_true", help="import as one person's turns")
    ap.add_argument(
        "--with-replies",
        nargs="?",
        const="generic",
        choices=("generic", "echo"),
        help="as turns, each with an assistant's reply about twice as long; 'echo': the reply "
        "quotes one of the entry's sentences",
    )
    ap.add_argument(
        "--asking",
        action="store_true",
        help="with --with-replies: each reply ends with a question back, which the next entry "
        "does not answer",
    )
    ap.add_argument("--turn-context-words", type=float, default=None)
    args = ap.parse_args()
    started = time.monotonic()
    entries, probes = corpus(args.seed, args.chats, args.days)
    args.as_turns = args.as_turns or bool(args.with_replies)
    said = [(e, "user") for e in entries]
    if args.with_replies:
        answers = replies(entries, args.seed, echo=args.with_replies == "echo", ask=args.asking)
        answered = zip(said, [(r, "assistant") for r in answers], strict=True)
        said = [t for pair in answered for t in pair]
    workdir = args.db or Path(tempfile.mkdtemp(prefix="journal-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fresh = not (workdir / "familiar.db").exists()
    embedder = CachedEmbedder(daemons_embedder(MemorySettings()), workdir / "embeddings.npz")
    db = Database.open(workdir / "familiar.db", [migrations])
    settings = MemorySettings(
        **(
            {}
            if args.turn_context_words is None
            else {"turn_context_words": args.turn_context_words}
        )
    )
    memory = Memory(db, embedder, settings, workdir / "index")
    memory.warm_sync()
    if fresh:
        rows = (
            (
                n,
                {
                    "text": e.text,
                    "scope": Scope(e.chat),
                    "ts": e.ts,
                    "ref": e.ref,
                    "kind": "message" if args.as_turns else "note",
                    "role": role if args.as_turns else None,
                },
            )
            for n, (e, role) in enumerate(said, 1)
        )
        report = import_records(memory, rows, ImportReport(), batch_size=256)
        print(f"imported {report.imported} entries in {time.monotonic() - started:.1f} s")
    print(
        f"seed {args.seed}: {args.chats} journals x {args.days} entries, "
        f"{statistics.mean(len(e.text) for e in entries):.0f} characters on average"
    )
    questions = [Question(Scope(p.chat), p.question, frozenset({p.ref})) for p in probes]
    results = evaluate(memory, questions)
    what = (
        f"journal turns with replies ({args.with_replies}{', asking' if args.asking else ''})"
        if args.with_replies
        else "journal turns"
        if args.as_turns
        else "journal notes"
    )
    print(
        table(
            f"{what}, turn_context_words {settings.turn_context_words}",
            results["all"],
            len(questions),
        )
    )
    print(f"total {time.monotonic() - started:.1f} s")
    embedder.save()
    db.close()


if __name__ == "__main__":
    main()
