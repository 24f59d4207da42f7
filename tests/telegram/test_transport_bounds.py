"""TelegramTransport's bookkeeping stays bounded over many messages, and recent ones still edit.

Ten thousand sends and edits go to ``LocalBot``, a PTB ``Bot`` that keeps its chats in memory (the
emulator costs milliseconds a call: too slow for this many); a small cap is then checked end to
end through the emulator, where the most recent split message is edited in place.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from telegram import Bot, Chat, Message
from telegram.error import BadRequest

from bot.core.types import Reply, SentMessage
from bot.telegram.limits import ChatPacer
from bot.telegram.transport import MAX_TRACKED, TelegramTransport
from tests.telegram.conftest import Emulator

pytestmark = pytest.mark.timeout(120)

SPLIT = 40  # split limit: twelve words of four or more letters make two parts


class LocalBot(Bot):
    """The two Bot API calls the transport makes for answers, served from a dict of chats:
    sent texts by (chat, message id); editing a message that does not exist fails as in Telegram."""

    def __init__(self, edit_delay_s: float = 0.0) -> None:
        super().__init__("1:local")
        # Underscored: PTB freezes a Bot's public attributes once it is built.
        self._texts: dict[tuple[int, int], str] = {}
        self._edit_delay_s = edit_delay_s
        self._ids = itertools.count(1)

    @property
    def texts(self) -> dict[tuple[int, int], str]:
        return self._texts

    async def send_message(self, chat_id, text, *args: Any, **kw: Any) -> Message:  # type: ignore[no-untyped-def,override]
        message_id = next(self._ids)
        self._texts[(chat_id, message_id)] = text
        return Message(message_id, datetime.now(UTC), Chat(chat_id, "private"), text=text)

    async def delete_message(self, chat_id, message_id, *args: Any, **kw: Any) -> bool:  # type: ignore[no-untyped-def,override]
        if getattr(self, "_undeletable", False) or (chat_id, message_id) not in self._texts:
            raise BadRequest("Message can't be deleted")
        del self._texts[(chat_id, message_id)]
        return True

    async def edit_message_text(
        self, text, chat_id=None, message_id=None, *args: Any, **kw: Any
    ) -> Message:  # type: ignore[no-untyped-def,override]
        if (chat_id, message_id) not in self._texts:
            raise BadRequest("Message to edit not found")
        await asyncio.sleep(self._edit_delay_s)
        self._texts[(chat_id, message_id)] = text
        return Message(message_id, datetime.now(UTC), Chat(chat_id, "private"), text=text)


def words(n: int, tag: str) -> str:
    return " ".join([tag] * n)


def test_ten_thousand_messages_leave_bounded_bookkeeping_and_the_last_still_edits() -> None:
    async def scenario() -> None:
        bot = LocalBot()
        t = TelegramTransport(bot, ChatPacer(0.0), edit_interval_s=0.005, split_limit=SPLIT)
        sent: list[SentMessage] = []
        for i in range(10_000):
            message = await t.send(1000 + i % 50, Reply(words(12, f"m{i:05d}"), markdown=False))
            await t.edit(message, Reply(words(12, f"e{i:05d}"), markdown=False))  # applied at once
            await t.edit(
                message, Reply(words(12, f"f{i:05d}"), markdown=False)
            )  # too soon: pending
            sent.append(message)
            # Every bookkeeping dict stays under the cap all along, not only at the end.
            assert len(t._parts) <= MAX_TRACKED and len(t._last_edit) <= MAX_TRACKED
            assert len(t._pending) <= MAX_TRACKED and len(t._flushers) <= MAX_TRACKED
            if i % 1000 == 999:
                await t.drain()
        await t.drain()

        assert len(t._parts) == MAX_TRACKED  # the most recent split messages, no more
        assert (sent[-1].chat_id, sent[-1].message_id) in t._parts
        assert (sent[0].chat_id, sent[0].message_id) not in t._parts
        assert t._pending == {} and t._flushers == {}  # applied edits leave nothing behind

        # The last message was edited in its two parts, and a longer edit still lands in place.
        last = sent[-1]
        first, second = last.message_id, last.message_id + 1
        assert bot.texts[(last.chat_id, first)].startswith("f09999")
        assert bot.texts[(last.chat_id, second)].startswith("f09999")
        await asyncio.sleep(0.01)
        await t.edit(last, Reply(words(20, "final"), markdown=False))
        assert list(t._last_edit) == [(last.chat_id, first)]  # older edit times are gone
        parts = [k[1] for k in bot.texts if k[0] == last.chat_id and k[1] >= first]
        assert len(parts) > 2 and parts[:2] == [first, second]  # edited in place, the rest sent
        assert " ".join(bot.texts[(last.chat_id, k)] for k in parts).split() == ["final"] * 20
        assert t._parts[(last.chat_id, first)] == parts[1:]  # so the next edit finds them all

    asyncio.run(scenario())


def test_an_edit_that_comes_while_a_delayed_one_is_applied_is_not_lost() -> None:
    async def scenario() -> None:
        bot = LocalBot(edit_delay_s=0.1)  # each edit takes 0.1 s
        t = TelegramTransport(bot, ChatPacer(0.0), edit_interval_s=0.3)
        message = await t.send(5, Reply("v0", markdown=False))
        await t.edit(message, Reply("v1", markdown=False))  # t=0: applied at once, until t=0.1
        await t.edit(message, Reply("v2", markdown=False))  # too soon: a flusher applies it at 0.3
        await asyncio.sleep(0.25)  # t=0.35: the flusher is inside its edit of v2
        assert (5, message.message_id) in t._flushers and t._pending == {}
        await t.edit(message, Reply("v3", markdown=False))  # finds the flusher busy: left pending
        await t.drain()
        assert bot.texts[(5, message.message_id)] == "v3"
        assert t._pending == {} and t._flushers == {}

    asyncio.run(scenario())


def test_with_a_small_cap_the_recent_split_message_still_edits_through_telegram(
    emulator: Emulator,
) -> None:
    token = "9011:transport-bounds"
    chat = 778

    async def main() -> SentMessage:
        bot = Bot(token, base_url=emulator.base_url)
        async with bot:
            t = TelegramTransport(
                bot, ChatPacer(0.0), edit_interval_s=0.0, split_limit=SPLIT, max_tracked=4
            )
            sent = [
                await t.send(chat, Reply(words(12, f"m{i:03d}"), markdown=False)) for i in range(12)
            ]
            assert len(t._parts) == 4 and len(t._last_edit) == 0
            await t.edit(sent[-1], Reply(words(12, "ed00"), markdown=False))  # two parts again
            await t.drain()
            assert len(t._parts) == 4 and t._pending == {} and t._flushers == {}
            return sent[-1]

    last = asyncio.run(main())
    messages = emulator.bot_messages(token, chat)
    assert len(messages) == 24  # twelve messages of two parts; the edit sent nothing new
    texts = [m["message"]["text"] for m in messages]
    assert [x.split()[0] for x in texts[-2:]] == ["ed00", "ed00"]
    assert [x.split()[0] for x in texts[:-2]] == [f"m{i:03d}" for i in range(11) for _ in range(2)]
    assert str(messages[-2]["messageId"]) == str(
        last.message_id
    )  # the edit went to the message itself


@pytest.mark.parametrize("deletable", [True, False])
def test_a_split_message_edited_shorter_leaves_no_stale_parts(deletable: bool) -> None:
    async def scenario() -> LocalBot:
        bot = LocalBot()
        object.__setattr__(bot, "_undeletable", not deletable)
        t = TelegramTransport(bot, ChatPacer(0.0), edit_interval_s=0.0, split_limit=SPLIT)
        message = await t.send(7, Reply(words(20, "long"), markdown=False))  # three parts
        assert len(bot.texts) == 3
        await t.edit(message, Reply("short now", markdown=False))
        await t.drain()
        assert (7, message.message_id) not in t._parts
        await t.edit(message, Reply(words(12, "grown"), markdown=False))  # two parts again
        await t.drain()
        return bot

    bot = asyncio.run(scenario())
    texts = [text for (_, _), text in sorted(bot.texts.items())]
    if deletable:  # the two old trailing parts are gone; growing again sent one new part
        assert len(texts) == 2 and texts[0].startswith("grown") and texts[1].startswith("grown")
    else:  # Telegram refused to delete them: they are blanked, not left with stale words
        assert (
            texts[1:3] == ["⋯", "⋯"]
            and texts[0].startswith("grown")
            and texts[3].startswith("grown")
        )
        assert len(texts) == 4
