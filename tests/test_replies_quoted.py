"""A message that replies to another (Telegram's reply, or a quote of part of it) reaches the
model with what it replies to, marked as a quote, unless that is already among the turns shown;
memory keeps only the person's own words. The realistic case: a reply to a reminder, a digest or
an answer from days ago, none of them in the turns the model is shown."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from telegram import Update

from bot.core.types import Incoming, Sender
from memory.context import QUOTE_MAX_CHARS, Quoted, with_quote
from tests.core_graph import core_graph
from tests.stubs.anthropic_stub import LLMStub, content_text
from tests.telegram.helpers import ALLOWED, BOT_ID, Rig, build_rig, message


def handle(rig: Rig, payload: dict) -> None:
    asyncio.run(rig.handler.handle(Update.de_json(payload, None)))


ANSWER = "Here are three options:\n1. **Lisbon** in May\n2. Porto [guide](https://x.example)"


def test_a_quote_comes_before_the_message_marked_as_data() -> None:
    out = with_quote(Quoted("⏰ call the dentist", "assistant"), "done, again tomorrow", [])
    assert out == (
        "[In reply to your earlier message:]\n<<<QUOTE\n⏰ call the dentist\nQUOTE>>>\n\n"
        "done, again tomorrow"
    )
    mine = with_quote(Quoted("buy milk", "self"), "and eggs", [])
    assert mine.startswith("[In reply to their own earlier message:]")
    ann = with_quote(Quoted("I bring the cake", "Ann"), "and who brings wine?", [])
    assert ann.startswith("[In reply to an earlier message from Ann:]")


def test_a_quote_already_in_view_is_not_repeated() -> None:
    shown = [{"role": "user", "content": "ideas?"}, {"role": "assistant", "content": ANSWER}]
    # Telegram shows the answer without its Markdown: the same words all the same.
    telegram_text = "Here are three options:\n1. Lisbon in May\n2. Porto guide"
    assert with_quote(Quoted(telegram_text, "assistant"), "the second", shown) == "the second"
    assert with_quote(Quoted("Lisbon in May", "assistant"), "that one", shown) == "that one"
    other = with_quote(Quoted("Rome in June", "assistant"), "that one", shown)
    assert "Rome in June" in other
    long_answer = " ".join(f"point{i} is this" for i in range(200))
    view = [{"role": "assistant", "content": long_answer}]
    assert with_quote(Quoted(long_answer, "assistant"), "the 7th", view) == "the 7th"
    # Whole words only: "ok" is not in "book".
    assert "<<<QUOTE\nok\n" in with_quote(Quoted("ok", "Bob"), "?", [{"content": "a book"}])


def test_a_long_quote_is_cut_and_an_empty_one_is_no_quote() -> None:
    long = "word " * 1000
    out = with_quote(Quoted(long, "Bob"), "tl;dr?", [])
    assert len(out) < QUOTE_MAX_CHARS + 200 and "…\nQUOTE>>>" in out
    assert with_quote(Quoted("\u200b ", "Bob"), "hm", []) == "hm"
    assert with_quote(None, "hm", []) == "hm"


def _reply(user: int, text: str, replied: dict, quote: str | None = None, **kw: object) -> dict:
    update = message(user, text, reply_to=replied, **kw)  # type: ignore[arg-type]
    if quote is not None:
        update["message"]["quote"] = {"text": quote, "position": 0}
    return update


def _replied(from_id: int, text: str, *, is_bot: bool = False, name: str = "F") -> dict:
    return {
        "message_id": 3,
        "date": 1,
        "chat": {"id": ALLOWED, "type": "private"},
        "from": {"id": from_id, "is_bot": is_bot, "first_name": name},
        "text": text,
    }


@pytest.mark.parametrize(
    ("replied", "quote", "expected"),
    [
        (
            _replied(BOT_ID, "⏰ call the dentist", is_bot=True),
            None,
            Quoted("⏰ call the dentist", "assistant"),
        ),
        (
            _replied(BOT_ID, "a long answer. The key part.", is_bot=True),
            "The key part.",
            Quoted("The key part.", "assistant"),
        ),
        (_replied(ALLOWED, "buy milk"), None, Quoted("buy milk", "self")),
        (
            _replied(77, "I bring the cake", name="Ann\u202e"),
            None,
            Quoted("I bring the cake", "Ann"),
        ),
    ],
)
def test_the_telegram_handler_passes_on_what_a_message_replies_to(
    tmp_path: Path, replied: dict, quote: str | None, expected: Quoted
) -> None:
    rig = build_rig(tmp_path)
    handle(rig, _reply(ALLOWED, "and then?", replied, quote))
    [seen] = rig.answerer.seen
    assert seen.text == "and then?" and seen.quoted == expected


def test_a_reply_to_a_photo_without_caption_has_no_quote(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    replied = _replied(BOT_ID, "", is_bot=True)
    del replied["text"]
    replied["photo"] = [{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}]
    handle(rig, _reply(ALLOWED, "nice", replied))
    [seen] = rig.answerer.seen
    assert seen.quoted is None


def test_a_reply_to_a_reminder_reaches_the_model_with_it_and_memory_keeps_the_words(
    data_dir: Path, stub_model: LLMStub
) -> None:
    ann = Sender(61, "Ann")
    stub_model.script("Which day?", "Done.")

    async def scenario() -> list[str]:
        async with core_graph(data_dir) as graph:
            reminder = Quoted("⏰ Reminder: renew the passport", "assistant")
            msg = Incoming(ann.id, ann, "how long does that take?", quoted=reminder)
            await graph.services.assistant.handle(msg, graph.transport)
            # Replying to the answer just given: in view already, not repeated.
            last = Quoted("Which day?", "assistant")
            msg = Incoming(ann.id, ann, "Friday", quoted=last)
            await graph.services.assistant.handle(msg, graph.transport)
            turns = await graph.services.memory.recent_messages(ann.id)
            return [t.text for t in turns]

    stored = asyncio.run(scenario())
    first, second = (content_text(b["messages"][-1]["content"]) for b in stub_model.bodies())
    assert "<<<QUOTE\n⏰ Reminder: renew the passport\nQUOTE>>>" in first
    assert first.endswith("how long does that take?")
    assert "QUOTE" not in second and second.endswith("Friday")
    assert stored == ["how long does that take?", "Which day?", "Friday", "Done."]
