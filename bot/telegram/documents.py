"""Documents in the Telegram channel: checked, downloaded to a temporary file, handed to the core.

The handler calls ``DocumentReader.receive`` only for a message that passed the access, group
and rate-limit checks, so a stranger's file is never downloaded. The size Telegram states is
checked before the download and the bytes after it; the file lives in a temporary directory
for as long as it is read, and only its text stays (in memory, as chunks).
"""

from __future__ import annotations

import asyncio
import mimetypes
import tempfile
from pathlib import Path

from telegram import Bot, Document
from telegram.error import TelegramError

from bot.core.documents import DocumentDesk
from bot.core.transport import Transport
from bot.core.types import Incoming, Reply


def file_name(document: Document) -> str:
    """The name refs will show: the sender's, else one made from the type."""
    name = Path(document.file_name or "").name.strip()
    if name:
        return name
    suffix = mimetypes.guess_extension(document.mime_type or "") or ""
    return f"document{suffix}"


class DocumentReader:
    def __init__(self, bot: Bot, desk: DocumentDesk, fetch_timeout_s: float = 120.0) -> None:
        self.bot = bot
        self.desk = desk
        self.fetch_timeout_s = fetch_timeout_s

    async def receive(
        self, incoming: Incoming, document: Document, question: str, transport: Transport
    ) -> None:
        name = file_name(document)
        limit = self.desk.max_bytes
        if document.file_size and document.file_size > limit:
            await self._say(
                transport,
                incoming.chat_id,
                f"⚠️ {name} is {document.file_size / 1e6:.1f} MB, over the "
                f"{limit / 1e6:g} MB limit for documents. Please send a smaller file.",
            )
            return
        with tempfile.TemporaryDirectory(prefix="familiar-doc-") as folder:
            path = Path(folder) / f"upload{Path(name).suffix.lower()}"
            try:
                file = await self.bot.get_file(document.file_id)
                await asyncio.wait_for(file.download_to_drive(path), self.fetch_timeout_s)
            except (TelegramError, TimeoutError, OSError) as exc:
                await self._say(
                    transport,
                    incoming.chat_id,
                    f"⚠️ I couldn't download {name} from Telegram ({type(exc).__name__}). "
                    "Please send it again.",
                )
                return
            await self.desk.on_file(incoming, path, name, question, transport)

    @staticmethod
    async def _say(transport: Transport, chat_id: int, text: str) -> None:
        await transport.send(chat_id, Reply(text, markdown=False, no_feedback=True))
