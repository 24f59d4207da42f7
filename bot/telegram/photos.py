"""Photos in the Telegram channel: the size to fetch, the download, and albums collected.

The handler calls ``PhotoReader.receive`` only for a message that passed the access, group and
rate-limit checks, so a stranger's photo is never downloaded. Telegram offers each photo in
several sizes; the largest whose stated ``file_size`` is within ``media.max_image_bytes`` is
fetched (none within: the refusal names the limit). A single photo is answered at once; so is
a picture sent as a file (a document whose type is an image), which the handler sends here.

An album arrives as separate updates sharing a ``media_group_id``. Its parts are handled one at a
time under the chat's turn lock, so waiting for the rest inside the first part's handler would
wait for ever; instead the first part starts a short timer (``media.album_window_s``) and each
part adds itself; when the timer ends the parts are downloaded and answered once, together (the
caption, which Telegram puts on one of them, is the question). The parts' updates count as done
when collected: a daemon stopped within the window loses that album's answer, not its messages,
and the album is answered outside the chat's turn lock (a message sent right after it may be
answered first). In a group only parts that arrive after an addressed one (the captioned part,
mentioning the bot, which clients send first) join the album.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from loguru import logger
from telegram import Bot, Document, Message, PhotoSize
from telegram.error import TelegramError

from bot.core.photos import PhotoDesk
from bot.core.transport import Transport
from bot.core.types import Incoming, Reply


def pick_size(sizes: Sequence[PhotoSize], max_bytes: int) -> PhotoSize | None:
    """The largest size within the byte limit (a size Telegram states no byte count for is
    taken on trust: its bytes are checked after the download)."""
    fits = [s for s in sizes if (s.file_size or 0) <= max_bytes]
    return max(fits, key=lambda s: s.width * s.height, default=None)


@dataclass
class Album:
    incoming: Incoming
    transport: Transport
    question: str = ""
    parts: list[tuple[int, tuple[PhotoSize, ...]]] = field(default_factory=list)


class PhotoReader:
    def __init__(self, bot: Bot, desk: PhotoDesk, fetch_timeout_s: float = 60.0) -> None:
        self.bot = bot
        self.desk = desk
        self.fetch_timeout_s = fetch_timeout_s
        self._albums: dict[tuple[int, str], Album] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def joins(self, message: Message) -> bool:
        """Is this a further part of an album being collected (checked already with its first)?"""
        group = message.media_group_id
        return bool(group) and (message.chat.id, str(group)) in self._albums

    async def receive(
        self, incoming: Incoming, message: Message, question: str, transport: Transport
    ) -> None:
        group = message.media_group_id
        if not group:
            blobs = await self._download([tuple(message.photo)], incoming.chat_id, transport)
            if blobs is not None:
                await self.desk.on_photos(incoming, blobs, question, transport)
            return
        key = (incoming.chat_id, str(group))
        album = self._albums.get(key)
        if album is None:
            album = self._albums[key] = Album(incoming, transport)
            task = asyncio.create_task(self._finish(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        album.parts.append((message.message_id, tuple(message.photo)))
        if question.strip() and not album.question:
            album.question = question

    async def receive_file(
        self, incoming: Incoming, document: Document, question: str, transport: Transport
    ) -> None:
        """A picture sent as a file (uncompressed): taken like a photo, within the same limit."""
        limit = self.desk.max_bytes
        if document.file_size and document.file_size > limit:
            await _say(transport, incoming.chat_id, _over(document.file_size, limit))
            return
        try:
            data = await self._fetch(document.file_id)
        except (TelegramError, TimeoutError, OSError) as exc:
            await _say(transport, incoming.chat_id, _failed(exc))
            return
        await self.desk.on_photos(incoming, [data], question, transport)

    async def _finish(self, key: tuple[int, str]) -> None:
        await asyncio.sleep(self.desk.settings.album_window_s)
        album = self._albums.pop(key)
        try:
            parts = [sizes for _, sizes in sorted(album.parts, key=lambda p: p[0])]
            blobs = await self._download(parts, album.incoming.chat_id, album.transport)
            if blobs is not None:
                await self.desk.on_photos(album.incoming, blobs, album.question, album.transport)
            await album.transport.settle(album.incoming.chat_id)
        except Exception:  # a background task: nothing above it would log this
            logger.exception("answering an album in chat {} failed", album.incoming.chat_id)

    async def _download(
        self, parts: list[tuple[PhotoSize, ...]], chat_id: int, transport: Transport
    ) -> list[bytes] | None:
        limit = self.desk.max_bytes
        chosen: list[PhotoSize] = []
        for sizes in parts:
            size = pick_size(sizes, limit)
            if size is None:
                smallest = min((s.file_size or 0) for s in sizes) if sizes else 0
                await _say(transport, chat_id, _over(smallest, limit))
                return None
            chosen.append(size)
        try:
            return list(await asyncio.gather(*(self._fetch(s.file_id) for s in chosen)))
        except (TelegramError, TimeoutError, OSError) as exc:
            await _say(transport, chat_id, _failed(exc))
            return None

    async def _fetch(self, file_id: str) -> bytes:
        async def go() -> bytes:
            file = await self.bot.get_file(file_id)
            return bytes(await file.download_as_bytearray())

        return await asyncio.wait_for(go(), self.fetch_timeout_s)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Let albums being collected be answered (at shutdown: those left after
        ``timeout_s`` are cancelled)."""
        tasks = list(self._tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


def _over(size: int, limit: int) -> str:
    return (
        f"⚠️ That photo is {size / 1e6:.1f} MB, over the {limit / 1e6:g} MB limit for images. "
        "Please send a smaller picture."
    )


def _failed(exc: BaseException) -> str:
    return (
        f"⚠️ I couldn't download the photo from Telegram ({type(exc).__name__}). "
        "Please send it again."
    )


async def _say(transport: Transport, chat_id: int, text: str) -> None:
    await transport.send(chat_id, Reply(text, markdown=False, no_feedback=True))
