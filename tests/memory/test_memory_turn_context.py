"""A conversation turn is keyed in the vector index with the turn before it (issue 18, item 2):
an answer is found by a question about what it answered. The keys are derived state: a rebuild
from SQLite gives the same ones, and forgetting a turn takes it out of the next turn's key."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import numpy as np

from memory.types import Scope

from .conftest import run

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)

# The answer (turn 3) shares no word with the question asked about it later, and says nothing
# of a vet or a dog; the turn it answers does.
TURNS = [
    ("user", "morning! slept badly, the neighbours had a party"),
    ("user", "what did the vet say about Biscuit's weight?"),
    ("assistant", "She said two kilos less by spring."),
    ("user", "ok. remind me to buy coffee beans"),
    ("assistant", "Noted: coffee beans."),
    ("user", "the train was late again today"),
    ("assistant", "Sorry to hear that, hope the rest of the day goes better."),
    ("user", "my sister moved to Porto last month"),
    ("assistant", "That is a big move; Porto is lovely in autumn."),
    ("user", "the dishwasher is making a strange noise"),
    ("assistant", "Maybe check the filter at the bottom first."),
]


def chat(memory, turns=TURNS) -> list[int]:  # type: ignore[no-untyped-def]
    ids = []
    for n, (role, text) in enumerate(turns):
        message_id = run(
            memory.add_message(
                1, 7 if role == "user" else None, role, text, ts=T0 + timedelta(minutes=n)
            )
        )
        with memory.db.read() as conn:
            (memory_id,) = conn.execute(
                "SELECT memory_id FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
        ids.append(memory_id)
    return ids


def key(memory, memory_id: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    return memory.index._reconstruct(np.array([memory_id], dtype=np.int64))[0]


def own(memory, memory_id: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    with memory.db.read() as conn:
        (blob,) = conn.execute(
            "SELECT embedding FROM memories WHERE id = ?", (memory_id,)
        ).fetchone()
    return np.frombuffer(blob, dtype=np.float32)


def test_an_answer_is_found_by_a_question_about_what_it_answered(
    make_memory, minilm, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    question = "What was the vet's advice about Biscuit?"
    answer = "She said two kilos less by spring."
    ranks = {}
    for weight in (1.0, 0.0):
        where = tmp_path / f"weight{weight}"
        where.mkdir()
        # The vector key alone: the turns' words in context (tests/memory/
        # test_memory_turn_words.py) would find it too; short turns not scaled
        # (test_memory_turn_length.py).
        memory = make_memory(
            minilm,
            path=where,
            turn_context_weight=weight,
            turn_context_words=0.0,
            short_turns_rank_lower=False,
        )
        chat(memory)
        texts = [h.text for h in run(memory.search(question, Scope(1, 7), k=10))]
        ranks[weight] = texts.index(answer) if answer in texts else len(TURNS)
    assert ranks[1.0] <= 1, ranks  # the answer, or the question it answers and then the answer
    assert ranks[0.0] > ranks[1.0]  # alone, its words do not lead to it


def test_keys_are_rebuilt_the_same_from_sqlite(make_memory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(path=tmp_path, turn_context_weight=1.0)
    ids = chat(memory)
    answer = ids[2]
    assert not np.allclose(key(memory, answer), own(memory, answer))  # it holds turn 2 too
    assert np.allclose(key(memory, ids[0]), own(memory, ids[0]))  # the first has none before
    before = {i: key(memory, i) for i in ids}
    memory.save_index()
    memory.db.close()
    shutil.rmtree(memory.index_dir)  # lost: rebuilt from SQLite when the store opens

    again = make_memory(path=tmp_path, turn_context_weight=1.0)
    for i in ids:
        assert np.allclose(key(again, i), before[i], atol=1e-6)


def test_forgetting_a_turn_takes_it_out_of_the_next_turns_key(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(turn_context_weight=1.0)
    ids = chat(memory)
    question, answer = ids[1], ids[2]
    assert not np.allclose(key(memory, answer), own(memory, answer))
    assert memory.forget_sync(question, Scope(1, 7))
    # The answer is now keyed with the turn before the forgotten one, not with the forgotten one.
    expected = own(memory, answer) + memory.settings.turn_context_weight * own(memory, ids[0])
    assert np.allclose(key(memory, answer), expected / np.linalg.norm(expected), atol=1e-6)


def test_forgetting_a_user_rekeys_the_turns_left_in_their_chats(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(turn_context_weight=1.0)
    ids = chat(memory)
    assert memory.forget_user_sync(7) == 6  # the user's six turns; the assistant's five stay
    answers = ids[2::2]
    # Each answer followed one of the user's turns; now the turn before it is the previous
    # answer, the same side's: each is keyed alone, as it is stored.
    for answer in answers:
        assert np.allclose(key(memory, answer), own(memory, answer), atol=1e-6)


def test_one_sides_run_of_turns_are_not_each_others_keys(make_memory) -> None:  # type: ignore[no-untyped-def]
    """A journal kept in a chat: the entry before an entry is not the question it answers."""
    memory = make_memory(turn_context_weight=1.0)
    entries = [("user", f"journal entry {n}: {text}") for n, (_, text) in enumerate(TURNS)]
    ids = chat(memory, entries)
    for i in ids:
        assert np.allclose(key(memory, i), own(memory, i), atol=1e-6)


def test_by_default_turns_are_keyed_alone_and_an_index_keyed_otherwise_is_rebuilt(
    make_memory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """In a chat with an assistant the turn before a person's message is the assistant's long
    reply: keyed with it, the person's words were lost. An index saved when turns were keyed
    with the turn before them is rebuilt at the next start, not loaded with the old keys."""
    memory = make_memory(path=tmp_path, turn_context_weight=1.0)
    ids = chat(memory)
    assert not np.allclose(key(memory, ids[2]), own(memory, ids[2]))
    memory.save_index()
    memory.db.close()
    again = make_memory(path=tmp_path)  # the default
    assert again.settings.turn_context_weight == 0.0
    for i in ids:
        assert np.allclose(key(again, i), own(again, i), atol=1e-6)
