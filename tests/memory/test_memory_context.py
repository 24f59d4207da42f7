"""Context assembly inside a budget, and compaction that never loses a turn."""

from __future__ import annotations

from memory.context import ExtractiveSummariser, Summariser
from memory.text import estimate_tokens
from memory.types import Message, Scope

from .conftest import run


class RecordingSummariser(Summariser):
    """Concatenates first words; remembers what it was asked to summarise."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[Message]] = []
        self.fail = fail

    async def summarise(self, turns: list[Message]) -> str:
        self.calls.append(turns)
        if self.fail:
            raise RuntimeError("the LLM is down")
        return "Summary: " + "; ".join(t.text.split()[0] for t in turns)


def _chat(memory, n: int = 40) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        run(
            memory.add_message(
                1,
                7 if role == "user" else None,
                role,
                f"turn{i} " + "about gardening and tomatoes " * 5,
            )
        )


def test_context_respects_the_budget_and_keeps_the_newest_turns(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    memory.summariser = RecordingSummariser()
    _chat(memory)
    run(memory.add_fact("The user grows tomatoes", Scope(1, 7), pinned=True))
    ctx = run(
        memory.assemble_context(1, 7, "what should I plant next?", 600, persona="You are Familiar.")
    )
    assert ctx.tokens_used <= 600
    assert (
        estimate_tokens(ctx.system) + sum(estimate_tokens(m["content"]) for m in ctx.messages)
        <= 600
    )
    assert ctx.messages[-1] == {"role": "user", "content": "what should I plant next?"}
    kept = [m["content"].split()[0] for m in ctx.messages[:-1]]
    assert kept and kept[-1] == "turn39"  # newest kept, contiguous, oldest first
    assert kept == [f"turn{i}" for i in range(40 - len(kept), 40)]
    assert ctx.system.startswith("You are Familiar.")
    assert "The user grows tomatoes" in ctx.system
    assert any("recent turns" in s for s in ctx.included) and any(
        "older turns" in s for s in ctx.dropped
    )


def test_history_that_outgrows_the_budget_is_compacted_not_lost(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    summariser = RecordingSummariser()
    memory.summariser = summariser
    _chat(memory)
    ctx = run(memory.assemble_context(1, 7, "hello again", 500))
    assert len(summariser.calls) == 1
    summarised = [t.text.split()[0] for t in summariser.calls[0]]
    kept = [m["content"].split()[0] for m in ctx.messages[:-1]]
    assert summarised + kept == [f"turn{i}" for i in range(40)]  # every turn in exactly one place
    assert "## Earlier in this conversation\nSummary: turn0" in ctx.system
    assert run(memory.search("turn0", Scope(1), kinds=["message"]))[0].text.startswith(
        "turn0"
    )  # still searchable
    # Nothing new fell out: asking again does not summarise again.
    run(memory.assemble_context(1, 7, "hello again", 500))
    assert len(summariser.calls) == 1
    # A few more turns push more out: the new summary builds on the previous one.
    for i in range(40, 46):
        run(memory.add_message(1, 7, "user", f"turn{i} " + "about roses " * 10))
    run(memory.assemble_context(1, 7, "and now?", 500))
    assert summariser.calls[1][0].role == "system" and summariser.calls[1][0].text.startswith(
        "Summary: turn0"
    )


def test_a_failing_summariser_falls_back_to_the_extractive_one(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    memory.summariser = RecordingSummariser(fail=True)
    _chat(memory)
    ctx = run(memory.assemble_context(1, 7, "hi", 500))
    assert "Keywords:" in ctx.system and ctx.tokens_used <= 500


def test_extractive_summary_has_keywords_and_key_sentences() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    turns = [
        Message(
            1, 1, 7, "user", "We are planning a trip to Lisbon in May. The flights are booked.", now
        ),
        Message(2, 1, None, "assistant", "Lisbon in May is lovely. Pack light clothes.", now),
    ]
    text = run(ExtractiveSummariser().summarise(turns))
    assert text.startswith("Keywords: lisbon")
    assert "trip to Lisbon" in text


def test_a_tiny_budget_still_returns_the_incoming_message(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    _chat(memory, 4)
    ctx = run(memory.assemble_context(1, 7, "short question", 10))
    assert ctx.messages == [{"role": "user", "content": "short question"}]


def test_compaction_runs_once_per_many_turns_and_keeps_the_window_start(make_memory) -> None:  # type: ignore[no-untyped-def]
    """Compacting down to half the budget leaves room for the next turns: the summariser is not
    called per message, and the turns shown keep their first turn (a cacheable prefix)."""
    memory = make_memory()
    summariser = RecordingSummariser()
    memory.summariser = summariser
    _chat(memory)
    first = run(memory.assemble_context(1, 7, "hello again", 500))
    assert len(summariser.calls) == 1
    starts, system = [], first.system
    for i in range(40, 46):  # six more turns (about 200 tokens): they fit in the room left
        role = "user" if i % 2 == 0 else "assistant"
        run(memory.add_message(1, 7 if role == "user" else None, role, f"turn{i} note"))
        ctx = run(memory.assemble_context(1, 7, "and now?", 500))
        starts.append(ctx.messages[0]["content"])
        assert ctx.system == system  # the summary did not change either
    assert len(summariser.calls) == 1
    assert set(starts) == {first.messages[0]["content"]}


def test_recalled_memories_come_with_the_message_not_in_the_system_prompt(make_memory) -> None:  # type: ignore[no-untyped-def]
    from memory.context import RECALLED_HEADER, with_recalled

    memory = make_memory()
    run(memory.add_memory("The user's bike is a blue Gazelle from 2019.", Scope(1, 7), "note"))
    run(memory.add_message(1, 7, "user", "Which bike do I have?"))
    ctx = run(memory.assemble_context(1, 7, "Which bike do I have?", 2000))
    assert "Gazelle" not in ctx.system and ctx.recalled.startswith(RECALLED_HEADER)
    assert "Gazelle" in ctx.recalled
    assert "Which bike" not in ctx.recalled  # the incoming message is not recalled to itself
    assert ctx.messages == [{"role": "user", "content": "Which bike do I have?"}]
    assert with_recalled(ctx.recalled, "Which bike?").endswith("## The message\nWhich bike?")
    assert with_recalled("", "Which bike?") == "Which bike?"


def test_a_message_larger_than_the_budget_is_clipped_not_sent_to_fail(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    huge = "START " + "lorem ipsum dolor sit amet " * 20_000 + " END"  # ~540k characters
    run(memory.add_message(1, 7, "user", huge))
    ctx = run(memory.assemble_context(1, 7, huge, 2000))
    sent = ctx.messages[-1]["content"]
    assert sent.startswith("START") and sent.endswith("END") and "characters left out" in sent
    assert estimate_tokens(sent) <= 1000 and ctx.tokens_used <= 2000
    assert any("middle of the message" in d for d in ctx.dropped)
    assert len(ctx.messages) == 1  # the stored copy of the message is not repeated as history
    assert run(memory.recent_messages(1, 1))[0].text == huge  # memory keeps it whole


def test_a_recalled_turn_brings_the_reply_it_got_into_the_context(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(memory.add_message(1, 7, "user", "Which plumber fixed the boiler?"))
    run(memory.add_message(1, None, "assistant", "It was Kowalski, on the 3rd."))
    for i in range(30):  # push those turns out of the recent window
        run(memory.add_message(1, 7, "user", f"filler turn number {i} " + "padding " * 30))
    ctx = run(memory.assemble_context(1, 7, "who fixed the boiler", 900))
    # Each turn says who said it: the answer is the assistant's, not the user's words.
    assert "] user: Which plumber fixed the boiler?" in ctx.recalled
    assert "(just after) assistant: It was Kowalski, on the 3rd." in ctx.recalled
    # The reply is a hit of its own too (by the question's words), shown once, under it.
    assert ctx.recalled.count("Kowalski") == 1


def test_a_recalled_turn_names_a_group_member_and_the_author_of_a_forward(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(
        memory.add_message(
            1, 7, "user", "I'm allergic to hazelnuts, sadly.", meta={"forwarded_from": "Tom"}
        )
    )
    run(memory.add_message(1, 7, "user", "Hazelnuts are fine for me.", meta={"speaker": "Ann"}))
    for i in range(30):  # push those turns out of the recent window
        run(memory.add_message(1, 7, "user", f"filler turn number {i} " + "padding " * 30))
    ctx = run(memory.assemble_context(1, 7, "who is allergic to hazelnuts", 900))
    assert "] user (forwarding Tom): I'm allergic to hazelnuts, sadly." in ctx.recalled
    assert "Ann: Hazelnuts are fine for me." in ctx.recalled  # a hit, or the one just after
    notes = make_memory()
    run(notes.add_memory("Hazelnut cake recipe: 200 g hazelnuts.", Scope(1, 7), "note"))
    ctx = run(notes.assemble_context(1, 7, "hazelnuts", 900))
    assert "] Hazelnut cake recipe" in ctx.recalled  # a note is nobody's turn: no label
