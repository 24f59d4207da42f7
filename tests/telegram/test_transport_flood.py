"""Telegram's flood control (429 with ``retry_after``) through real PTB against the fake Bot API
on 127.0.0.1: the transport waits and sends the message once; after too many refusals it gives
up with the error instead of looping for ever. Notices and typing never raise."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
from telegram import Bot
from telegram.error import RetryAfter

from bot.core.types import Reply
from bot.telegram.limits import ChatPacer
from bot.telegram.transport import MAX_RETRY_AFTER_TRIES, TelegramTransport
from tests.telegram.fake_bot_api import FakeBotAPI

CHAT = 4242


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI()
    yield server
    server.close()


def run(api: FakeBotAPI, work: Callable[[TelegramTransport], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Bot("123:test", base_url=api.url) as bot:
            await work(TelegramTransport(bot, ChatPacer(0.0)))

    asyncio.run(main())


def test_a_flood_refusal_is_waited_out_and_the_message_sent_once(api: FakeBotAPI) -> None:
    api.floods = 2

    async def work(t: TelegramTransport) -> None:
        await t.send(CHAT, Reply("the answer", markdown=False))

    run(api, work)
    assert api.sent == [(CHAT, "the answer")]
    assert api.send_calls == 3


def test_too_many_flood_refusals_give_up_with_the_error(api: FakeBotAPI) -> None:
    api.floods = MAX_RETRY_AFTER_TRIES

    async def work(t: TelegramTransport) -> None:
        with pytest.raises(RetryAfter):
            await t.send(CHAT, Reply("the answer", markdown=False))

    run(api, work)
    assert api.sent == []
    assert api.send_calls == MAX_RETRY_AFTER_TRIES


def test_a_failed_notice_or_typing_action_never_raises(api: FakeBotAPI) -> None:
    api.floods = MAX_RETRY_AFTER_TRIES

    async def work(t: TelegramTransport) -> None:
        await t.send_plain(CHAT, "you are not on the list")  # flood-refused every time
        await t.typing(CHAT)  # the fake answers sendChatAction with 404

    run(api, work)
    assert api.sent == []
