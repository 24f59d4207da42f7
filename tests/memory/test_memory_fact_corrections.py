"""Corrections supersede, true rewordings stay duplicates (issue 18, item 5), with the real
MiniLM: it scores each correction below 0.02 from its original, so the hashing embedder would not
show the defect."""

from __future__ import annotations

import asyncio
import threading

import pytest

from memory.embedder import HashingEmbedder
from memory.facts import FactJudge, what_differs
from memory.types import Scope

from .conftest import run

ME = Scope(1, user_id=7)

CORRECTIONS = [
    ("my phone number is 555-0199", "my phone number is 555-0142"),
    ("I am allergic to penicillin", "I am not allergic to penicillin"),
    (
        "My dentist appointment is on Tuesday at 10:00",
        "My dentist appointment is on Tuesday at 15:30",
    ),
    ("I have two cats", "I have three cats"),
]

REWORDINGS = [
    ("my phone number is 555-0199", "My phone number is 555-0199."),
    ("I am not allergic to penicillin", "I'm not allergic to penicillin"),
    (
        "My dentist appointment is on Tuesday at 10:00",
        "The dentist appointment is Tuesday at 10:00",
    ),
    ("my favourite colour is blue", "my favourite color is blue."),
]


@pytest.mark.parametrize(("old", "new"), CORRECTIONS)
def test_a_correction_supersedes_and_the_old_fact_stays_as_history(
    make_memory, minilm, old, new
) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(minilm)
    first = run(memory.add_fact(old, ME))
    second = run(memory.add_fact(new, ME))
    assert (second.action, second.superseded_id) == ("superseded", first.id)
    assert [h.text for h in run(memory.list_memories(ME, ["fact"]))] == [new]
    assert [h.text for h in run(memory.fact_history(second.id))] == [new, old]


@pytest.mark.parametrize(("old", "new"), REWORDINGS)
def test_a_true_duplicate_reworded_is_still_deduplicated(make_memory, minilm, old, new) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(minilm)
    first = run(memory.add_fact(old, ME))
    again = run(memory.add_fact(new, ME))
    assert (again.action, again.id) == ("duplicate", first.id)
    assert [h.text for h in run(memory.list_memories(ME, ["fact"]))] == [old]


def test_ten_distinct_coded_facts_are_all_kept(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(minilm)
    results = [run(memory.add_fact(f"fact CONC{n:03d}", ME)) for n in range(1, 11)]
    assert [r.action for r in results] == ["added"] * 10
    assert len(run(memory.list_memories(ME, ["fact"]))) == 10


def test_what_differs_names_the_tokens_that_matter() -> None:
    assert what_differs("call Anna at 10 am", "call Anna at 10 pm") == ["am", "pm"]
    assert what_differs("I eat meat", "I don't eat meat") == ["negation"]
    assert what_differs("My dentist is Dr Moss", "my dentist is Dr Moss!") == []
    assert what_differs("I am here", "I'm here") == []  # "am" is a time only after a number


class RecordingJudge(FactJudge):
    """A hand-written judge: answers from a table, records every batch it is asked."""

    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers = answers
        self.batches: list[list[tuple[str, str]]] = []

    async def judge(self, pairs: list[tuple[str, str]]) -> list[str | None]:
        self.batches.append(pairs)
        return [self.answers.get(new) for _, new in pairs]


def test_the_judge_decides_unclear_pairs_in_one_batch(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from memory.facts import FactExtractor
    from memory.types import Message

    moved = "I moved my dentist appointment to 15:30"
    judge = RecordingJudge({moved: "superseded", "fact CONC002": "added"})
    memory = make_memory(minilm)
    memory.facts.judge = judge
    old = run(memory.add_fact("My dentist appointment is on Tuesday at 10:00", ME))
    run(memory.add_fact("fact CONC001", ME))
    assert judge.batches == []  # nothing unclear yet: no call

    class Two(FactExtractor):
        async def extract(self, turns: list[Message]) -> list[str]:
            return [moved, "fact CONC002", "I like long walks"]

    turn = Message(1, 1, 7, "user", "...", datetime.now(UTC))
    results = run(memory.learn([turn], ME, Two()))
    assert len(judge.batches) == 1  # one call for the whole batch, only the unclear pairs
    assert {new for _, new in judge.batches[0]} == {moved, "fact CONC002"}
    assert [r.action for r in results] == ["superseded", "added", "added"]
    assert results[0].superseded_id == old.id


def test_a_failing_judge_loses_nothing(make_memory, minilm) -> None:  # type: ignore[no-untyped-def]
    class Broken(FactJudge):
        async def judge(self, pairs: list[tuple[str, str]]) -> list[str | None]:
            raise RuntimeError("model down")

    memory = make_memory(minilm)
    memory.facts.judge = Broken()
    run(memory.add_fact("fact CONC001", ME))
    assert run(memory.add_fact("fact CONC002", ME)).action == "added"
    assert len(run(memory.list_memories(ME, ["fact"]))) == 2


def test_an_unstorable_extracted_fact_does_not_lose_the_others(make_memory) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from memory.facts import FactExtractor
    from memory.types import Message

    class Mixed(FactExtractor):
        async def extract(self, turns: list[Message]) -> list[str]:
            return ["The user keeps bees", "\x00\x00", "The user rows on Sundays"]

    memory = make_memory()
    turn = Message(1, 1, 7, "user", "...", datetime.now(UTC))
    results = run(memory.learn([turn], ME, Mixed()))
    assert [r.action for r in results] == ["added", "added"]
    assert len(run(memory.list_memories(ME, ["fact"]))) == 2


class LoadsOnSignal(HashingEmbedder):
    """An embedder whose weights finish loading only when the test says so (the real one takes
    seconds after a start, in the background)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.loaded = False

    def load(self) -> None:
        self.go.wait(30)
        self.loaded = True

    @property
    def ready(self) -> bool:
        return self.loaded


def test_a_correction_sent_while_the_model_loads_waits_for_it_and_still_supersedes(
    make_memory,
) -> None:  # type: ignore[no-untyped-def]
    """Found trying the console: /remember twice right after a start kept both phone numbers as
    current cards, because the decision ran without vectors."""
    embedder = LoadsOnSignal()
    memory = make_memory(embedder, warm=False)

    async def scenario() -> tuple[str, int | None, int, list[str]]:
        await memory.start()
        old = await memory.add_fact("my phone number is 555-0199", ME)  # nothing to compare
        unrelated = await memory.add_fact("I like green tea", ME)  # no card it could repeat
        assert (old.action, unrelated.action) == ("added", "added")
        second = asyncio.create_task(memory.add_fact("my phone number is 555-0142", ME))
        await asyncio.sleep(0.2)
        assert not second.done()  # waiting for the model, not decided without it
        embedder.go.set()
        new = await second
        current = [h.text for h in await memory.list_memories(ME, ["fact"])]
        await memory.stop()
        return new.action, new.superseded_id, old.id, current

    action, superseded, old_id, current = asyncio.run(scenario())
    assert (action, superseded) == ("superseded", old_id)
    assert current == ["my phone number is 555-0142", "I like green tea"]
