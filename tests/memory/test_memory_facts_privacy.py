"""Facts (dedupe, supersede with history) and privacy (forget, forget user, export)."""

from __future__ import annotations

import json

from memory.facts import PatternFactExtractor
from memory.index import MANIFEST
from memory.types import Message, Scope

from .conftest import run

ME = Scope(1, user_id=7)


def test_the_same_fact_twice_is_not_duplicated(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(minilm)
    first = run(memory.add_fact("My favourite colour is blue", ME))
    assert first.action == "added"
    assert (
        run(memory.add_fact("My favourite colour is blue", ME)).action == "duplicate"
    )  # same hash
    near = run(memory.add_fact("my favourite color is blue.", ME))  # spelling: cosine 0.98
    assert (near.action, near.id) == ("duplicate", first.id)
    assert len(run(memory.list_memories(ME, ["fact"]))) == 1


def test_a_contradicting_fact_supersedes_and_keeps_history(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(minilm)
    old = run(memory.add_fact("I live in Berlin", ME, pinned=True))
    new = run(memory.add_fact("I live in Paris", ME))
    assert (new.action, new.superseded_id) == ("superseded", old.id)
    current = run(memory.list_memories(ME, ["fact"]))
    assert [h.text for h in current] == ["I live in Paris"]
    assert current[0].provenance["pinned"]  # the successor of a pinned fact stays pinned
    assert [h.text for h in run(memory.fact_history(new.id))] == [
        "I live in Paris",
        "I live in Berlin",
    ]
    assert all("Berlin" not in h.text for h in run(memory.search("where do I live", ME)))


def test_related_but_different_facts_are_both_kept(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(minilm)
    a = run(memory.add_fact("My wife is called Anna", ME))
    b = run(memory.add_fact("My sister is called Anna", ME))  # cosine 0.88, different frame
    c = run(memory.add_fact("I like tea", ME))
    d = run(memory.add_fact("I like coffee", ME))
    assert [r.action for r in (a, b, c, d)] == ["added"] * 4
    assert len(run(memory.list_memories(ME, ["fact"]))) == 4


def test_extracted_facts_go_through_the_same_dedupe(make_memory) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    memory = make_memory()
    turns = [
        Message(1, 1, 7, "user", "Remember that my dentist is Dr Moss. Thanks!", datetime.now(UTC)),
        Message(2, 1, None, "assistant", "My pleasure.", datetime.now(UTC)),
    ]
    results = run(memory.learn(turns, ME, PatternFactExtractor()))
    assert [r.action for r in results] == ["added"]
    assert [r.action for r in run(memory.learn(turns, ME, PatternFactExtractor()))] == ["duplicate"]


def test_forget_removes_row_text_and_vector_at_once(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    mid = run(memory.add_memory("the spare key is under the flowerpot", Scope(1)))
    assert not run(memory.forget(mid, Scope(2)))  # another chat cannot forget it
    assert run(memory.forget(mid, Scope(1)))
    assert not run(memory.forget(mid, Scope(1)))
    assert mid not in memory.index.ids()
    assert run(memory.search("spare key flowerpot", Scope(1))) == []


def test_forget_user_removes_rows_fts_and_vectors_everywhere(make_memory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(memory.add_message(1, 7, "user", "my bank pin is four four one two"))
    run(memory.add_fact("I was born in Leeds", ME))
    run(memory.add_message(1, 8, "user", "another user talks about the bank"))
    mine = [h.id for h in run(memory.list_memories(ME, None, 100)) if h.user_id == 7]
    memory.save_index()
    assert run(memory.forget_user(7)) == 2
    assert not set(mine) & set(memory.index.ids().tolist())
    assert [h.user_id for h in run(memory.search("bank pin", Scope(1)))] == [8]
    with memory.db.read() as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH 'leeds'"
            ).fetchone()[0]
            == 0
        )
        assert conn.execute("SELECT count(*) FROM messages WHERE user_id = 7").fetchone()[0] == 0
        # Turns are ranked in turns_fts, with the turns beside them: the pin is in no row there.
        assert (
            conn.execute("SELECT count(*) FROM turns_fts WHERE turns_fts MATCH 'pin'").fetchone()[0]
            == 0
        )
    # the saved index on disk no longer holds the vectors either
    saved = json.loads((tmp_path / "index" / MANIFEST).read_text())
    assert saved["count"] == memory.index.ntotal == 1


def test_export_one_user_or_chat_as_json(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(memory.add_message(1, 7, "user", "hello from seven"))
    run(memory.add_message(2, 9, "user", "hello from nine"))
    data = run(memory.export(user_id=7))
    json.dumps(data)
    assert [m["text"] for m in data["messages"]] == ["hello from seven"]
    assert [m["text"] for m in data["memories"]] == ["hello from seven"]
    assert [m["chat_id"] for m in run(memory.export(chat_id=2))["messages"]] == [2]


def _bytes_holding(folder, *secrets: bytes) -> dict[str, list[bytes]]:  # type: ignore[no-untyped-def]
    """The files under ``folder`` (the database, its WAL, the saved index) that hold a secret."""
    found = {}
    for f in folder.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            if hits := [s for s in secrets if s in data]:
                found[f.name] = hits
    return found


def test_what_the_user_forgets_is_in_no_byte_of_the_store(make_memory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Deleted rows leave their text in free pages, FTS5 index segments and the WAL unless they
    are overwritten, merged away and checkpointed: a forget the user asks for does all three."""
    memory = make_memory()
    run(memory.add_message(1, 7, "user", "my bank pin is zanzibar quokka"))
    run(memory.add_message(1, None, "assistant", "noted"))
    for i in range(40):  # the store has more in it than what is forgotten
        run(memory.add_message(1, 8, "user", f"another user talks about the bank, {i}"))
    run(memory.add_fact("I was born in Xylophoneville", ME))
    note = run(memory.add_memory("the alarm code is marzipanova", Scope(1)))
    memory.save_index()
    with memory.db.read() as conn:  # kept a while: in the database file itself, not just the WAL
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert _bytes_holding(tmp_path, b"zanzibar", b"marzipanova") == {
        "familiar.db": [b"zanzibar", b"marzipanova"]
    }
    saved = json.loads((tmp_path / "index" / MANIFEST).read_text())["count"]
    assert run(memory.forget(note, Scope(1), erase=True))
    # Its vector is out of the saved index too (backups copy it).
    assert json.loads((tmp_path / "index" / MANIFEST).read_text())["count"] == saved - 1
    assert run(memory.forget_user(7)) == 2
    assert not _bytes_holding(
        tmp_path, b"zanzibar", b"Xylophoneville", b"xylophonevil", b"marzipanova"
    )
    memory.db.close()  # and not after the last checkpoint either
    assert not _bytes_holding(
        tmp_path, b"zanzibar", b"Xylophoneville", b"xylophonevil", b"marzipanova"
    )
    # What was not forgotten is still there.
    assert _bytes_holding(tmp_path, b"another user talks about the bank")


def test_forgetting_a_user_forgets_what_was_drawn_from_their_words(make_memory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The assistant's answers to their turns and the summaries that drew on them go too; what
    others said, and summaries from before they spoke or of other hours, stay."""
    from datetime import UTC, datetime, timedelta

    from memory import store

    t0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    memory = make_memory()

    def say(user, role, text, minutes, **meta):  # type: ignore[no-untyped-def]
        return run(
            memory.add_message(1, user, role, text, ts=t0 + timedelta(minutes=minutes), meta=meta)
        )

    def summary(text, first, last):  # type: ignore[no-untyped-def]
        mid = run(memory.add_memory(text, Scope(1), "summary", ref=f"messages:{first}-{last}"))
        store.add_summary(memory.db, 1, mid, first, last)
        return mid

    def hourly(text, hour):  # type: ignore[no-untyped-def]
        start = t0 + timedelta(hours=hour)
        return run(
            memory.add_memory(text, Scope(1), "summary", ref=f"hour:{start:%Y-%m-%dT%H}", ts=start)
        )

    early = say(8, "user", "morning everyone, the office opens late", -120)
    kept = [summary("Summary: the office opens late today.", early, early)]
    kept.append(hourly("Conversation summary: the office opens late.", -2))
    mine = say(7, "user", "my bank pin is zanzibar quokka", 10)
    say(None, "assistant", "Noted: your pin is zanzibar quokka.", 11, reply_to=mine)
    theirs = say(8, "user", "my cat is called bartholomew", 12)
    say(None, "assistant", "Bartholomew is a fine name for a cat.", 13, reply_to=theirs)
    summary("Summary: a pin (zanzibar quokka) and a cat called Bartholomew.", early, theirs)
    later = say(8, "user", "lunch at one?", 30)
    summary("Summary: before, a pin zanzibar quokka was given; then lunch at one.", later, later)
    hourly("Conversation summary: the pin is zanzibar quokka; the cat Bartholomew.", 0)
    memory.save_index()

    assert run(memory.forget_user(7)) == 5  # the turn, its answer, two summaries, the hour
    assert not _bytes_holding(tmp_path, b"zanzibar", b"Zanzibar")
    left = {h.text for h in run(memory.list_memories(Scope(1), None, 100))}
    assert "Bartholomew is a fine name for a cat." in left and "lunch at one?" in left
    with memory.db.read() as conn:
        assert {r[0] for r in conn.execute("SELECT id FROM memories")} >= set(kept)
        assert conn.execute("SELECT count(*) FROM summaries").fetchone()[0] == 1
