"""Bursts: several messages sent one after another are answered once, by the last.

People forward five messages at once, or type a thought over three short lines; answering each
as it comes gives five answers, the first ones made without what follows. So a plain message
(not a command, a photo, a document or a voice note) is stored and not answered when the next
message already waiting in the chat's inbox is the same person's text (not a command): the
last of the burst is answered with the others among the turns the model sees. A forwarded
message waits up to ``telegram.burst_window_s`` for the rest of its batch to arrive, since a
client sends them as separate updates; typed text waits for nothing, so only messages sent while
an earlier answer was being written are joined. In a group every message is answered as ever.

Nothing is lost: each message of a burst is stored under its own key before its update counts as
done, so a restart in the middle answers from where it was.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.telegram.inbox import Inbox
from memory.db import Database

POLL_S = 0.1  # how often the inbox is looked at while a forward waits for the rest


def continues(update: dict[str, Any], sender_id: int) -> bool:
    """Is this waiting update more of a burst by ``sender_id``: their text message, not a
    command? Only text, which is always answered: a photo, a recording or a file that could not
    be read would leave the burst's earlier messages unanswered."""
    message = update.get("message") or {}
    if (message.get("from") or {}).get("id") != sender_id:
        return False
    text = message.get("text")
    return isinstance(text, str) and bool(text.strip()) and not text.lstrip().startswith("/")


class Bursts:
    def __init__(self, db: Database, inbox: Inbox, window_s: float = 1.0) -> None:
        self.db = db
        self.inbox = inbox
        self.window_s = window_s

    async def continued(self, update_id: int, chat_id: int, sender_id: int, wait: bool) -> bool:
        """Does a later message of the same burst already wait (or, with ``wait``, arrive within
        the window)? A message of someone else, or a command, ends the burst."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.window_s if wait else 0.0)
        while True:
            later = await self.db.run(self.inbox.next_message, update_id, chat_id)
            if later is not None:
                return continues(later, sender_id)
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
