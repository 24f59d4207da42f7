"""The chat transport interface: how the core shows replies in a channel."""

from __future__ import annotations

from abc import ABC, abstractmethod

from bot.core.types import Reply, SentMessage


class ChatUnreachable(Exception):
    """The channel may not write to this chat: a person who never opened a private chat with
    the bot (Telegram's 403), or blocked it, or a chat that is gone."""


class Transport(ABC):
    """One per channel. ``typing`` is best-effort: a failure must never stop a reply."""

    @abstractmethod
    async def send(self, chat_id: int, reply: Reply) -> SentMessage:
        """Show a reply; returns a handle for later edits."""

    @abstractmethod
    async def edit(self, message: SentMessage, reply: Reply) -> None:
        """Replace a sent message's text and buttons (progressive streaming, progress bars)."""

    async def typing(self, chat_id: int) -> None:
        """Show that an answer is being produced, where the channel can."""
        return None

    async def settle(self, chat_id: int) -> None:
        """Wait until the chat's edits held back for pacing are applied (before an update is
        marked done, so a crash cannot leave the last edit of an answer unsent)."""
        return None

    async def send_document(
        self, chat_id: int, data: bytes, filename: str, caption: str = ""
    ) -> None:
        """Send ``data`` as a file named ``filename``; raises NotImplementedError where the
        channel has no files, ``ChatUnreachable`` where it may not write to that chat. The
        caller keeps each file under the channel's size limit (``bot.core.export_files``)."""
        raise NotImplementedError

    async def send_voice(self, chat_id: int, data: bytes, caption: str = "") -> None:
        """Send a voice note (OGG/Opus bytes); raises NotImplementedError where there is no audio."""
        raise NotImplementedError

    async def send_photo(self, chat_id: int, data: bytes, caption: str = "") -> None:
        """Send a picture (PNG or JPEG bytes); raises NotImplementedError where there are none."""
        raise NotImplementedError


class RecordingTransport(Transport):
    """A test double that keeps what was sent and edited."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, Reply]] = []
        self.edits: list[tuple[SentMessage, Reply]] = []
        self.files: list[tuple[int, str, bytes]] = []  # (chat id, file name, data)
        self.captions: list[str] = []
        self.voices: list[tuple[int, bytes, str]] = []
        self.photos: list[tuple[int, bytes, str]] = []

    async def send(self, chat_id: int, reply: Reply) -> SentMessage:
        self.sent.append((chat_id, reply))
        return SentMessage(chat_id, len(self.sent))

    async def edit(self, message: SentMessage, reply: Reply) -> None:
        self.edits.append((message, reply))

    def shown(self, index: int = -1) -> Reply:
        """What a sent message shows now: its last edit, or what was sent."""
        chat_id, reply = self.sent[index]
        number = index % len(self.sent) + 1
        for message, edited in self.edits:
            if message == SentMessage(chat_id, number):
                reply = edited
        return reply

    async def send_document(
        self, chat_id: int, data: bytes, filename: str, caption: str = ""
    ) -> None:
        self.files.append((chat_id, filename, data))
        self.captions.append(caption)

    async def send_voice(self, chat_id: int, data: bytes, caption: str = "") -> None:
        self.voices.append((chat_id, data, caption))

    async def send_photo(self, chat_id: int, data: bytes, caption: str = "") -> None:
        self.photos.append((chat_id, data, caption))

    @property
    def texts(self) -> list[str]:
        return [r.text for _, r in self.sent]
