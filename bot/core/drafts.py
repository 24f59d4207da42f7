"""Which message an answer streams into, kept durably, so a replayed update finishes it.

An answer is streamed into one message that is edited as the model writes. When the daemon is
killed half-way, the update is replayed at the next start; without a record of that message the
replay would send a second, full answer beside the cut-off one. ``AnswerDrafts`` keeps
(channel, chat, message answered) -> (message sent, streaming|done) in ``answer_drafts``: the
replay edits the cut-off message (or, when it was finished, sends nothing again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.core.types import Incoming, SentMessage
from memory.db import Database

KEEP_S = 7 * 86400  # longer than any update waits in the inbox


@dataclass(frozen=True)
class Draft:
    sent: SentMessage
    done: bool


class AnswerDrafts:
    def __init__(self, db: Database, keep_s: float = KEEP_S) -> None:
        self.db = db
        self.keep_s = keep_s

    async def get(self, msg: Incoming) -> Draft | None:
        if msg.key is None or msg.message_id is None:
            return None
        return await self.db.run(self._get, msg.channel, msg.chat_id, msg.message_id)

    async def started(self, msg: Incoming, sent: SentMessage) -> None:
        """The answer's message was sent (committed before the next piece is streamed)."""
        if msg.key is not None and msg.message_id is not None:
            await self.db.run(
                self._put, msg.channel, msg.chat_id, msg.message_id, sent, "streaming"
            )

    async def finished(self, msg: Incoming, sent: SentMessage) -> None:
        if msg.key is not None and msg.message_id is not None:
            await self.db.run(self._put, msg.channel, msg.chat_id, msg.message_id, sent, "done")

    # -- database thread ------------------------------------------------------------------------
    def _get(self, channel: str, chat_id: int, message_id: int) -> Draft | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT sent_message_id, state FROM answer_drafts"
                " WHERE channel = ? AND chat_id = ? AND source_message_id = ?",
                (channel, chat_id, message_id),
            ).fetchone()
        return Draft(SentMessage(chat_id, int(row[0])), row[1] == "done") if row else None

    def _put(
        self, channel: str, chat_id: int, message_id: int, sent: SentMessage, state: str
    ) -> None:
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO answer_drafts (channel, chat_id, source_message_id, sent_message_id,"
                " state, updated_at) VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE SET"
                " sent_message_id = excluded.sent_message_id, state = excluded.state,"
                " updated_at = excluded.updated_at",
                (channel, chat_id, message_id, sent.message_id, state, now),
            )
            conn.execute("DELETE FROM answer_drafts WHERE updated_at < ?", (now - self.keep_s,))
