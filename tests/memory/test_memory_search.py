"""Storage and hybrid recall on a real SQLite store: scope isolation, filters, bad input."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from memory.text import MemoryInputError
from memory.types import Scope

from .conftest import run


def test_search_never_crosses_chats(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(memory.add_memory("my secret password hint is the blue door", Scope(1)))
    run(memory.add_memory("the weather was sunny", Scope(2)))
    for query in ("secret password blue door", "weather sunny", "door"):
        hits = run(memory.search(query, Scope(2), k=10))
        assert all(h.chat_id == 2 for h in hits)
    assert not any("secret" in h.text for h in run(memory.search("secret password", Scope(2))))


def test_user_scope_sees_own_and_shared_rows_only(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(memory.add_memory("alice likes green tea", Scope(1, user_id=10)))
    run(memory.add_memory("bob likes green tea", Scope(1, user_id=20)))
    run(memory.add_memory("the chat likes green tea", Scope(1)))
    texts = {h.text for h in run(memory.search("green tea", Scope(1, user_id=10)))}
    assert texts == {"alice likes green tea", "the chat likes green tea"}


def test_hits_carry_provenance_kind_time_and_ref(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    mid = run(
        memory.add_memory("the invoice number is 4471", Scope(3), "note", ref="doc:7", ts=when)
    )
    hit = run(memory.search("invoice 4471", Scope(3)))[0]
    assert (hit.id, hit.kind, hit.ref, hit.ts, hit.chat_id) == (mid, "note", "doc:7", when, 3)
    assert hit.provenance["fts"] and hit.provenance["dense"]


def test_kind_and_time_filters(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    old = datetime(2020, 1, 1, tzinfo=UTC)
    run(memory.add_memory("holiday in rome", Scope(1), "note", ts=old))
    run(memory.add_memory("holiday in rome was great", Scope(1), "lesson"))
    assert {h.kind for h in run(memory.search("holiday rome", Scope(1), kinds=["lesson"]))} == {
        "lesson"
    }
    recent = run(memory.search("holiday rome", Scope(1), since=old + timedelta(days=1)))
    assert [h.kind for h in recent] == ["lesson"]
    assert [h.kind for h in run(memory.search("holiday rome", Scope(1), until=old))] == ["note"]


def test_messages_are_stored_both_sides_and_returned_oldest_first(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(memory.add_message(5, 1, "user", "hi there", telegram_message_id=100, meta={"lang": "en"}))
    run(memory.add_message(5, None, "assistant", "hello, how can I help?"))
    msgs = run(memory.recent_messages(5))
    assert [(m.role, m.text) for m in msgs] == [
        ("user", "hi there"),
        ("assistant", "hello, how can I help?"),
    ]
    assert msgs[0].telegram_message_id == 100 and msgs[0].meta == {"lang": "en"}
    assert run(memory.search("how can I help", Scope(5)))[0].kind == "message"


@pytest.mark.parametrize("bad", ["", "   ", "\x00\x00"])
def test_empty_text_is_refused_clearly(make_memory, bad: str) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    with pytest.raises(MemoryInputError, match="empty"):
        run(memory.add_memory(bad, Scope(1)))


def test_odd_text_is_stored_cleaned(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    mid = run(memory.add_memory("nul\x00byte and lone \ud800 surrogate", Scope(1)))
    hit = run(memory.search("surrogate", Scope(1)))[0]
    assert hit.id == mid and "\x00" not in hit.text and "\ud800" not in hit.text
    assert run(memory.search("?!.,;", Scope(1))) is not None  # punctuation only: no crash


def test_huge_text_is_chunked_for_embedding_and_oversize_refused(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(max_text_bytes=400_000, embed_chunk_chars=2000)
    big = " ".join(f"token{i}" for i in range(30_000)) + " needle"
    mid = run(memory.add_memory(big, Scope(1)))
    assert run(memory.search("needle", Scope(1)))[0].id == mid
    assert memory.embedder.texts_embedded > 50  # embedded as many chunks, not truncated
    with pytest.raises(MemoryInputError, match="over the limit"):
        run(memory.add_memory("x" * 400_001, Scope(1)))


def test_identical_text_is_embedded_once(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(memory.add_memory("repeat after me", Scope(1)))
    before = memory.embedder.texts_embedded
    run(memory.add_memory("repeat  after me", Scope(2)))
    assert memory.embedder.texts_embedded == before
    assert memory.index.ntotal == 2


def test_concurrent_writers_lose_nothing(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()

    async def handlers() -> None:
        import asyncio

        await asyncio.gather(
            *(memory.add_message(1, 1, "user", f"message number {i}") for i in range(40))
        )

    def job(n: int) -> None:
        for i in range(20):
            memory.add_sync([memory.new(f"job {n} note {i}", Scope(1), "note")])

    threads = [threading.Thread(target=job, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    run(handlers())
    for t in threads:
        t.join()
    stats = memory.stats_sync()
    assert stats["memories"] == 100 and stats["messages"] == 40
    assert memory.index.ntotal == 100


def test_search_before_the_model_loads_uses_full_text(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(warm=False)
    run(memory.add_memory("written while the model was loading", Scope(1)))
    assert run(memory.search("loading", Scope(1)))[0].provenance == {
        "pinned": False,
        "fts": True,
        "dense": False,
    }
    memory.warm_sync()
    assert memory.index.ntotal == 1  # embedded once the model was ready
    assert run(memory.search("loading", Scope(1)))[0].provenance["dense"]


def test_mmr_and_recency_options_rank_without_error(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(mmr_lambda=0.5, recency_half_life_days=30)
    run(memory.add_memory("paris trip", Scope(1), ts=datetime(2020, 1, 1, tzinfo=UTC)))
    run(memory.add_memory("paris trip", Scope(1), "lesson"))
    for i in range(10):
        run(memory.add_memory(f"paris trip number {i}", Scope(1)))
    hits = run(memory.search("paris trip", Scope(1), k=5))
    assert len(hits) == 5
    assert hits[0].ts.year > 2020  # the newer identical text wins under recency


def test_rank_fusion_counts_ranks_not_score_gaps() -> None:
    """RRF (the default) lets a list's far-ahead top score count no more than a first place: a
    BM25 score 100 times the next is worth what dense's narrow lead is. Score fusion keeps the
    gap, so BM25's favourite wins there."""
    from memory.search import Candidates, fuse

    c = Candidates(fts={1: 100.0, 2: 1.0}, dense={2: 0.52, 1: 0.50, 3: 0.49})
    rrf = fuse(c, 0.3, "rrf", 5)
    assert rrf[1] == pytest.approx(rrf[2])  # first in one list and second in the other, each
    assert rrf[3] < rrf[2]
    score = fuse(c, 0.3, "score")
    assert score[1] > score[2]
    both = fuse(Candidates(fts={1: 2.0, 2: 1.0}, dense={1: 0.9}), 0.3, "rrf", 5)
    assert both[1] == pytest.approx(1.0)  # first in both lists: the top of the scale


def test_a_narrow_time_window_is_searched_exactly_over_its_own_rows(make_memory) -> None:  # type: ignore[no-untyped-def]
    """Past ``exact_index_max`` the index is approximate; a window of a few rows is searched over
    those rows alone (every one a candidate, ranked by true similarity), not by over-fetching
    from the index and hoping some survive the filter."""
    memory = make_memory(exact_index_max=300, ivf_nprobe=1, exact_filter_max=50)
    old = datetime(2020, 1, 1, tzinfo=UTC)
    for i in range(600):
        run(memory.add_memory(f"note {i} about gardening and tomato plant number {i}", Scope(1)))
    window = [f"boiler service booked with engineer {n}" for n in ("Ann", "Bo", "Cy")]
    for j, text in enumerate(window):
        run(memory.add_memory(text, Scope(1), "note", ts=old + timedelta(hours=j)))
    assert memory.index is not None and memory.index.kind == "ivf"
    asked: list[object] = []
    search = memory.index.search
    memory.index.search = lambda *a, **kw: asked.append(kw.get("among")) or search(*a, **kw)  # type: ignore[method-assign]
    hits = run(
        memory.search("boiler engineer", Scope(1), k=10, since=old, until=old + timedelta(days=1))
    )
    assert sorted(h.text for h in hits) == sorted(window)  # every row of the window, nothing else
    assert all(h.provenance["dense"] for h in hits)
    assert asked and all(a is not None and len(a) == 3 for a in asked)
    # A wide window (more rows than exact_filter_max) goes through the index as before.
    asked.clear()
    wide = run(memory.search("tomato plant number 5", Scope(1), k=5, since=old))
    assert len(wide) == 5 and asked and all(a is None for a in asked)


def test_a_rows_best_sentence_counts_for_half_of_dense() -> None:
    """A row with sentence vectors is also ranked by its best sentence: where it ties with
    another on full text and the whole vector, the one whose sentence matches goes first. A
    row without sentence vectors is ranked as before (the two dense lists agree on it)."""
    from memory.search import Candidates, fuse

    plain = Candidates(fts={1: 2.0, 2: 1.0}, dense={2: 0.30, 1: 0.28})
    tie = fuse(plain, 0.3, "rrf", 5)
    assert tie[1] == pytest.approx(tie[2])
    found = Candidates(fts={1: 2.0, 2: 1.0}, dense={2: 0.30, 1: 0.28}, sentences={1: 0.44})
    ranked = fuse(found, 0.3, "rrf", 5)
    assert ranked[1] > ranked[2]
    assert max(ranked.values()) <= 1.0 + 1e-9
    unchanged = Candidates(fts={1: 2.0}, dense={2: 0.3, 3: 0.2}, sentences={3: 0.25})
    assert fuse(unchanged, 0.3, "rrf", 5) == pytest.approx(
        fuse(Candidates(fts={1: 2.0}, dense={2: 0.3, 3: 0.2}), 0.3, "rrf", 5)
    )  # a best sentence that changes no rank changes no score


def test_sentence_vectors_are_looked_for_only_on_rows_that_can_have_them(
    make_memory, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Facts (one line) have no sentence vectors: a search does not read the store for theirs.
    Turns and notes may have them, and a note's best sentence still counts."""
    from memory import store

    memory = make_memory(short_notes_rank_lower=False)  # the scale by length is not the point
    turns = [
        run(memory.add_message(1, 7, role, text))
        for role, text in [
            ("user", "the boiler pressure dropped again this morning"),
            ("assistant", "did the boiler engineer check the pressure valve?"),
        ]
    ]
    fact = run(memory.add_memory("The boiler engineer is called Sam.", Scope(1), "fact"))
    note = run(
        memory.add_memory(
            "Shopping list for Saturday. The boiler engineer's number is 0161 496 0000.",
            Scope(1),
            "note",
        )
    )
    asked: list[int] = []
    parts_of = store.parts_of

    def spy(db, ids, model):  # type: ignore[no-untyped-def]
        asked.extend(ids)
        return parts_of(db, ids, model)

    monkeypatch.setattr(store, "parts_of", spy)
    hits = run(memory.search("boiler engineer number", Scope(1), k=5))
    assert {h.id for h in hits} == {*turns, fact, note}
    assert note in asked and set(turns) <= set(asked) and fact not in asked
    assert hits[0].id == note  # found by its best sentence
