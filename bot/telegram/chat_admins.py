"""Whether a person administers a Telegram group (``getChatMember``), for the per-chat settings
only group admins may change. Answers are remembered for a few minutes, so a burst of commands
costs one call; a failed lookup counts as "not an admin" and is not remembered."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from loguru import logger
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError

ADMIN_STATUSES = (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


class ChatAdmins:
    def __init__(
        self,
        bot: Any,
        ttl_s: float = 300.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._known: OrderedDict[tuple[int, int], tuple[float, bool]] = OrderedDict()

    async def __call__(self, chat_id: int, user_id: int) -> bool:
        key = (chat_id, user_id)
        known = self._known.get(key)
        if known is not None and self.clock() - known[0] < self.ttl_s:
            return known[1]
        try:
            member = await self.bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            logger.warning(
                "could not tell whether {} administers chat {}: {}", user_id, chat_id, exc
            )
            return False
        is_admin = member.status in ADMIN_STATUSES
        self._known[key] = (self.clock(), is_admin)
        self._known.move_to_end(key)
        while len(self._known) > self.max_entries:
            self._known.popitem(last=False)
        return is_admin
