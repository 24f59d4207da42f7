"""Bursts: several messages forwarded at once are answered once, by the last.

People forward five messages at once; answering each as it comes gives five answers, the first
ones made without what follows (and the rate limit cut in at the ninth). So a forwarded message
(text; not a photo, a file or a voice note) is stored and not answered when the same person's
next text message (another forward, or what they typed after them: "what do you make of
these?") already waits in the chat's inbox or arrives within ``telegram.burst_window_s``; a
client sends a batch as separate updates. The last of the burst is answered with the others
among the turns the model sees. The comment Telegram sends before forwards (typed in the
forward dialog) joins them when they already wait in the inbox as it is handled; otherwise, and
for every other typed message, each is answered as ever (each question sent while an answer is
being written gets its own). In a group every message is answered.

Nothing is lost: each message of a burst is stored under its own key before its update counts as
done, so a restart in the middle answers from where it was.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.telegram.inbox import Inbox
from memory.db import Database

POLL_S = 0.1  # how often the inbox is looked at while a forward waits for the rest


def continues(update: dict[str, Any], sender_id: int, forwarded: bool = False) -> bool:
    """Is this waiting update more of a burst by ``sender_id``: their text message, not a
    command (``forwarded``: a forwarded one)? Only text, which is always answered: a photo, a
    recording or a file that could not be read would leave the burst's earlier messages
    unanswered."""
    message = update.get("message") or {}
    if (message.get("from") or {}).get("id") != sender_id:
        return False
    if forwarded and not message.get("forward_origin"):
        return False
    text = message.get("text")
    return isinstance(text, str) and bool(text.strip()) and not text.lstrip().startswith("/")


class Bursts:
    def __init__(self, db: Database, inbox: Inbox, window_s: float = 1.0) -> None:
        self.db = db
        self.inbox = inbox
        self.window_s = window_s

    async def continued(self, update_id: int, chat_id: int, sender_id: int) -> bool:
        """After a forward: does a later message of the same burst wait already, or arrive
        within the window? A message of someone else, or a command, ends the burst."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while True:
            later = await self.db.run(self.inbox.next_message, update_id, chat_id)
            if later is not None:
                return continues(later, sender_id)
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_S)

    async def introduces(self, update_id: int, chat_id: int, sender_id: int) -> bool:
        """After typed text: does a forward of the same person wait already? Then the text is
        the comment Telegram sends before the forwards it goes with. Nothing is waited for: a
        forward that comes later finds the comment answered on its own, among its turns."""
        later = await self.db.run(self.inbox.next_message, update_id, chat_id)
        return later is not None and continues(later, sender_id, forwarded=True)
