"""The per-chat answer mode ("answer everything in three passes"), kept in SQLite."""

from __future__ import annotations

from typing import Literal

from memory.db import Database

Mode = Literal["single", "think", "review"]


class SqliteChatModes:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _get(self, chat_id: int) -> Mode:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT answer_mode FROM chat_settings WHERE chat_id = ?", (chat_id,)
            ).fetchone()
        return row[0] if row and row[0] in ("single", "think", "review") else "single"

    def _set(self, chat_id: int, mode: Mode) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO chat_settings (chat_id, answer_mode) VALUES (?, ?)"
                " ON CONFLICT (chat_id) DO UPDATE SET answer_mode = excluded.answer_mode",
                (chat_id, mode),
            )

    async def get(self, chat_id: int) -> Mode:
        return await self.db.run(self._get, chat_id)

    async def set(self, chat_id: int, mode: Mode) -> None:
        await self.db.run(self._set, chat_id, mode)
