"""``bench/journal_corpus.py``, the generator of the second recall benchmark: seeded, facts
planted where they replace filler (so an entry with a fact is not longer), each question naming
its entity, and the assistant's replies of ``--with-replies`` long and free of any fact."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from journal_corpus import CLOSERS, PEOPLE, PETS, corpus, replies  # noqa: E402


def test_the_corpus_is_seeded_and_facts_do_not_make_entries_longer() -> None:
    entries, probes = corpus(7, 2, 400)
    again, _ = corpus(7, 2, 400)
    assert [e.text for e in entries] == [e.text for e in again]
    assert [e.text for e in corpus(8, 2, 400)[0]] != [e.text for e in entries]
    refs = {e.ref: e for e in entries}
    assert len(refs) == len(entries) == 800 and all(p.ref in refs for p in probes)
    facts = {p.ref for p in probes}
    with_fact = [len(e.text) for e in entries if e.ref in facts]
    others = [len(e.text) for e in entries if e.ref not in facts]
    assert abs(statistics.median(with_fact) / statistics.median(others) - 1) < 0.1


def test_replies_are_long_and_hold_no_fact_or_entity() -> None:
    entries, probes = corpus(7, 1, 400)
    answers = replies(entries, 7)
    assert [r.text for r in answers] == [r.text for r in replies(entries, 7)]
    assert [r.ref for r in answers] == [f"{e.ref}/reply" for e in entries]
    assert all(r.ts > e.ts and r.chat == e.chat for r, e in zip(answers, entries, strict=True))
    ratio = statistics.median(len(r.text) for r in answers) / statistics.median(
        len(e.text) for e in entries
    )
    assert 1.5 < ratio < 3.0  # about twice
    names = set(PETS) | set(PEOPLE)
    assert not any(name in r.text.split() for r in answers for name in names)
    assert not any(p.ref.endswith("/reply") for p in probes)
    # Echoing, each reply quotes a sentence of its entry, and is otherwise the same reply.
    echoed = replies(entries, 7, echo=True)
    for r, plain, e in zip(echoed, answers, entries, strict=True):
        quoted = r.text.split("You wrote: ", 1)[1].split(".", 1)[0]
        assert quoted and quoted in e.text
        assert r.text.replace(f" You wrote: {quoted}.", "") == plain.text
    # Asking, each reply ends with a question back, and is otherwise the same reply.
    asking = replies(entries, 7, ask=True)
    for r, plain in zip(asking, answers, strict=True):
        closer = next(c for c in CLOSERS if r.text.endswith(c))
        assert r.text == f"{plain.text} {closer}"
    assert len({r.text.rsplit(". ", 1)[-1] for r in asking}) == len(CLOSERS)
