"""Whether someone administers a group, asked of Telegram (the fake Bot API on 127.0.0.1): a
failed lookup counts as "not an admin" and is asked again next time, and the memory of answers
is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from telegram import Bot

from bot.telegram.chat_admins import ChatAdmins
from tests.telegram.fake_bot_api import FakeBotAPI

GROUP = -1001


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI()
    yield server
    server.close()


def test_a_failed_lookup_denies_and_is_not_remembered(api: FakeBotAPI) -> None:
    api.statuses = {(GROUP, 1): "administrator"}

    async def run() -> list[bool]:
        bot = Bot("123:test", base_url=api.url)
        await bot.initialize()
        admins = ChatAdmins(bot, ttl_s=300, clock=lambda: 0.0)
        try:
            api.member_error = "Bad Request: chat not found"
            denied = await admins(GROUP, 1)
            api.member_error = None
            return [denied, await admins(GROUP, 1)]
        finally:
            await bot.shutdown()

    assert asyncio.run(run()) == [False, True]  # fails closed, then asks again
    assert api.member_calls == 2


def test_the_remembered_answers_are_bounded(api: FakeBotAPI) -> None:
    api.statuses = {(GROUP, 1): "creator"}

    async def run() -> list[bool]:
        bot = Bot("123:test", base_url=api.url)
        await bot.initialize()
        admins = ChatAdmins(bot, ttl_s=300, max_entries=2, clock=lambda: 0.0)
        try:
            first = await admins(GROUP, 1)
            await admins(GROUP, 2)
            await admins(GROUP, 3)  # pushes the oldest answer (user 1) out
            again = await admins(GROUP, 1)
            return [first, again]
        finally:
            await bot.shutdown()

    assert asyncio.run(run()) == [True, True]
    assert api.member_calls == 4  # user 1 was asked twice: its answer had been evicted
