"""TelegramTransport through real PTB against the emulator: splitting, buttons, edits, plain fallback."""

from __future__ import annotations

import asyncio

import pytest
from telegram import Bot

from bot.core.types import Button, Reply, SentMessage
from bot.telegram.limits import ChatPacer
from bot.telegram.transport import TOPIC, TelegramTransport
from tests.telegram.conftest import Emulator, visible

CHAT = 777


def _run(emulator: Emulator, token: str, work, interval_s: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        bot = Bot(token, base_url=emulator.base_url)
        async with bot:
            await work(TelegramTransport(bot, ChatPacer(0.0), edit_interval_s=interval_s))

    asyncio.run(main())


def test_a_long_answer_is_split_with_buttons_under_the_last_part(emulator: Emulator) -> None:
    token = "9001:transport"
    code = (
        "```python\n" + "\n".join(f"value_{i} = {i}  # <tag> & more" for i in range(200)) + "\n```"
    )
    text = "\n\n".join(["Intro **bold** & <escaped>", "word " * 800, code, "The end."])
    assert len(text) > 10_000
    buttons = [[Button("👍", "fb:u1.AAAAAAAAAAA")]]

    async def work(t: TelegramTransport) -> None:
        await t.send(CHAT, Reply(text, buttons))

    _run(emulator, token, work)
    messages = emulator.bot_messages(token, CHAT)
    texts = [m["message"]["text"] for m in messages]
    assert len(texts) >= 3
    assert all(len(visible(x)) <= 4096 for x in texts)  # Telegram counts after parsing
    assert all(x.count("<pre>") == x.count("</pre>") for x in texts)  # code blocks closed per part
    assert "&lt;escaped&gt;" in texts[0] and "<b>bold</b>" in texts[0]
    assert [bool(m["message"].get("reply_markup")) for m in messages] == [False] * (
        len(texts) - 1
    ) + [True]
    assert "The end." in texts[-1]


def test_edits_are_coalesced_and_the_last_one_wins(emulator: Emulator) -> None:
    token = "9002:transport"

    async def work(t: TelegramTransport) -> None:
        sent = await t.send(CHAT, Reply("partial"))
        for i in range(10):
            await t.edit(sent, Reply(f"partial {i}"))
        await t.drain()

    _run(emulator, token, work)
    messages = emulator.bot_messages(token, CHAT)
    assert len(messages) == 1
    assert messages[0]["message"]["text"] == "partial 9"


def test_settle_waits_for_the_chats_held_back_edit(emulator: Emulator) -> None:
    # An update is marked done after settle(): the final edit of an answer, held back for
    # pacing, must be applied by then, or a kill right after would leave the answer cut off.
    token = "9005:transport"
    shown: list[str] = []

    async def work(t: TelegramTransport) -> None:
        sent = await t.send(CHAT, Reply("partial …"))
        other = await t.send(CHAT + 1, Reply("other chat"))
        await t.edit(sent, Reply("first edit"))
        await t.edit(sent, Reply("the final answer"))  # within the interval: held back
        # The other chat's held edit falls due a second after this chat's, so that settle()
        # returning before it is what the test sees, not a slow machine's timing.
        await asyncio.sleep(1.0)
        await t.edit(other, Reply("other 1"))
        await t.edit(other, Reply("other 2"))
        shown.append(emulator.bot_messages(token, CHAT)[0]["message"]["text"])
        await t.settle(CHAT)
        shown.append(emulator.bot_messages(token, CHAT)[0]["message"]["text"])
        assert t._flushers.keys() == {(CHAT + 1, other.message_id)}  # settle() is per chat
        await t.drain()

    _run(emulator, token, work, interval_s=2.0)
    assert shown == ["first edit", "the final answer"]


def test_typing_failure_is_ignored(emulator: Emulator) -> None:
    # The emulator does not implement sendChatAction: the call fails, the transport carries on.
    async def work(t: TelegramTransport) -> None:
        await t.typing(CHAT)
        await t.send(CHAT, Reply("still here", markdown=False))

    _run(emulator, "9003:transport", work)
    assert [m["message"]["text"] for m in emulator.bot_messages("9003:transport", CHAT)] == [
        "still here"
    ]


class RejectingHTML(Bot):
    """Telegram's answer to bad entities, for the plain-text fallback."""

    async def send_message(self, chat_id, text, parse_mode=None, **kw):  # type: ignore[no-untyped-def,override]
        from telegram.error import BadRequest

        if parse_mode:
            raise BadRequest("Can't parse entities: unsupported start tag")
        return await super().send_message(chat_id, text, **kw)


def test_rejected_formatting_is_sent_plain(emulator: Emulator) -> None:
    token = "9004:transport"

    async def main() -> SentMessage:
        bot = RejectingHTML(token, base_url=emulator.base_url)
        async with bot:
            return await TelegramTransport(bot, ChatPacer(0.0)).send(CHAT, Reply("**x** < y"))

    asyncio.run(main())
    assert [m["message"]["text"] for m in emulator.bot_messages(token, CHAT)] == ["**x** < y"]


pytestmark = pytest.mark.timeout(60)


def test_what_is_sent_while_a_topics_update_is_handled_goes_into_the_topic(
    emulator: Emulator,
) -> None:
    token = "9009:transport"

    async def work(t: TelegramTransport) -> None:
        mark = TOPIC.set((CHAT, 77))
        try:
            sent = await t.send(CHAT, Reply("in the topic"))
            await t.send(CHAT + 1, Reply("another chat"))
            await t.edit(sent, Reply("in the topic, edited"))
        finally:
            TOPIC.reset(mark)
        await t.send(CHAT, Reply("the chat itself"))
        await t.drain()

    _run(emulator, token, work)
    sent = emulator.bot_messages(token, CHAT) + emulator.bot_messages(token, CHAT + 1)
    threads = {m["message"]["text"]: m["message"].get("message_thread_id") for m in sent}
    assert threads == {
        "in the topic, edited": "77",  # form-encoded by PTB, kept as sent
        "another chat": None,
        "the chat itself": None,
    }
