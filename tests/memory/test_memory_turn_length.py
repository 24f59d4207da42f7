"""Short turns and notes rank lower (``memory.short_turns_rank_lower``,
``memory.short_notes_rank_lower``): a turn or note that only echoes the words asked about ("the
boiler!") ranks below one that says something about them. The scale is relative to the rows of
its group found with it (a side of the chat, the notes), and halves a score at most; facts and
documents are never scaled."""

from __future__ import annotations

import pytest

from memory.rows import Row
from memory.search import scale_short_texts
from memory.types import Scope

from .conftest import run
from .test_memory_turn_words import chat

SAYS = (
    "The boiler engineer came on Tuesday and replaced the pressure valve; it cost 180 pounds "
    "and he said the boiler should be serviced every autumn from now on."
)
TURNS = [
    ("user", "ugh, the boiler!"),
    ("assistant", "oh no, what happened this time?"),
    ("user", "let me tell you later, I'm at work"),
    ("assistant", "sure, talk soon"),
    ("user", SAYS),
]


def _rows(*lengths: tuple[str, int]) -> dict[int, Row]:
    return {
        n: Row(
            id=n,
            chat_id=1,
            user_id=None,
            kind=kind,
            text="x" * length,
            ts=0.0,
            ref=None,
            pinned=False,
            source=None,
            superseded_by=None,
        )
        for n, (kind, length) in enumerate(lengths)
    }


def test_turns_are_scaled_by_their_length_against_the_others_found() -> None:
    rows = _rows(("message", 10), ("message", 100), ("message", 200), ("message", 400), ("note", 5))
    scores = dict.fromkeys(rows, 1.0)
    scale_short_texts(list(rows), rows, scores, dict.fromkeys(range(4), "user"))
    # The median turn is 150 characters: full length is 300.
    assert scores[0] == 0.5  # 10/300 would be 0.18: halved at most
    assert scores[1] == pytest.approx((100 / 300) ** 0.5)
    assert scores[2] == pytest.approx((200 / 300) ** 0.5)
    assert scores[3] == 1.0
    assert scores[4] == 1.0  # a note is scaled only when asked
    # In a terse chat the same 10 characters are typical, and lose little.
    terse = _rows(("message", 10), ("message", 8), ("message", 12))
    scores = dict.fromkeys(terse, 1.0)
    scale_short_texts(list(terse), terse, scores, {})  # no roles known: one side
    assert scores[0] == pytest.approx(0.5**0.5)
    assert scores[2] == pytest.approx((12 / 20) ** 0.5)


def test_a_turn_is_measured_against_its_own_sides_turns() -> None:
    """With an assistant, the person's turns are the short ones: each side's turns are measured
    against that side's, so the person's are not all halved by the assistant's long replies."""
    rows = _rows(
        ("message", 80), ("message", 120), ("message", 100),  # the person
        ("message", 900), ("message", 1100), ("message", 1000),  # the assistant
    )  # fmt: skip
    roles = {0: "user", 1: "user", 2: "user", 3: "assistant", 4: "assistant", 5: "assistant"}
    scores = dict.fromkeys(rows, 1.0)
    scale_short_texts(list(rows), rows, scores, roles)
    assert scores[1] == pytest.approx((120 / 200) ** 0.5)  # against the person's median, 100
    assert scores[4] == pytest.approx((1100 / 2000) ** 0.5)  # against the assistant's, 1000
    assert scores[0] > 0.5  # against every turn's median (500) it would be halved
    together = dict.fromkeys(rows, 1.0)
    scale_short_texts(list(rows), rows, together, dict.fromkeys(rows, "user"))
    assert together[0] == together[1] == together[2] == 0.5
    # A side with fewer than three turns found is measured against them all.
    scores = dict.fromkeys(rows, 1.0)
    scale_short_texts(list(rows), rows, scores, {**roles, 5: "user", 4: "user"})
    assert scores[3] == pytest.approx((900 / 1020) ** 0.5)  # the median of all six is 510


def _found(memory, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.text for h in run(memory.search(query, Scope(1), k=5))]


def test_a_turn_that_says_something_ranks_above_a_short_one_with_the_same_word(
    make_memory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    # Full text alone, so the difference is the scale and not the vectors.
    scaled = make_memory(warm=False, path=tmp_path / "on")
    chat(scaled, TURNS)
    assert _found(scaled, "boiler")[0] == SAYS
    # BM25 alone prefers the short turn, which holds the word in fewer words.
    plain = make_memory(warm=False, path=tmp_path / "off", short_turns_rank_lower=False)
    chat(plain, TURNS)
    assert _found(plain, "boiler")[0] == "ugh, the boiler!"


def test_notes_are_scaled_against_the_notes_found_and_facts_never() -> None:
    rows = _rows(
        ("message", 900), ("message", 1100), ("message", 1000),  # long turns
        ("note", 50), ("note", 100), ("note", 150),
        ("fact", 10), ("document", 10),
    )  # fmt: skip
    scores = dict.fromkeys(rows, 1.0)
    scale_short_texts(
        list(rows), rows, scores, dict.fromkeys(range(3), "user"), ("message", "note")
    )
    # The notes' median is 100: a note of 150 is measured against 200, not against the turns.
    assert scores[5] == pytest.approx((150 / 200) ** 0.5)
    assert scores[3] == pytest.approx((50 / 200) ** 0.5)
    assert scores[1] == pytest.approx((1100 / 2000) ** 0.5)
    assert scores[6] == scores[7] == 1.0
    # Two notes found are no measure of how notes are written: they are measured against all.
    few = {i: rows[i] for i in (0, 1, 2, 4, 5)}
    scores = dict.fromkeys(few, 1.0)
    scale_short_texts(list(few), few, scores, dict.fromkeys(range(3), "user"), ("message", "note"))
    assert scores[4] == scores[5] == 0.5  # the median of all five is 900: halved at most


ECHO = "ugh, the boiler again"


def test_a_note_that_says_something_ranks_above_a_short_one_with_the_same_word(
    make_memory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    found = {}
    for name, on in (("on", True), ("off", False)):
        (tmp_path / name).mkdir()
        # Full text alone, so the difference is the scale and not the vectors.
        memory = make_memory(warm=False, path=tmp_path / name, short_notes_rank_lower=on)
        for text in (ECHO, SAYS):
            run(memory.add_memory(text, Scope(1)))
        found[name] = _found(memory, "boiler")
    assert found["on"][0] == SAYS
    assert found["off"][0] == ECHO  # BM25 alone prefers the short note


def test_a_short_fact_is_not_scaled(make_memory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    results = []
    for name, on in (("on", True), ("off", False)):
        (tmp_path / name).mkdir()
        memory = make_memory(
            path=tmp_path / name, short_turns_rank_lower=on, short_notes_rank_lower=on
        )
        memory.add_fact_sync("boiler code 4821", Scope(1))
        run(memory.add_memory(SAYS, Scope(1), kind="document"))
        hits = run(memory.search("boiler", Scope(1), k=5))
        results.append([(h.text, round(h.score, 6)) for h in hits])
    assert results[0] == results[1]
    assert results[0][0][0] == "boiler code 4821"
