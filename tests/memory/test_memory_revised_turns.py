"""A turn whose Telegram message was edited says what the message says now: found by its new
words (full text and vectors), no longer by the old ones, which leave no byte of the store."""

from __future__ import annotations

import json

import pytest

from memory.index import MANIFEST
from memory.text import MemoryInputError
from memory.types import Scope

from .conftest import run
from .test_memory_facts_privacy import _bytes_holding

ANN = Scope(1, user_id=7)


def _say(memory, text: str, telegram_id: int | None = None, role: str = "user") -> int:  # type: ignore[no-untyped-def]
    return run(
        memory.add_message(
            1, 7 if role == "user" else None, role, text, telegram_message_id=telegram_id
        )
    )


def _found(memory, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.text for h in run(memory.search(query, ANN, k=5))]


def test_an_edited_turn_is_found_by_its_new_words_only(make_memory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    for i in range(20):  # others' words around it, so search has something to rank against
        _say(memory, f"we talked about the garden shed, part {i}")
    _say(memory, "my locker code is quokka 4471", telegram_id=50)
    _say(memory, "Noted.", role="assistant")
    memory.save_index()
    assert "my locker code is quokka 4471" in _found(memory, "quokka")

    revision = run(memory.revise_turn(1, 50, "my locker code is wombat 9120", {"edited_at": 5.0}))
    assert revision is not None and (revision.changed, revision.latest) == (True, True)
    assert all("quokka" not in t for t in _found(memory, "quokka"))
    assert _found(memory, "wombat")[0] == "my locker code is wombat 9120"
    turn = run(memory.recent_messages(1, 2))[0]
    # The index holds the new words' vector: nearest to them, and no longer to the old words.
    new, old = memory.embedder.embed(
        ["my locker code is wombat 9120", "my locker code is quokka 4471"]
    )
    assert memory.index is not None
    assert memory.index.search(new, 1, 1)[0] == (turn.memory_id, pytest.approx(1.0, abs=0.02))
    assert memory.index.search(old, 1, 1)[0][1] < 0.95
    assert (turn.text, turn.meta["edited_at"], turn.telegram_message_id) == (
        "my locker code is wombat 9120",
        5.0,
        50,
    )
    with memory.db.read() as conn:  # the memory row and the full text follow the turn
        assert conn.execute(
            "SELECT count(*) FROM turns_fts WHERE turns_fts MATCH 'quokka'"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT text FROM memories WHERE id = ?", (turn.memory_id,)
        ).fetchone() == ("my locker code is wombat 9120",)
    # The old words are in no byte of the store, nor of the saved index.
    assert json.loads((tmp_path / "index" / MANIFEST).read_text())["count"] == 22
    assert not _bytes_holding(tmp_path, b"quokka")
    memory.db.close()
    assert not _bytes_holding(tmp_path, b"quokka")
    assert _bytes_holding(tmp_path, b"wombat 9120")


def test_a_reply_is_found_by_the_edited_question_it_answers(make_memory) -> None:  # type: ignore[no-untyped-def]
    """Full text ranks a turn by its neighbours' words too (memory m004): an edit re-indexes the
    turns beside it, so the answer is found by the question's new words, not its old ones."""
    memory = make_memory()
    _say(memory, "what grows well beside tomatoes?", telegram_id=60)
    _say(memory, "Basil and marigolds do.", role="assistant")
    run(memory.revise_turn(1, 60, "what grows well beside cucumbers?", {}))
    with memory.db.read() as conn:
        around = dict(conn.execute("SELECT own, around FROM turns_fts").fetchall())
    assert "cucumbers" in around["Basil and marigolds do."]
    assert "tomatoes" not in around["Basil and marigolds do."]


def test_an_edit_knows_whether_the_turn_is_the_latest_and_what_changed(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    _say(memory, "first question", telegram_id=1)
    _say(memory, "an answer", role="assistant")
    _say(memory, "second question", telegram_id=2)
    older = run(memory.revise_turn(1, 1, "first question, edited", {}))
    newest = run(memory.revise_turn(1, 2, "second question, edited", {}))
    assert older is not None and (older.changed, older.latest) == (True, False)
    assert newest is not None and (newest.changed, newest.latest) == (True, True)
    again = run(memory.revise_turn(1, 2, "second question, edited", {}))  # a replayed edit
    assert again is not None and (again.changed, again.latest) == (False, True)
    assert run(memory.revise_turn(1, 99, "never stored", {})) is None
    assert run(memory.revise_turn(2, 2, "another chat's message", {})) is None


def test_an_edit_that_cannot_be_kept_changes_nothing(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(max_text_bytes=1000)
    _say(memory, "short and sweet", telegram_id=3)
    with pytest.raises(MemoryInputError):
        run(memory.revise_turn(1, 3, "x" * 5000, {}))
    with pytest.raises(MemoryInputError):
        run(memory.revise_turn(1, 3, "\u200b", {}))
    assert [t.text for t in run(memory.recent_messages(1, 5))] == ["short and sweet"]


def test_an_edit_while_the_model_loads_is_embedded_at_warm_up(make_memory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    _say(memory, "the spare key is under the blue pot", telegram_id=4)
    memory.save_index()
    memory.db.close()
    cold = make_memory(path=tmp_path, warm=False)
    run(cold.revise_turn(1, 4, "the spare key is with the neighbour", {}))
    cold.warm_sync()
    hits = run(cold.search("spare key neighbour", ANN, k=3))
    assert [h.text for h in hits] == ["the spare key is with the neighbour"]
    # The index loaded from disk held the old words' vector: it holds the new one's now.
    assert cold.index is not None and cold.index.ntotal == 1
    new = cold.embedder.embed(["the spare key is with the neighbour"])
    assert cold.index.search(new, 1, 1)[0][1] == pytest.approx(1.0, abs=1e-3)


def test_a_crash_before_the_index_is_saved_leaves_no_vector_of_the_old_words(  # type: ignore[no-untyped-def]
    make_memory, tmp_path, monkeypatch
) -> None:
    """The saved index is derived: after a crash it is reconciled with SQLite by ids. The
    revised turn's row has a new id, so the old words' vector cannot stay under it."""
    memory = make_memory()
    _say(memory, "the safe's code is 1 2 3 4", telegram_id=8)
    memory.save_index()
    old = memory.embedder.embed(["the safe's code is 1 2 3 4"])
    monkeypatch.setattr(memory, "save_index", lambda: None)  # killed before the index is saved
    run(memory.revise_turn(1, 8, "the safe's code is 9 8 7 6", {}))
    memory.db.close()
    restarted = make_memory(path=tmp_path)
    assert restarted.index is not None and restarted.index.ntotal == 1
    new = restarted.embedder.embed(["the safe's code is 9 8 7 6"])
    assert restarted.index.search(new, 1, 1)[0][1] == pytest.approx(1.0, abs=1e-3)
    assert restarted.index.search(old, 1, 1)[0][1] < 0.99
