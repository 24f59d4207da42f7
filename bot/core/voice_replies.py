"""Spoken answers: ``/voice on|off`` per chat; a voice note is then answered with one as well.

The text answer always comes first and stands on its own: the voice note is read from it once it
is complete (``AnswerCapture`` sees what the answerer sent), synthesised off the event loop, and
sent after it. Any failure of speech (engine missing, Telegram refusing the audio) is logged and
costs the person nothing but the audio.
"""

from __future__ import annotations

from loguru import logger

from agents.voice.tts import Speaker
from bot.core.assistant import Assistant
from bot.core.commands import Command
from bot.core.transport import Transport
from bot.core.types import Incoming, Reply, SentMessage
from memory.db import Database


class AnswerCapture(Transport):
    """Passes everything through to ``inner`` and remembers the answer's final text: the last
    text sent or edited in that is an answer (not a status line or an error)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.answer = ""

    def _see(self, reply: Reply) -> None:
        if not reply.no_feedback and reply.text.strip():
            self.answer = reply.text

    async def send(self, chat_id: int, reply: Reply) -> SentMessage:
        sent = await self.inner.send(chat_id, reply)
        self._see(reply)
        return sent

    async def edit(self, message: SentMessage, reply: Reply) -> None:
        await self.inner.edit(message, reply)
        self._see(reply)

    async def typing(self, chat_id: int) -> None:
        await self.inner.typing(chat_id)

    async def send_document(
        self, chat_id: int, data: bytes, filename: str, caption: str = ""
    ) -> None:
        await self.inner.send_document(chat_id, data, filename, caption)

    async def send_voice(self, chat_id: int, data: bytes, caption: str = "") -> None:
        await self.inner.send_voice(chat_id, data, caption)

    async def send_photo(self, chat_id: int, data: bytes, caption: str = "") -> None:
        await self.inner.send_photo(chat_id, data, caption)


class VoiceReplies:
    def __init__(self, db: Database, speaker: Speaker) -> None:
        self.db = db
        self.speaker = speaker

    def register(self, assistant: Assistant) -> None:
        assistant.commands.add(
            Command(
                "voice",
                "Answer voice notes with a voice note too (/voice on|off)",
                self.command,
                usage="/voice on|off",
            )
        )

    async def command(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        choice = args.strip().lower()
        if choice not in ("on", "off"):
            state = "on" if await self.enabled(msg.chat_id) else "off"
            return Reply(f"Spoken answers are {state} here. Usage: /voice on|off", markdown=False)
        await self.db.run(self._set, msg.chat_id, choice == "on")
        if choice == "on":
            return Reply(
                f"I'll answer your voice notes with a voice note as well ({self.speaker.name}).",
                markdown=False,
            )
        return Reply("I'll answer voice notes in text only.", markdown=False)

    async def enabled(self, chat_id: int) -> bool:
        return await self.db.run(self._get, chat_id)

    def _get(self, chat_id: int) -> bool:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT voice_replies FROM chat_settings WHERE chat_id = ?", (chat_id,)
            ).fetchone()
        return bool(row and row[0])

    def _set(self, chat_id: int, on: bool) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO chat_settings (chat_id, voice_replies) VALUES (?, ?)"
                " ON CONFLICT (chat_id) DO UPDATE SET voice_replies = excluded.voice_replies",
                (chat_id, int(on)),
            )

    async def answer(self, msg: Incoming, assistant: Assistant, transport: Transport) -> None:
        """Have ``assistant`` answer a transcript; then, where /voice is on, speak the answer."""
        if not await self.enabled(msg.chat_id):
            await assistant.handle(msg, transport)
            return
        capture = AnswerCapture(transport)
        await assistant.handle(msg, capture)
        await self.speak(msg.chat_id, capture.answer, transport)

    async def speak(self, chat_id: int, text: str, transport: Transport) -> bool:
        """Send ``text`` as a voice note; False (logged) when it could not be."""
        if not text.strip():
            return False
        try:
            audio = await self.speaker.voice_note(text)
            await transport.send_voice(chat_id, audio)
        except Exception:  # the text answer stands; the audio is a bonus
            logger.opt(exception=True).warning("spoken answer in chat {} failed", chat_id)
            return False
        return True
