"""Neighbours are context, not rivals (issue 18, item 1): a conversation hit comes back with the
turns around it attached, and those turns never take a place in the top k from another hit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memory.types import Scope

from .conftest import run

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def chat(memory, turns: list[tuple[str, str]]) -> None:  # type: ignore[no-untyped-def]
    for n, (role, text) in enumerate(turns):
        run(
            memory.add_message(
                1, 7 if role == "user" else None, role, text, ts=T0 + timedelta(minutes=n)
            )
        )


def test_a_hit_brings_its_adjacent_turns_and_they_displace_nothing(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    chat(
        memory,
        [
            ("user", "good morning"),
            ("user", "what is the wifi password at home?"),
            ("assistant", "you told me it is tangerine42"),
            ("user", "thanks, and the weather looks fine"),
        ],
    )
    run(memory.add_memory("the wifi password at the office is blue77", Scope(1)))
    run(memory.add_memory("the wifi password at grandma's is rosehip", Scope(1)))
    hits = run(memory.search("wifi password", Scope(1, 7), k=3))
    texts = [h.text for h in hits]
    # All three texts about the wifi password, none of the turns around one of them.
    assert sorted(texts) == sorted(
        [
            "what is the wifi password at home?",
            "the wifi password at the office is blue77",
            "the wifi password at grandma's is rosehip",
        ]
    )
    question = next(h for h in hits if h.kind == "message")
    assert [h.text for h in question.before] == ["good morning"]
    assert [h.text for h in question.after] == ["you told me it is tangerine42"]
    assert all(h.before == [] and h.after == [] for h in hits if h.kind == "note")


def test_attached_turns_respect_the_callers_scope(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(memory.add_message(1, 8, "user", "my salary is 90k, keep it secret"))
    run(memory.add_message(1, 7, "user", "remind me about the dentist"))
    [hit] = run(memory.search("dentist", Scope(1, 7), k=1))
    assert hit.before == []  # user 8's turn is not user 7's to see
