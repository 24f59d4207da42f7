"""A forwarded message is someone else's words: the model sees it marked as such (and as data,
like a quote), memory keeps the words with their author in the turn's meta, and no fact about
the person who forwarded it is learnt from it ("I'm allergic to nuts", forwarded from a friend,
is the friend's). Also: a location, a contact, a poll or a sticker is written out as text and
answered, and what cannot be read is named in the notice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from telegram import Update

from agents.chat import ChatAgent, LLMFactExtractor
from agents.llm import LLM
from agents.providers.fake import FakeProvider
from agents.schema import migrations as agent_migrations
from agents.settings import LLMSettings
from bot.core.documents import sent_link
from bot.core.types import Incoming, Sender
from memory.context import AUDIO_MARK, as_heard, forwarded, who_said
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.facts import PatternFactExtractor
from memory.schema import migrations as memory_migrations
from memory.service import Memory
from memory.settings import MemorySettings
from memory.types import Message, Scope
from tests.core_graph import core_graph
from tests.stubs.anthropic_stub import LLMStub, content_text
from tests.telegram.helpers import ALLOWED, BOT_ID, build_rig, message

NUTS = "I'm allergic to nuts, so no satay for me on Friday."


def turn(text: str, **meta: object) -> Message:
    from datetime import UTC, datetime

    return Message(1, 1, 5, "user", text, datetime.now(UTC), meta=dict(meta))


def test_a_forwarded_turn_is_marked_as_its_authors_words() -> None:
    assert forwarded("", "hi") == "hi"
    marked = forwarded("Tom", NUTS)
    assert marked == (
        "[Forwarded: a message from Tom, their words, not the sender's:]\n"
        f"<<<FORWARDED\n{NUTS}\nFORWARDED>>>"
    )
    # In a group: the member who forwarded it, then the mark; a voice note's mark first.
    assert as_heard(turn(NUTS, speaker="Ann", forwarded_from="Tom")) == f"Ann: {marked}"
    heard = as_heard(turn(NUTS, forwarded_from="Tom", from_audio=True))
    assert heard == AUDIO_MARK + marked
    assert as_heard(turn(NUTS)) == NUTS
    assert who_said(turn(NUTS, forwarded_from="Tom")) == "user (forwarding Tom)"


def handle(tmp_path: Path, origin: dict | None, **extra: object) -> Incoming:
    rig = build_rig(tmp_path)
    update = message(ALLOWED, "see below")
    if origin is not None:
        update["message"]["forward_origin"] = {"date": 1, **origin}
    update["message"].update(extra)
    asyncio.run(rig.handler.handle(Update.de_json(update, None)))
    [seen] = rig.answerer.seen
    return seen


def _user(uid: int, first: str, last: str | None = None, bot: bool = False) -> dict:
    user = {"id": uid, "is_bot": bot, "first_name": first}
    if last:
        user["last_name"] = last
    return user


@pytest.mark.parametrize(
    ("origin", "label"),
    [
        (None, ""),
        ({"type": "user", "sender_user": _user(77, "Tom", "Hardy")}, "Tom Hardy"),
        ({"type": "user", "sender_user": _user(ALLOWED, "Me")}, ""),  # their own words
        (
            {"type": "user", "sender_user": _user(BOT_ID, "Familiar", bot=True)},
            "you (the assistant)",
        ),
        ({"type": "hidden_user", "sender_user_name": "Anon\u202e Y"}, "Anon Y"),
        (
            {"type": "chat", "sender_chat": {"id": -5, "type": "group", "title": "Book club"}},
            "Book club",
        ),
        (
            {
                "type": "channel",
                "chat": {"id": -6, "type": "channel", "title": "City news"},
                "message_id": 9,
            },
            "the channel City news",
        ),
        ({"type": "hidden_user", "sender_user_name": "\u200b"}, "someone"),
    ],
)
def test_the_handler_names_who_wrote_a_forwarded_message(
    tmp_path: Path, origin: dict | None, label: str
) -> None:
    seen = handle(tmp_path, origin)
    assert seen.text == "see below" and seen.forwarded_from == label


def test_a_forwarded_message_reaches_the_model_marked_and_memory_keeps_its_author(
    data_dir: Path, stub_model: LLMStub
) -> None:
    me = Sender(61, "Ann")
    stub_model.script("Noted: Tom can't have nuts.", "No satay for Tom, then.")

    async def scenario() -> list[Message]:
        async with core_graph(data_dir) as graph:
            msg = Incoming(me.id, me, NUTS, message_id=1, forwarded_from="Tom")
            await graph.services.assistant.handle(msg, graph.transport)
            msg = Incoming(me.id, me, "what should I cook for him?", message_id=2)
            await graph.services.assistant.handle(msg, graph.transport)
            return await graph.services.memory.recent_messages(me.id)

    turns = asyncio.run(scenario())
    bodies = stub_model.bodies()
    first, second = ([content_text(m["content"]) for m in b["messages"]] for b in bodies)
    assert first[-1].endswith(forwarded("Tom", NUTS))
    assert second[0] == forwarded("Tom", NUTS)  # in the history too
    assert second[-1].endswith("what should I cook for him?") and "FORWARDED" not in second[-1]
    assert turns[0].text == NUTS and turns[0].meta.get("forwarded_from") == "Tom"
    assert "forwarded_from" not in turns[2].meta


def test_no_fact_about_the_user_is_learnt_from_what_they_forwarded() -> None:
    forwarded_turn = turn(NUTS, forwarded_from="Tom")
    own = turn("I'm allergic to penicillin.")
    facts = asyncio.run(PatternFactExtractor().extract([forwarded_turn, own]))
    assert facts == ["I'm allergic to penicillin."]


def test_the_fact_extractor_is_told_which_words_were_forwarded(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "f.db", [memory_migrations, agent_migrations])
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    provider = FakeProvider(["Noted.", json.dumps({"facts": ["The user cooks for Tom."]})])
    llm = LLM(provider)
    agent = ChatAgent(
        memory, llm, LLMSettings(fact_extraction_every=2), extractor=LLMFactExtractor(llm), db=db
    )

    async def scenario() -> list[str]:
        await agent.answer(7, 7, NUTS, meta={"forwarded_from": "Tom"})
        await agent.drain()
        facts = await memory.list_memories(Scope(7, 7), ["fact"])
        await memory.stop()
        return [f.text for f in facts]

    try:
        assert asyncio.run(scenario()) == ["The user cooks for Tom."]
    finally:
        db.close()
    [call] = [
        r.messages[0]["content"]
        for r in provider.requests
        if "durable facts" in str(r.messages[0]["content"])
    ]
    assert f"user (forwarding Tom): {NUTS}" in call
    assert "someone else's words" in call


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"location": {"latitude": 52.52, "longitude": 13.405}},
            "📍 Shared a location: 52.520000, 13.405000",
        ),
        (
            {"location": {"latitude": 1.5, "longitude": -2.25, "live_period": 900}},
            "📍 Shared a location: 1.500000, -2.250000 (shared live; later moves are not followed)",
        ),
        (
            {
                "venue": {
                    "location": {"latitude": 48.8584, "longitude": 2.2945},
                    "title": "Eiffel Tower",
                    "address": "Champ de Mars\n5 Av. Anatole France",
                },
                "location": {"latitude": 48.8584, "longitude": 2.2945},
            },
            "📍 Shared a place: Eiffel Tower, Champ de Mars 5 Av. Anatole France — 48.858400, "
            "2.294500",
        ),
        (
            {
                "contact": {
                    "phone_number": "+44 20 7946 0958",
                    "first_name": "Dr",
                    "last_name": "Who",
                }
            },
            "👤 Shared a contact: Dr Who, phone +44 20 7946 0958",
        ),
        (
            {
                "poll": {
                    "id": "p",
                    "question": "Where to eat?",
                    "options": [
                        {"text": "Thai", "voter_count": 0, "persistent_id": "1"},
                        {"text": "Pizza", "voter_count": 1, "persistent_id": "2"},
                    ],
                    "total_voter_count": 1,
                    "is_closed": False,
                    "is_anonymous": True,
                    "type": "regular",
                    "allows_multiple_answers": False,
                    "allows_revoting": False,
                    "members_only": False,
                }
            },
            "📊 Shared a poll: Where to eat?\n- Thai\n- Pizza",
        ),
        (
            {
                "sticker": {
                    "file_id": "s",
                    "file_unique_id": "su",
                    "type": "regular",
                    "width": 1,
                    "height": 1,
                    "is_animated": False,
                    "is_video": False,
                    "emoji": "👍",
                }
            },
            "[a sticker: 👍]",
        ),
    ],
)
def test_a_location_contact_poll_or_sticker_is_answered_as_text(
    tmp_path: Path, extra: dict, expected: str
) -> None:
    rig = build_rig(tmp_path)
    update = message(ALLOWED, "")
    del update["message"]["text"]
    update["message"].update(extra)
    asyncio.run(rig.handler.handle(Update.de_json(update, None)))
    [seen] = rig.answerer.seen
    assert seen.text == expected
    # No link in it: a map link was taken for a page to read, and fetched ("couldn't fetch").
    assert sent_link(seen.text) is None


@pytest.mark.parametrize(
    ("extra", "notice"),
    [
        (
            {
                "video": {
                    "file_id": "v",
                    "file_unique_id": "vu",
                    "width": 1,
                    "height": 1,
                    "duration": 2,
                }
            },
            "I can't read videos here: send text.",
        ),
        (
            {"voice": {"file_id": "v", "file_unique_id": "vu", "duration": 2}},
            "I can't read voice messages here: send text.",
        ),
        ({"dice": {"emoji": "🎲", "value": 3}}, None),
        ({}, "I can't read that kind of message: send text."),
    ],
)
def test_what_cannot_be_read_is_named_in_the_notice(
    tmp_path: Path, extra: dict, notice: str | None
) -> None:
    rig = build_rig(tmp_path)  # no voice, photo or document reader: text only
    update = message(ALLOWED, "")
    del update["message"]["text"]
    update["message"].update(extra)
    asyncio.run(rig.handler.handle(Update.de_json(update, None)))
    if notice is None:
        [seen] = rig.answerer.seen
        assert seen.text == "🎲 Rolled 🎲: 3"
    else:
        assert rig.answerer.seen == [] and rig.transport.texts == [notice]
