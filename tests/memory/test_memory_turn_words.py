"""Full-text search ranks a conversation turn by its own words and, at a lower weight, by the
words of the turns beside it (``turns_fts``, ``memory.turn_context_words``): an answer is found by
the question it answered. Triggers keep that table in step with every turn stored or forgotten."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from memory import store
from memory.db import Database, Migrations
from memory.schema import migrations
from memory.types import Scope

from .conftest import run

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)

CHAT = [
    ("user", "good morning, I slept badly"),
    ("user", "what other hobbies did your mother have?"),
    ("assistant", "travel was her great passion"),
    ("user", "nice. is the bakery open on sunday?"),
    ("assistant", "it opens at eight"),
    ("user", "my bike needs new brakes"),
]


def chat(memory, turns: list[tuple[str, str]], chat_id: int = 1) -> list[int]:  # type: ignore[no-untyped-def]
    ids = []
    for n, (role, text) in enumerate(turns):
        ids.append(
            run(
                memory.add_message(
                    chat_id, 7 if role == "user" else None, role, text, ts=T0 + timedelta(minutes=n)
                )
            )
        )
    return ids


def texts(memory, query: str, k: int = 5, scope: Scope = Scope(1)) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.text for h in run(memory.search(query, scope, k=k))]


def test_an_answer_is_found_by_the_words_of_the_question_it_answered(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(warm=False)  # full text alone: no vectors to find it by meaning
    chat(memory, CHAT)
    # The question (its own words), then the reply it got (by the question's words); not the
    # user's turn before it: one side's run of turns are not each other's context.
    assert texts(memory, "mother hobbies") == [
        "what other hobbies did your mother have?",
        "travel was her great passion",
    ]
    alone = make_memory(warm=False, turn_context_words=0.0, path=_fresh(memory))
    chat(alone, CHAT)
    assert texts(alone, "mother hobbies") == ["what other hobbies did your mother have?"]


def _fresh(memory) -> object:  # type: ignore[no-untyped-def]
    path = memory.db.path.parent / "alone"
    path.mkdir()
    return path


def test_turns_matched_by_their_own_words_rank_above_their_neighbours(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    chat(
        memory,
        [
            ("user", "the wifi password at home is tangerine42"),
            ("assistant", "noted, I will remember it"),
            ("user", "unrelated: the cat was sick"),
            ("assistant", "I hope she feels better"),
            ("user", "the office wifi password is blue77"),
            ("assistant", "got it"),
        ],
    )
    found = texts(memory, "wifi password", k=2)
    assert sorted(found) == [
        "the office wifi password is blue77",
        "the wifi password at home is tangerine42",
    ]


def test_a_forgotten_turns_words_leave_the_turns_beside_it(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(warm=False)
    ids = chat(memory, CHAT)
    assert "travel was her great passion" in texts(memory, "mother hobbies")
    question = ids[1]
    memory_id = _memory_of(memory, question)
    assert run(memory.forget(memory_id, Scope(1)))
    assert texts(memory, "mother hobbies") == []
    # Its neighbours now stand next to each other.
    assert "travel was her great passion" in texts(memory, "slept badly")
    assert run(memory.forget_user(7)) > 0
    with memory.db.read() as conn:
        left = conn.execute("SELECT own, around FROM turns_fts").fetchall()
    # The assistant's turns are left, side by side: one side, so no context for each other.
    assert left == [("travel was her great passion", " "), ("it opens at eight", " ")]


def _memory_of(memory, message_id: int) -> int:  # type: ignore[no-untyped-def]
    with memory.db.read() as conn:
        return int(
            conn.execute("SELECT memory_id FROM messages WHERE id = ?", (message_id,)).fetchone()[0]
        )


def test_in_a_group_a_members_turn_is_not_found_by_another_members_words(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(warm=False)
    run(memory.add_message(1, 8, "user", "my salary is 90k, keep it secret"))
    run(memory.add_message(1, 7, "user", "remind me about the dentist"))
    assert texts(memory, "salary", scope=Scope(1, 7)) == []
    assert texts(memory, "salary", scope=Scope(1, 8)) == ["my salary is 90k, keep it secret"]


def test_the_table_stays_equal_to_the_turns_it_is_derived_from(make_memory) -> None:  # type: ignore[no-untyped-def]
    """Turns stored and forgotten at random, in two chats, by two people, with tool rows (no
    memory) between them: after each step the triggers' table equals a rebuild from scratch."""
    memory = make_memory(warm=False)
    rng = random.Random(5)
    words = "apple boiler cat dentist engine fern garden harbour".split()
    live: list[int] = []
    for step in range(120):
        if live and rng.random() < 0.3:
            memory_id = live.pop(rng.randrange(len(live)))
            with memory.db.read() as conn:
                chat_id = conn.execute(
                    "SELECT chat_id FROM memories WHERE id = ?", (memory_id,)
                ).fetchone()[0]
            assert run(memory.forget(memory_id, Scope(chat_id)))
        elif rng.random() < 0.1:
            with memory.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO messages (chat_id, role, text, ts) VALUES (?, 'tool', 'x', 0)",
                    (rng.choice((1, 2)),),
                )
        else:
            user = rng.choice((7, 8, None))
            message_id = run(
                memory.add_message(
                    rng.choice((1, 2)),
                    user,
                    "assistant" if user is None else "user",
                    f"{rng.choice(words)} {rng.choice(words)} {step}",
                )
            )
            live.append(_memory_of(memory, message_id))
        with memory.db.read() as conn:
            kept = conn.execute(
                "SELECT rowid, own, around FROM turns_fts ORDER BY rowid"
            ).fetchall()
            derived = conn.execute(
                "SELECT memory_id, own, around FROM turn_windows ORDER BY memory_id"
            ).fetchall()
        assert kept == derived, step
    assert len(kept) == len(live) > 20
    assert sum(around.strip() != "" for _, _, around in kept) > 5  # context was kept, not none
    _intact(memory, " OR ".join(words))


def _intact(memory, turn_words: str) -> None:  # type: ignore[no-untyped-def]
    """Both full-text tables pass FTS5's integrity check, and words found only in turns are in
    ``turns_fts`` alone."""
    with memory.db.transaction() as conn:
        conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('integrity-check')")
        conn.execute("INSERT INTO turns_fts (turns_fts) VALUES ('integrity-check')")
        elsewhere = conn.execute(
            "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?", (turn_words,)
        ).fetchone()[0]
        there = conn.execute(
            "SELECT count(*) FROM turns_fts WHERE turns_fts MATCH ?", (turn_words,)
        ).fetchone()[0]
    assert elsewhere == 0 and there > 0


def test_a_store_from_before_has_its_turns_indexed_in_context(make_memory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "old"
    path.mkdir()
    db = Database.open(path / "familiar.db", [Migrations("memory", migrations.steps[:3])])
    with db.transaction() as conn:
        for n, (role, text) in enumerate(CHAT):
            memory_id = conn.execute(
                "INSERT INTO memories (chat_id, kind, text, content_hash, ts, created_at)"
                " VALUES (1, 'message', ?, ?, ?, 0)",
                (text, f"h{n}", n),
            ).lastrowid
            conn.execute(
                "INSERT INTO messages (chat_id, role, text, ts, memory_id) VALUES (1, ?, ?, ?, ?)",
                (role, text, n, memory_id),
            )
        conn.execute(
            "INSERT INTO memories (chat_id, kind, text, content_hash, ts, created_at)"
            " VALUES (1, 'note', 'my mother collected stamps', 'note', 0, 0)"
        )
        # A message without a turn, as `memory add --kind message` made one: still found.
        conn.execute(
            "INSERT INTO memories (chat_id, kind, text, content_hash, ts, created_at)"
            " VALUES (1, 'message', 'the canoe paddles are in the loft', 'lone', 0, 0)"
        )
    db.close()
    memory = make_memory(warm=False, path=path)
    found = texts(memory, "mother hobbies")
    # The question, then the note and the reply (the other side's turn), not the user's turn
    # before the question.
    assert found[0] == "what other hobbies did your mother have?"
    assert sorted(found[1:]) == ["my mother collected stamps", "travel was her great passion"]
    assert "my mother collected stamps" in texts(memory, "stamps")
    _intact(memory, "hobbies OR bakery")  # the turns' words left memories_fts exactly
    [lone] = run(memory.search("canoe paddles", Scope(1)))
    assert lone.text == "the canoe paddles are in the loft"
    assert run(memory.forget(lone.id, Scope(1)))  # and it leaves memories_fts when forgotten
    with memory.db.transaction() as conn:
        conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('integrity-check')")
        assert conn.execute(
            "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH 'canoe'"
        ).fetchone() == (0,)


def test_notes_and_turns_are_ranked_together(make_memory) -> None:  # type: ignore[no-untyped-def]
    # Full-text order alone (short turns not scaled: test_memory_turn_length.py).
    memory = make_memory(warm=False, short_turns_rank_lower=False)
    chat(memory, CHAT)
    run(memory.add_memory("the brakes of the red bike were replaced in May", Scope(1), "note"))
    match = '"bike" OR "brakes"'
    found = store.fts_search(memory.db, match, store.Filters(Scope(1)), 5, context=0.3)
    # The turn, the note, then the turn before the turn (by its neighbour's words), by score.
    assert len(found) == 3 and found[0][1] >= found[1][1] >= found[2][1] > 0
    assert {i for i, _ in found[:2]} == {
        h.id for h in run(memory.search("bike brakes", Scope(1), k=2))
    }
    # Context 0: only rows that have the words themselves.
    assert len(store.fts_search(memory.db, match, store.Filters(Scope(1)), 5)) == 2
    only_notes = store.fts_search(memory.db, '"bike"', store.Filters(Scope(1), kinds=["note"]), 5)
    assert len(only_notes) == 1


def test_a_message_added_without_a_role_is_a_turn_found_by_its_words(make_memory) -> None:  # type: ignore[no-untyped-def]
    """``memory add --kind message``: a turn (the user's), so full text finds it."""
    memory = make_memory(warm=False)
    mid = run(memory.add_memory("the kayak is in the boathouse", Scope(1), "message"))
    assert [h.id for h in run(memory.search("kayak", Scope(1)))] == [mid]
    assert [m.role for m in run(memory.recent_messages(1))] == ["user"]
