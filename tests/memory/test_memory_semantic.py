"""Recall with the real bundled MiniLM (issue 12, issue 18): a paraphrase that shares no content
word is found by dense search and ranked by the hybrid above unrelated text; an exact rare word
(a name, a code) is found by full-text search; MMR really diversifies."""

from __future__ import annotations

import numpy as np
import pytest

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


DIARY = " ".join(
    [
        "Today I walked to the market, bought some bread and cheese, and came home to read.",
        "The afternoon was quiet; I tidied the kitchen and answered a few letters.",
        "In the evening we cooked pasta and watched an old film about sailors.",
    ]
    * 6
)


def test_the_end_of_a_long_note_is_in_its_vector_too(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    """MiniLM reads 256 tokens and drops the rest; a note longer than that is embedded in pieces
    that fit, so a paraphrase of its last sentence still finds it by dense search."""
    tail = f"{DIARY} {TARGET}."
    assert len(minilm._model.tokenizer(DIARY)["input_ids"]) > 256  # the premise: past the window
    pieces = minilm.pieces(tail, 2_000)
    assert len(pieces) == 2 and TARGET in pieces[-1]
    assert all(len(minilm._model.tokenizer(p)["input_ids"]) <= 256 for p in pieces)
    memory = make_memory(minilm)
    lisbon = f"{DIARY} My sister is moving to Lisbon in the spring."
    q, mine, theirs = memory.vectors([QUERY, tail, lisbon], ["q", "t", "l"])
    assert float(q @ mine) > float(q @ theirs) + 0.01  # cut at the window, the two were equal
    other = run(memory.add_memory(lisbon, CHAT))
    target = run(memory.add_memory(tail, CHAT))
    ranked = [h.id for h in run(memory.search(QUERY, CHAT, k=10))]
    assert target in ranked and (other not in ranked or ranked.index(target) < ranked.index(other))


def test_long_rows_from_before_are_embedded_again_in_full(make_memory, minilm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A store from before: its long rows' vectors were cut at the window. The migration drops
    them, the warm-up embeds them again (in pieces) and the index holds the new vectors."""
    from memory.db import Database, Migrations
    from memory.schema import migrations

    tail = f"{DIARY} {TARGET}."
    cut = minilm._model.encode([tail], normalize_embeddings=True)[0]  # what the old code stored
    short = minilm.embed(["the train was late"])[0]
    path = tmp_path / "old"
    path.mkdir()
    db = Database.open(path / "familiar.db", [Migrations("memory", migrations.steps[:2])])
    with db.transaction() as conn:
        for i, (text, vector) in enumerate(((tail, cut), ("the train was late", short)), 1):
            conn.execute(
                "INSERT INTO memories (chat_id, kind, text, content_hash, ts, created_at,"
                " embedding, embedding_model) VALUES (1, 'note', ?, ?, 0, 0, ?, ?)",
                (text, f"h{i}", vector.tobytes(), minilm.model_name),
            )
    db.close()
    memory = make_memory(minilm, path=path)
    with memory.db.read() as conn:
        stored = dict(conn.execute("SELECT id, embedding FROM memories").fetchall())
    whole = memory.vectors([tail], ["fresh"])[0]
    assert float(cut @ whole) < 0.99  # the premise: the cut vector differs
    assert np.frombuffer(stored[1], np.float32) == pytest.approx(whole, abs=1e-5)
    assert stored[2] == short.tobytes()  # a short row keeps its vector
    assert memory.index is not None and memory.index.ntotal == 2
    assert float(memory.vectors([QUERY], ["q"])[0] @ whole) > float(
        memory.vectors([QUERY], ["q"])[0] @ cut
    )
