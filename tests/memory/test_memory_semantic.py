"""Recall with the real bundled MiniLM (issue 12, issue 18): a paraphrase that shares no content
word is found by dense search and ranked by the hybrid above unrelated text; an exact rare word
(a name, a code) is found by full-text search; MMR really diversifies."""

from __future__ import annotations

import numpy as np
import pytest

from memory.embedder import SentenceTransformerEmbedder
from memory.service import Memory
from memory.settings import MemorySettings
from memory.store import Filters, parts_array
from memory.text import STOPWORDS, sentences, words
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


def test_rows_from_before_are_embedded_again_where_the_way_changed(
    make_memory, minilm, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A store from before: a long turn's vector was cut at the window, and notes had no
    sentence vectors. The migrations drop those vectors, the warm-up embeds them again (by
    sentence, the turn's longest in pieces) and the index holds the new ones; a short turn
    keeps its vector."""
    from memory.db import Database, Migrations
    from memory.schema import migrations

    long_turn = f"{DIARY} {TARGET}."
    note = "The plumber came on Tuesday. He replaced the valve under the sink."
    old = {
        text: minilm._model.encode([text], normalize_embeddings=True)[0]  # as the old code did
        for text in (long_turn, "the train was late", note)
    }
    kinds = {long_turn: "message", "the train was late": "message", note: "note"}
    path = tmp_path / "old"
    path.mkdir()
    db = Database.open(path / "familiar.db", [Migrations("memory", migrations.steps[:2])])
    with db.transaction() as conn:
        for i, (text, vector) in enumerate(old.items(), 1):
            conn.execute(
                "INSERT INTO memories (chat_id, kind, text, content_hash, ts, created_at,"
                " embedding, embedding_model) VALUES (1, ?, ?, ?, 0, 0, ?, ?)",
                (kinds[text], text, f"h{i}", vector.tobytes(), minilm.model_name),
            )
    db.close()
    memory = make_memory(minilm, path=path)
    with memory.db.read() as conn:
        stored = {r[0]: r[1:] for r in conn.execute("SELECT id, embedding, parts FROM memories")}
    whole, turn_parts = memory.embed_texts([long_turn], ["fresh"], [True])
    whole = whole[0]
    assert float(old[long_turn] @ whole) < 0.99  # the premise: the cut vector differs
    assert np.frombuffer(stored[1][0], np.float32) == pytest.approx(whole, abs=1e-5)
    assert turn_parts[0] is not None
    # Sentence vectors are kept in half precision (memory m007): three significant digits.
    assert parts_array(stored[1][1], minilm.dim) == pytest.approx(turn_parts[0], abs=1e-3)
    assert stored[2] == (old["the train was late"].tobytes(), None)
    vector, parts = memory.embed_texts([note], ["fresh-note"], [True])
    assert parts[0] is not None and parts[0].shape == (2, minilm.dim)
    assert np.frombuffer(stored[3][0], np.float32) == pytest.approx(vector[0], abs=1e-5)
    assert parts_array(stored[3][1], minilm.dim) == pytest.approx(parts[0], abs=1e-3)
    assert memory.index is not None and memory.index.ntotal == 3
    q = memory.vectors([QUERY], ["q"])[0]
    assert float(q @ whole) > float(q @ old[long_turn])


def test_turns_embedded_whole_are_embedded_again_by_sentence_and_the_saved_index_follows(
    minilm, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A store from before m006, its index saved: a turn of several sentences was embedded
    whole. After the migration the warm-up embeds it by sentence and the index holds its new
    vector; a turn of one sentence keeps its vector, and both are found."""
    from memory.db import Database, Migrations
    from memory.schema import migrations

    two, one = "We drove to the coast on Saturday. " + TARGET + ".", "the train was late"
    old = minilm.embed([two, one])
    path = tmp_path / "old"
    path.mkdir()
    db = Database.open(path / "familiar.db", [Migrations("memory", migrations.steps[:5])])
    with db.transaction() as conn:
        for text, vector in zip((two, one), old, strict=True):
            conn.execute(
                "INSERT INTO memories (chat_id, kind, text, content_hash, ts, created_at,"
                " embedding, embedding_model, embedding_dim) VALUES (1, 'message', ?, ?, 0, 0, ?, ?, ?)",
                (text, text, vector.tobytes(), minilm.model_name, minilm.dim),
            )
    before = Memory(db, minilm, MemorySettings(), path / "index")
    before.warm_sync()
    before.save_index()
    db.close()
    assert (path / "index" / "manifest.json").exists()

    db = Database.open(path / "familiar.db", [migrations])
    try:
        memory = Memory(db, minilm, MemorySettings(), path / "index")
        memory.warm_sync()
        with db.read() as conn:
            stored = {
                r[0]: r[1:] for r in conn.execute("SELECT text, embedding, parts FROM memories")
            }
        vector, parts = memory.embed_texts([two], ["fresh"], [True])
        assert parts[0] is not None and parts[0].shape == (2, minilm.dim)
        assert np.frombuffer(stored[two][0], np.float32) == pytest.approx(vector[0], abs=1e-5)
        assert float(vector[0] @ old[0]) < 0.99  # the premise: the way changed the vector
        assert stored[one] == (old[1].tobytes(), None)
        assert memory.index is not None and memory.index.ntotal == 2
        with db.read() as conn:
            ids = {t: i for i, t in conn.execute("SELECT id, text FROM memories")}
        held = memory.index._reconstruct(np.array([ids[two]], dtype=np.int64))[0]
        assert held == pytest.approx(vector[0], abs=1e-5)
        found = [h.id for h in run(memory.search(QUERY, CHAT, k=2))]
        assert found[0] == ids[two]
    finally:
        db.close()


COAST = (
    "We spent the weekend at the coast with the kids. The fish and chips were great and the sea "
    f"was calm. {TARGET}. On Sunday we drove home late and the traffic was awful."
)


def test_notes_and_turns_are_embedded_by_sentence_and_found_by_their_best_one(
    make_memory, minilm
) -> None:  # type: ignore[no-untyped-def]
    """A note or a conversation turn of several sentences keeps each sentence's vector (its
    own is their mean; the same text as a note and as a turn is embedded once); a fact and a
    one-sentence note keep one vector. Search scores them by their best sentence too, which is
    far nearer the question than the whole."""
    memory = make_memory(minilm)
    note = run(memory.add_memory(COAST, CHAT, "note"))
    turn = run(memory.add_memory(COAST, CHAT, "message"))  # the same text, as a turn
    one = run(memory.add_memory(TARGET, CHAT, "note"))
    fact = run(memory.add_memory("I keep the spare key under the blue pot. Always.", CHAT, "fact"))
    with memory.db.read() as conn:
        rows = {r[0]: r[1:] for r in conn.execute("SELECT id, embedding, parts FROM memories")}
    parts = parts_array(rows[note][1], minilm.dim)
    assert parts.shape[0] == 4
    mean = parts.sum(axis=0) / np.linalg.norm(parts.sum(axis=0))
    # The row's vector is float32, the mean of its sentences' before they were halved.
    assert np.frombuffer(rows[note][0], np.float32) == pytest.approx(mean, abs=1e-3)
    assert rows[turn] == rows[note]
    assert rows[one][1] is None and rows[fact][1] is None
    whole = minilm.embed([COAST])[0]
    assert float(whole @ mean) < 0.99  # the premise: embedded whole, the vector would differ
    q = memory.vectors([QUERY], ["q"])[0]
    best = memory.searcher.best_sentences([note, turn, one], q, minilm.model_name)
    assert set(best) == {note, turn}
    assert best[note] > float(q @ mean) + 0.1
    assert best[note] == best[turn] == pytest.approx(float((parts @ q).max()))
    hits = [h.id for h in run(memory.search(QUERY, CHAT, k=5))]
    assert note in hits and turn in hits


def test_a_stored_message_is_the_query_vector_only_when_embedded_whole(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    """The message just stored is usually the search's query: its vector is reused when it was
    embedded whole (one sentence). One of several sentences is stored as their mean, so the
    query is embedded whole, like any other question."""
    memory = make_memory(minilm)
    run(memory.add_message(1, 7, "user", COAST))
    run(memory.add_message(1, 7, "user", TARGET))
    with memory.db.read() as conn:
        stored = dict(conn.execute("SELECT text, embedding FROM memories").fetchall())
    reused = memory._query_vector(TARGET)
    assert isinstance(reused, np.ndarray) and reused.tobytes() == stored[TARGET]
    embedded = memory._query_vector(COAST)
    assert callable(embedded)
    vector = embedded()
    assert vector is not None and vector.tobytes() != stored[COAST]
    assert float(vector @ minilm.embed([COAST])[0]) > 0.99  # the text whole (int8 or float)


def test_one_text_is_embedded_as_it_is_in_a_batch(minilm) -> None:  # type: ignore[no-untyped-def]
    """A single text (a query) takes a shorter path through the model; the vector is the same."""
    alone = np.stack([minilm.embed([t])[0] for t in (QUERY, TARGET)])
    batch = minilm.embed([QUERY, TARGET])
    assert alone.shape == batch.shape == (2, minilm.dim)
    assert np.allclose(alone, batch, atol=1e-5)
    assert np.allclose(np.linalg.norm(alone, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def traced() -> SentenceTransformerEmbedder:
    """The bundled model as the daemon runs it: traced, with an int8 copy for queries."""
    embedder = SentenceTransformerEmbedder(trace=True, query_int8=True)
    embedder.load()
    return embedder


def test_one_text_runs_the_traced_model_and_gets_the_models_vector(minilm, traced) -> None:  # type: ignore[no-untyped-def]
    """The bundled model traces; for texts of any length (past the model's window too) the
    traced path gives the vector the model itself gives (``minilm`` is not traced), the int8
    copy for queries beside it (which shares the model's weights) notwithstanding."""
    assert traced._traced is not None and minilm._traced is None
    texts = ["ok", QUERY, TARGET, " ".join(["boiler pressure"] * 200), "Ünïcödé 温度 🔥"]
    for text in texts:
        assert np.allclose(traced.embed([text]), minilm.embed([text]), atol=1e-5), text


def test_a_query_runs_an_int8_copy_near_the_models_vector(minilm, traced) -> None:  # type: ignore[no-untyped-def]
    """A search's query goes through the int8 copy: another vector than the model's, but near
    it, and it still ranks a paraphrase first; a query in pieces, or of fewer than
    ``QUERY_INT8_MIN_TOKENS`` tokens, runs as ``embed``."""
    assert traced._query_traced is not None and minilm._query_traced is None
    texts = [QUERY, TARGET, *UNRELATED, "Ünïcödé 温度 🔥 and the boiler's pressure gauge"]
    queried = np.stack([traced.embed_query([t])[0] for t in texts])
    exact = minilm.embed(texts)
    assert np.allclose(np.linalg.norm(queried, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(queried * exact, axis=1)
    assert cosines.min() >= 0.95, cosines
    assert not np.allclose(queried, exact, atol=1e-4)  # really the int8 copy
    assert np.allclose(traced.embed(texts), exact, atol=1e-5)  # the model's weights untouched
    assert np.allclose(minilm.embed_query([QUERY]), exact[0], atol=1e-5)  # untraced: as embed
    documents = minilm.embed([TARGET, *UNRELATED])
    assert int(np.argmax(documents @ traced.embed_query([QUERY])[0])) == 0
    pieces = [QUERY, TARGET]
    assert np.allclose(traced.embed_query(pieces), minilm.embed(pieces), atol=1e-5)
    for short in ("ok", "boiler", "my boiler"):
        assert np.allclose(traced.embed_query([short]), minilm.embed([short]), atol=1e-5)


def test_an_int8_copy_too_far_from_the_model_is_not_used(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A copy whose vectors are further than ``QUERY_INT8_MIN_COSINE`` from the model's at load
    is dropped: queries run the traced float model. Untraced, there is no copy either."""
    import memory.embedder as embedder_module

    monkeypatch.setattr(embedder_module, "QUERY_INT8_MIN_COSINE", 1.0 + 1e-6)
    strict = SentenceTransformerEmbedder(trace=True, query_int8=True)
    strict.load()
    assert strict._traced is not None and strict._query_traced is None
    assert np.allclose(strict.embed_query([QUERY]), strict.embed([QUERY]), atol=1e-6)
    untraced = SentenceTransformerEmbedder(trace=False, query_int8=True)
    untraced.load()
    assert untraced._query_traced is None


class _InputsChange(SentenceTransformerEmbedder):
    """A model whose inputs differ with the text (an extra tensor for long ones): a trace of
    one would be wrong for the others."""

    def _features(self, model, text):  # type: ignore[no-untyped-def]
        import torch

        features = super()._features(model, text)
        if len(text) > 40:
            features["extra"] = torch.zeros(1)
        return features


def test_a_model_that_does_not_trace_faithfully_runs_as_it_is() -> None:
    embedder = _InputsChange(trace=True)
    embedder.load()
    assert embedder._traced is None
    plain = SentenceTransformerEmbedder(trace=False)
    plain.load()
    assert plain._traced is None
    for text in ("short", "a text long enough to be given the extra input tensor"):
        assert np.allclose(embedder.embed([text]), plain.embed([text]), atol=1e-6)


def test_a_query_is_embedded_while_full_text_is_searched(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    """The query's vector comes from another thread; the search is the same as with it given."""
    memory = make_memory(minilm)
    for text in [*UNRELATED, TARGET]:
        run(memory.add_memory(text, CHAT))
    asked = "why is the apartment so cold, the heating"
    pending = memory._query_vector(asked)
    assert callable(pending)  # not stored: embedded on the query thread
    vector = minilm.embed_query([asked])[0]
    assert np.allclose(pending(), vector, atol=1e-5)
    given = memory.searcher.search(asked, Filters(CHAT), 3, query_vector=vector, index=memory.index)
    found = run(memory.search(asked, CHAT, k=3))
    assert [h.id for h in found] == [h.id for h in given]
    assert found[0].text == TARGET
    said = "the boiler man comes on Thursday"
    run(memory.add_message(1, 7, "user", said))
    stored = memory._query_vector(said)  # the message just stored: its vector, at once
    assert not callable(stored) and np.allclose(stored, minilm.embed([said])[0], atol=1e-5)


def test_a_query_not_stored_is_embedded_by_the_int8_copy(make_memory, traced) -> None:  # type: ignore[no-untyped-def]
    """``Memory`` embeds a search's query with ``embed_query`` (the int8 copy), a message it
    stores with ``embed`` (the float model), and a stored message asked again keeps its vector."""
    memory = make_memory(traced)
    for text in [*UNRELATED, TARGET]:
        run(memory.add_memory(text, CHAT))
    asked = "why is the apartment so cold, the heating"
    pending = memory._query_vector(asked)
    assert callable(pending)
    got = pending()
    assert np.allclose(got, traced.embed_query([asked])[0], atol=1e-6)
    assert not np.allclose(got, traced.embed([asked])[0], atol=1e-4)
    assert run(memory.search(asked, CHAT, k=3))[0].text == TARGET
    said = "the boiler man comes on Thursday"
    run(memory.add_message(1, 7, "user", said))
    stored = memory._query_vector(said)
    assert not callable(stored) and np.allclose(stored, traced.embed([said])[0], atol=1e-6)


def test_sentence_vectors_stored_before_are_kept_in_half_precision(minilm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A store from before m007 kept sentence vectors as float32: the migration halves them in
    place (no model needed), a note is still found by its best sentence with the same score to
    three digits, and a blob that is not whole float32s is dropped, not misread."""
    from memory.db import Database, Migrations
    from memory.schema import migrations

    vector, parts = minilm.embed([COAST])[0], minilm.embed(sentences(COAST))
    path = tmp_path / "old"
    path.mkdir()
    db = Database.open(path / "familiar.db", [Migrations("memory", migrations.steps[:6])])
    with db.transaction() as conn:
        for text, blob in ((COAST, parts.astype(np.float32).tobytes()), ("odd", b"\0" * 6)):
            conn.execute(
                "INSERT INTO memories (chat_id, kind, text, content_hash, ts, created_at,"
                " embedding, embedding_model, embedding_dim, parts)"
                " VALUES (1, 'note', ?, ?, 0, 0, ?, ?, ?, ?)",
                (text, text, vector.tobytes(), minilm.model_name, minilm.dim, blob),
            )
    db.close()
    db = Database.open(path / "familiar.db", [migrations])
    try:
        with db.read() as conn:
            stored = dict(conn.execute("SELECT text, parts FROM memories"))
        assert len(stored[COAST]) == parts.size * 2  # two bytes a number
        assert parts_array(stored[COAST], minilm.dim) == pytest.approx(parts, abs=1e-3)
        assert stored["odd"] is None
        memory = Memory(db, minilm, MemorySettings(), path / "index")
        memory.warm_sync()
        q = memory.vectors([QUERY], ["q"])[0]
        with db.read() as conn:
            note = conn.execute("SELECT id FROM memories WHERE text = ?", (COAST,)).fetchone()[0]
        best = memory.searcher.best_sentences([note], q, minilm.model_name)
        assert best[note] == pytest.approx(float((parts @ q).max()), abs=1e-3)
        assert run(memory.search(QUERY, CHAT, k=1))[0].id == note
    finally:
        db.close()


def test_a_memory_about_something_else_is_not_found_by_meaning_alone(
    make_memory, minilm, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Dense search always returns the nearest memory. In a chat of one memory that memory is
    its candidates' average, so only ``dense_min_similarity`` keeps "garden" from finding the
    boiler code. A paraphrase sharing no word is still found by meaning."""
    (tmp_path / "floor").mkdir()
    (tmp_path / "none").mkdir()
    memory = make_memory(minilm, path=tmp_path / "floor")
    loose = make_memory(minilm, path=tmp_path / "none", dense_min_similarity=-1.0)
    for m in (memory, loose):
        run(m.add_memory("the boiler code is 4821", CHAT, "fact"))
    for query in ("garden", "tomatoes in the allotment"):
        assert run(memory.search(query, CHAT, k=5)) == []
        assert [h.text for h in run(loose.search(query, CHAT, k=5))] == ["the boiler code is 4821"]
    cats = run(memory.add_memory("Caroline: I adopted two cats last year", CHAT))
    assert [h.id for h in run(memory.search("what pets does she have", CHAT, k=5))] == [cats]
