"""``/group on|off``: only an admin opens or closes a group, ``off`` stops the bot there at once,
and both survive a restart (the allowed groups live in SQLite, not only in memory).

The real UpdateHandler and AccessControl on SQLite in ``tmp_path`` (tests/telegram/helpers.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from telegram import Update

from bot.core.transport import Transport
from bot.core.types import Incoming
from bot.telegram.access import AccessControl, Role
from bot.telegram.transport import TOPIC, topic_of
from tests.telegram.helpers import ADMIN, ALLOWED, BOT_NAME, Rig, build_rig, message

GROUP = -1002


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return build_rig(tmp_path)


def say(rig: Rig, user: int, text: str, update_id: int, chat_id: int = GROUP) -> None:
    payload = message(user, text, chat_id=chat_id, chat_type="supergroup", update_id=update_id)
    asyncio.run(rig.handler.handle(Update.de_json(payload, None)))


def reloaded(rig: Rig) -> AccessControl:
    """The access lists as a restarted daemon reads them."""
    access = AccessControl(rig.db, [ALLOWED], [ADMIN], invite_ttl_s=3600)
    access.load()
    return access


def test_group_off_silences_the_bot_there_and_survives_a_restart(rig: Rig) -> None:
    say(rig, ADMIN, "/group on", 1)
    say(rig, ALLOWED, f"@{BOT_NAME} first question", 2)
    assert [m.text for m in rig.answerer.seen] == ["first question"]
    assert reloaded(rig).group_allowed(GROUP)

    say(rig, ADMIN, "/group off", 3)
    assert rig.transport.texts[-1] == "I'll stay quiet in this group."
    say(rig, ALLOWED, f"@{BOT_NAME} second question", 4)

    assert [m.text for m in rig.answerer.seen] == ["first question"]  # not answered any more
    assert "admin" in rig.transport.texts[-1]  # told why, once
    assert not reloaded(rig).group_allowed(GROUP)


def test_a_non_admin_cannot_open_or_close_a_group(rig: Rig) -> None:
    say(rig, ALLOWED, "/group on", 1)
    assert not reloaded(rig).group_allowed(GROUP)

    say(rig, ADMIN, "/group on", 2)
    say(rig, ALLOWED, "/group off", 3)
    assert reloaded(rig).group_allowed(GROUP)  # still open
    assert rig.handler.access.role(ALLOWED) is Role.USER


def test_group_needs_on_or_off_and_a_group(rig: Rig) -> None:
    say(rig, ADMIN, "/group on", 1)
    say(rig, ADMIN, "/group maybe", 2)
    assert rig.transport.texts[-1] == "Usage: /group on|off"
    assert reloaded(rig).group_allowed(GROUP)
    payload = message(ADMIN, "/group on", update_id=3)  # a private chat
    asyncio.run(rig.handler.handle(Update.de_json(payload, None)))
    assert rig.transport.texts[-1] == "Send /group on inside the group you want me in."


def test_an_invite_code_made_without_a_key_is_new_each_time(rig: Rig) -> None:
    first, expires = rig.handler.access.create_invite(ADMIN)
    second, _ = rig.handler.access.create_invite(ADMIN)
    assert first != second and expires > 0
    assert rig.handler.access.redeem(
        first.lower(), 555
    )  # read aloud, typed in lower case: still valid
    assert rig.handler.access.role(555) is Role.USER
    assert not rig.handler.access.redeem(first, 556)  # spent
    assert not rig.handler.access.redeem("", 557) and not rig.handler.access.redeem("X" * 65, 557)
    assert reloaded(rig).role(555) is Role.USER and reloaded(rig).role(556) is Role.STRANGER


def test_a_question_in_a_forum_topic_is_answered_in_that_topic(rig: Rig) -> None:
    """Sent while a topic's update is handled, a message goes into that topic (``TOPIC``), not
    the group's General one; another chat's, and the next update's, go where they always did."""
    seen: list[tuple[int | None, int | None]] = []

    async def answer(msg: Incoming, transport: Transport) -> None:
        seen.append((topic_of(msg.chat_id), topic_of(ADMIN)))

    rig.assistant.answer_text = answer
    say(rig, ADMIN, "/group on", 1)
    payload = message(ALLOWED, f"@{BOT_NAME} in the garden topic", GROUP, "supergroup", 2)
    payload["message"].update({"message_thread_id": 77, "is_topic_message": True})
    asyncio.run(rig.handler.handle(Update.de_json(payload, None)))
    say(rig, ALLOWED, f"@{BOT_NAME} in General", 3)
    reply = message(ALLOWED, f"@{BOT_NAME} a reply thread, not a topic", GROUP, "supergroup", 4)
    reply["message"]["message_thread_id"] = 5  # a reply chain's id in a group without topics
    asyncio.run(rig.handler.handle(Update.de_json(reply, None)))
    assert seen == [(77, None), (None, None), (None, None)]
    assert TOPIC.get() is None
