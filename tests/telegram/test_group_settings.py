"""Per-chat settings in a group (/think on|off, /persona, /train optin) are for the group's admins
and Familiar's admins; everyone else in the group gets a refusal and the setting stays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from telegram import Bot, Update

from bot.core.commands import Command
from bot.core.types import Incoming, Reply, Sender
from bot.telegram.chat_admins import ChatAdmins
from tests.core_graph import Graph, core_graph
from tests.telegram.fake_bot_api import FakeBotAPI
from tests.telegram.helpers import ADMIN, ALLOWED, build_rig, message

GROUP = -1001
MEMBER = Sender(31, "Member")
GROUP_ADMIN = Sender(32, "Owner of the group", is_chat_admin=True)
FAMILIAR_ADMIN = Sender(33, "Root", is_admin=True)
REFUSED = "In a group only an admin can change this."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def graph(data_dir: Path) -> AsyncIterator[Graph]:
    async with core_graph(data_dir) as built:
        yield built


async def _mode(graph: Graph) -> str:
    from bot.core.chat_modes import SqliteChatModes

    return await SqliteChatModes(graph.db).get(GROUP)


@pytest.mark.anyio
async def test_a_group_member_cannot_turn_think_on_for_everyone(graph: Graph) -> None:
    async def say(sender: Sender, text: str) -> str:
        msg = Incoming(GROUP, sender, text, is_group=True, channel="telegram")
        await graph.services.assistant.handle(msg, graph.transport)
        return graph.transport.texts[-1]

    assert await say(MEMBER, "/think on") == REFUSED
    assert await _mode(graph) == "single"
    assert await say(MEMBER, "/persona default") == REFUSED
    assert await say(MEMBER, "/train optin on") == REFUSED
    assert (await say(MEMBER, "/persona")).startswith("Persona in this chat")  # looking is fine
    assert (await say(GROUP_ADMIN, "/think on")).startswith("From now on I answer every message")
    assert await _mode(graph) == "think"
    assert await say(MEMBER, "/think off") == REFUSED
    assert await _mode(graph) == "think"
    assert (await say(FAMILIAR_ADMIN, "/think off")).startswith("From now on")
    assert await _mode(graph) == "single"
    # In a private chat the chat is the person's own.
    await graph.services.assistant.handle(
        Incoming(MEMBER.id, MEMBER, "/think on", channel="telegram"), graph.transport
    )
    assert graph.transport.texts[-1].startswith("From now on")


def test_the_telegram_handler_marks_group_admins_from_getchatmember(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    asked: list[tuple[int, int]] = []

    async def chat_admin(chat_id: int, user_id: int) -> bool:
        asked.append((chat_id, user_id))
        return user_id == ALLOWED

    rig.handler.chat_admin = chat_admin
    seen: list[Sender] = []

    async def probe(msg: Incoming, args: str, transport: object) -> Reply:
        seen.append(msg.sender)
        return Reply("ok", markdown=False)

    rig.assistant.commands.add(Command("probe", "who is asking", probe))
    asyncio.run(rig.db.run(rig.handler.access.set_group, GROUP, True, ADMIN))
    rig.handler.access.load()
    for n, (user, text) in enumerate(
        [(ALLOWED, "/probe"), (ADMIN, "/probe"), (ALLOWED, f"@{rig.handler.me.username} hi")], 1
    ):
        payload = message(user, text, chat_id=GROUP, chat_type="supergroup", update_id=n)
        asyncio.run(rig.handler.handle(Update.de_json(payload, None)))
    assert [(s.id, s.is_chat_admin, s.is_admin) for s in seen] == [
        (ALLOWED, True, False),
        (ADMIN, False, True),
    ]
    assert asked == [(GROUP, ALLOWED)]  # Familiar's admins and plain messages cost no lookup


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI()
    yield server
    server.close()


@pytest.mark.anyio
async def test_chat_admins_asks_telegram_once_per_ttl(api: FakeBotAPI) -> None:
    api.statuses = {(GROUP, 1): "administrator", (GROUP, 2): "creator", (GROUP, 3): "member"}
    bot = Bot("123:test", base_url=api.url)
    await bot.initialize()
    now = [0.0]
    admins = ChatAdmins(bot, ttl_s=300, clock=lambda: now[0])
    try:
        assert [await admins(GROUP, u) for u in (1, 2, 3, 4)] == [True, True, False, False]
        assert await admins(GROUP, 1) and api.member_calls == 4
        now[0] += 301
        assert await admins(GROUP, 1) and api.member_calls == 5
    finally:
        await bot.shutdown()
