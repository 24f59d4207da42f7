"""What the admins hear when an update is dropped: whether its sender was told."""

from __future__ import annotations

import asyncio

from bot.telegram.reporting import ErrorReporter

ADMIN = 1


def sent_after(**kwargs: object) -> list[tuple[int, str]]:
    sent: list[tuple[int, str]] = []

    async def notify(chat_id: int, text: str) -> None:
        sent.append((chat_id, text))

    asyncio.run(ErrorReporter(notify, [ADMIN]).gave_up(7, 5, **kwargs))  # type: ignore[arg-type]
    return sent


def test_an_allowed_senders_drop_tells_them_and_says_so_to_the_admins() -> None:
    sent = sent_after(chat_id=42, user_id=42)
    assert [chat for chat, _ in sent] == [42, ADMIN]
    assert "The sender was told." in sent[1][1]


def test_a_strangers_drop_is_not_told_to_them_and_the_admins_hear_that() -> None:
    sent = sent_after(chat_id=666, user_id=666, tell_sender=False, stranger=True)
    assert [chat for chat, _ in sent] == [ADMIN]
    assert "not an allowed user and was not told" in sent[0][1]
    assert "The sender was told" not in sent[0][1]


def test_a_drop_without_a_chat_says_the_sender_could_not_be_told() -> None:
    sent = sent_after(chat_id=None, user_id=None)
    assert [chat for chat, _ in sent] == [ADMIN]
    assert "The sender could not be told." in sent[0][1]
