"""A message of only zero-width or control characters is an empty message: it is not stored and
never reaches the model (the real service graph, the real Anthropic provider against the stub)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from telegram import Update

from bot.core.assistant import EMPTY
from bot.core.types import Sender
from memory.text import MemoryInputError, checked, has_visible
from tests.core_graph import core_graph
from tests.stubs.anthropic_stub import llm_stub
from tests.telegram.helpers import ALLOWED, build_rig, message

INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200b\u200c\u200d\u2060\ufeff",  # joiners, word joiner, BOM
    "\x01\x02\x7f",  # controls
    "\u202e\u200f ",  # bidi overrides and marks
    "\ufe0f\ufe0f",  # variation selectors with nothing to vary
    "\u3164",  # Hangul filler, the usual "blank name" trick
    "\u2800 \u2800",  # blank Braille
]
VISIBLE = ["👨\u200d👩\u200d👧", "e\u0301", "می\u200cخواهم", "a\u200b", "·"]


@pytest.mark.parametrize("text", INVISIBLE)
def test_invisible_text_is_empty_for_memory(text: str) -> None:
    assert not has_visible(text)
    with pytest.raises(MemoryInputError, match="empty"):
        checked(text, 10_000)


@pytest.mark.parametrize("text", VISIBLE)
def test_text_with_anything_visible_is_kept(text: str) -> None:
    assert has_visible(text) and checked(text, 10_000)


def test_an_invisible_message_is_not_stored_or_sent_to_the_model(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = Sender(41, "Ann")
    with llm_stub() as stub:
        monkeypatch.setenv("FAMILIAR_LLM__PROVIDER", "anthropic")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
        stub.script("Hello Ann.")

        async def scenario() -> None:
            async with core_graph(data_dir) as graph:
                for text in INVISIBLE:
                    assert (await graph.say(text, ann)).text == EMPTY
                assert (await graph.say("/remember \u200b\u200d", ann)).text.startswith("Usage:")
                assert stub.requests == []
                assert await graph.services.memory.recent_messages(ann.id) == []
                assert (await graph.say("hello", ann)).text == "Hello Ann."  # the path works
                turns = await graph.services.memory.recent_messages(ann.id)
                assert [t.text for t in turns] == ["hello", "Hello Ann."]

        asyncio.run(scenario())
    assert len(stub.requests) == 1


def test_telegram_gives_an_invisible_message_the_empty_reply(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    asyncio.run(rig.handler.handle(Update.de_json(message(ALLOWED, "\u200b\u2060\ufeff"), None)))
    assert rig.answerer.seen == []
    assert rig.transport.texts == [EMPTY]
