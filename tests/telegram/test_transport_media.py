"""Voice notes and pictures out: TelegramTransport through real PTB against the emulator, and the
console's stand-in (files saved beside exports)."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

from PIL import Image

from bot.console import ConsoleTransport
from bot.telegram.limits import ChatPacer
from bot.telegram.transport import TelegramTransport
from tests.telegram.conftest import Emulator

CHAT = 778


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_voice_and_photo_reach_telegram_as_uploads(emulator: Emulator) -> None:
    token = "9011:media"
    voice = b"OggS" + bytes(range(256)) * 4  # the bytes travel as they are
    photo = png_bytes()

    async def main() -> None:
        from telegram import Bot

        async with Bot(token, base_url=emulator.base_url) as bot:
            transport = TelegramTransport(bot, ChatPacer(0.0))
            await transport.send_voice(CHAT, voice)
            await transport.send_photo(CHAT, photo, caption="Loss curve")

    asyncio.run(main())
    sent = emulator.post("mediaSent", {"token": token})["result"]
    assert [(s["method"], s["chat_id"], s["caption"]) for s in sent] == [
        ("sendVoice", str(CHAT), None),
        ("sendPhoto", str(CHAT), "Loss curve"),
    ]
    assert voice in base64.b64decode(sent[0]["body"])
    assert photo in base64.b64decode(sent[1]["body"])


def test_the_console_saves_voice_and_pictures(tmp_path: Path) -> None:
    out = io.StringIO()
    transport = ConsoleTransport(out, tmp_path)

    async def main() -> None:
        await transport.send_voice(0, b"OggS-audio")
        await transport.send_photo(0, png_bytes(), caption="Usage")
        await transport.send_photo(0, png_bytes())

    asyncio.run(main())
    assert (tmp_path / "voice-1.ogg").read_bytes() == b"OggS-audio"
    assert Image.open(tmp_path / "picture-2.png").format == "PNG"
    lines = out.getvalue().splitlines()
    assert lines[1] == f"Usage Saved to {tmp_path / 'picture-1.png'}"
