"""A bot core wired for handler tests: real SQLite, real Assistant and Feedback, a recording transport."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from bot.core.assistant import Assistant
from bot.core.feedback import Feedback
from bot.core.schema import migrations
from bot.core.transport import RecordingTransport, Transport
from bot.core.types import Incoming, Reply
from bot.telegram.access import AccessControl
from bot.telegram.handlers import BotIdentity, UpdateHandler
from bot.telegram.limits import TokenBucket
from bot.telegram.reporting import ErrorReporter
from bot.telegram.voice import VoiceReader
from memory.db import Database
from memory.health import HealthRegistry

ALLOWED, ADMIN = 100, 200
BOT_ID, BOT_NAME = 666, "FamiliarTestBot"


class CountingAnswerer:
    """Stands in for the LLM-backed answerer: records what reached it, answers with a fixed text."""

    def __init__(self) -> None:
        self.seen: list[Incoming] = []

    async def __call__(self, msg: Incoming, transport: Transport) -> None:
        self.seen.append(msg)
        await transport.send(msg.chat_id, Reply(f"answer to: {msg.text}"))


@dataclass
class Rig:
    db: Database
    assistant: Assistant
    feedback: Feedback
    handler: UpdateHandler
    transport: RecordingTransport
    answerer: CountingAnswerer
    callbacks: list[tuple[str, str]] = field(default_factory=list)

    def count(self, table: str) -> int:
        with self.db.read() as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def build_rig(tmp_path: Path, voice: VoiceReader | None = None) -> Rig:
    db = Database.open(tmp_path / "bot.db", [migrations])
    assistant = Assistant(HealthRegistry())
    answerer = CountingAnswerer()
    assistant.answer_text = answerer
    feedback = Feedback(db)
    asyncio.run(feedback.load_key())
    feedback.install(assistant)
    transport = RecordingTransport()
    access = AccessControl(db, [ALLOWED], [ADMIN], invite_ttl_s=3600)
    access.load()
    callbacks: list[tuple[str, str]] = []

    async def answer_callback(query_id: str, text: str) -> None:
        callbacks.append((query_id, text))

    async def notify(chat_id: int, text: str) -> None:
        await transport.send(chat_id, Reply(text, markdown=False))

    handler = UpdateHandler(
        db,
        assistant,
        transport,
        access,
        ErrorReporter(notify, [ADMIN]),
        answer_callback,
        TokenBucket(1000, 1000),
        voice=voice,
    )
    handler.me = BotIdentity(BOT_ID, BOT_NAME)
    handler.register_commands()
    return Rig(db, assistant, feedback, handler, transport, answerer, callbacks)


def message(
    user_id: int,
    text: str,
    chat_id: int | None = None,
    chat_type: str = "private",
    update_id: int = 1,
    reply_to: dict | None = None,
) -> dict:
    msg: dict = {
        "message_id": update_id,
        "date": 1_700_000_000,
        "text": text,
        "from": {"id": user_id, "is_bot": False, "first_name": "U"},
        "chat": {"id": chat_id if chat_id is not None else user_id, "type": chat_type},
    }
    if reply_to:
        msg["reply_to_message"] = reply_to
    return {"update_id": update_id, "message": msg}


def callback(
    user_id: int,
    data: str,
    chat_id: int | None = None,
    message_id: int = 1,
    chat_type: str = "private",
    update_id: int = 1,
) -> dict:
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"q{update_id}",
            "chat_instance": "1",
            "data": data,
            "from": {"id": user_id, "is_bot": False, "first_name": "U"},
            "message": {
                "message_id": message_id,
                "date": 1_700_000_000,
                "chat": {"id": chat_id if chat_id is not None else user_id, "type": chat_type},
            },
        },
    }


def voice_message(
    user_id: int,
    file_id: str,
    size: int,
    duration: int = 3,
    chat_type: str = "private",
    update_id: int = 1,
    caption: str | None = None,
) -> dict:
    """A voice note update (OGG/Opus, as Telegram clients record them)."""
    payload = message(user_id, "", chat_type=chat_type, update_id=update_id)
    msg = payload["message"]
    del msg["text"]
    msg["voice"] = {
        "file_id": file_id,
        "file_unique_id": f"u{file_id}",
        "duration": duration,
        "mime_type": "audio/ogg",
        "file_size": size,
    }
    if caption is not None:
        msg["caption"] = caption
    return payload
