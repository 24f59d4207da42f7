"""Recall with the real bundled MiniLM (issue 12, issue 18): a paraphrase that shares no content
word is found by dense search and ranked by the hybrid above unrelated text; an exact rare word
(a name, a code) is found by full-text search; MMR really diversifies."""

from __future__ import annotations

from memory.text import STOPWORDS, words
from memory.types import Scope

from .conftest import run

CHAT = Scope(1)
UNRELATED = [
    "I bought tulips and a bag of apples at the market",
    "The train to Leeds was forty minutes late again",
    "We watched a documentary about octopuses last night",
    "The invoice from the accountant is due on Friday",
    "My knee hurts after the long run on Sunday",
    "The printer on the second floor is out of toner",
]
TARGET = "My flat is freezing since the heating broke down"
QUERY = "radiator stopped working and the apartment feels icy"


def content(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS}


def test_a_paraphrase_with_no_shared_word_is_recalled_and_ranked_first(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    assert content(TARGET) & content(QUERY) == set()  # the premise: nothing for BM25 to find
    memory = make_memory(minilm)
    for text in UNRELATED:
        run(memory.add_memory(text, CHAT))
    target = run(memory.add_memory(TARGET, CHAT))
    hits = run(memory.search(QUERY, CHAT, k=3))
    assert hits[0].id == target
    assert hits[0].provenance["dense"] and not hits[0].provenance["fts"]
    assert all(h.score < hits[0].score for h in hits[1:])


def test_an_exact_rare_word_is_recalled_by_full_text(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(minilm)
    for text in UNRELATED:
        run(memory.add_memory(text, CHAT))
    code = run(memory.add_memory("The storage locker code is QX7731, write it down", CHAT))
    name = run(memory.add_memory("Our new plumber is called Wojciechowski", CHAT))
    for query, wanted in (("QX7731", code), ("Wojciechowski", name)):
        [hit] = run(memory.search(query, CHAT, k=1))
        assert hit.id == wanted and hit.provenance["fts"]


def test_mmr_trades_repeats_for_a_different_relevant_memory(make_memory, minilm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    repeats = [
        "Booked the hotel in Paris for the trip in May",
        "Booked a hotel in Paris for our May trip",
        "The Paris trip in May: hotel booked",
    ]
    other = "In Paris we want to see the Orsay museum"

    def top(name: str, **settings: object) -> list[str]:
        (tmp_path / name).mkdir()
        memory = make_memory(minilm, path=tmp_path / name, **settings)
        for text in [*repeats, other, *UNRELATED]:
            run(memory.add_memory(text, CHAT))
        return [h.text for h in run(memory.search("the hotel for the Paris trip", CHAT, k=2))]

    assert set(top("plain")) <= set(repeats)  # relevance alone: two ways of saying the same thing
    diverse = top("mmr", mmr_lambda=0.3)
    assert other in diverse and len(set(diverse) & set(repeats)) == 1
