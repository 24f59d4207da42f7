"""Telling people that their message could not be stored (the disk full, the data directory
read-only), once per message.

The poller does not acknowledge a batch it could not write to the inbox, so Telegram delivers it
again and it is answered once storage works again. Until then the sender would hear nothing; this
tells each known sender once that the message is waiting and why. Strangers hear nothing: the
access rules apply here as everywhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.telegram.access import AccessControl, Role

Send = Callable[[int, str], Awaitable[None]]
_REMEMBERED = 10_000  # update ids kept to tell each sender once; old ones are forgotten


def when_back(fault: str) -> str:
    """When it will work again, in the sender's terms."""
    if "full" in fault:
        return "once space is freed on the server"
    if "read-only" in fault:
        return "once the server's data directory can be written again"
    return "once the server's storage works again"


def notice(fault: str) -> str:
    return (
        f"⚠️ I could not store your message: {fault.split(' (')[0]}. "
        f"I will answer it by myself {when_back(fault)}; no need to send it again."
    )


def unfinished_notice(fault: str) -> str:
    """Said when the message was taken but its answer could not be stored (the disk filled
    while answering): the dispatcher finishes it by itself later."""
    return (
        f"⚠️ I could not finish answering your message: {fault.split(' (')[0]}. "
        f"I will answer it by myself {when_back(fault)}; no need to send it again."
    )


class UnstoredNotices:
    def __init__(self, access: AccessControl, send: Send) -> None:
        self.access = access
        self.send = send
        self._told: dict[int, None] = {}  # insertion-ordered set of update ids

    async def tell(self, updates: list[dict[str, Any]], fault: str) -> int:
        """Tell the sender of each new message in ``updates``; returns how many were told."""
        told = 0
        for update in updates:
            update_id = update.get("update_id")
            message = update.get("message")
            if not isinstance(update_id, int) or update_id in self._told:
                continue
            if not isinstance(message, dict):
                continue
            sender = (message.get("from") or {}).get("id")
            chat = (message.get("chat") or {}).get("id")
            if not isinstance(sender, int) or not isinstance(chat, int):
                continue
            if self.access.role(sender) is Role.STRANGER:
                continue
            self._told[update_id] = None
            if len(self._told) > _REMEMBERED:
                del self._told[next(iter(self._told))]
            await self.send(chat, notice(fault))
            told += 1
        return told
