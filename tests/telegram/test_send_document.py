"""Files to Telegram: ``send_document`` uploads through sendDocument, and /export sends the JSON
(zipped, or in numbered parts, when large). Against a fake Bot API server on 127.0.0.1, since the
emulator has no sendDocument."""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from telegram import Bot

from bot.console import ConsoleTransport
from bot.core.assistant import Assistant
from bot.core.memory_commands import MemoryCommands
from bot.core.types import Incoming, Sender
from bot.daemon.run import all_migrations
from bot.telegram.limits import ChatPacer
from bot.telegram.transport import TelegramTransport
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.health import HealthRegistry
from memory.service import Memory
from memory.settings import MemorySettings
from memory.types import Scope
from tests.telegram.fake_bot_api import FakeBotAPI

pytestmark = pytest.mark.anyio
ANN = Sender(11, "Ann")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    server = FakeBotAPI()
    yield server
    server.close()


@pytest.fixture
async def transport(api: FakeBotAPI) -> AsyncIterator[TelegramTransport]:
    bot = Bot("123:test", base_url=api.url)
    await bot.initialize()
    yield TelegramTransport(bot, ChatPacer(0.0))
    await bot.shutdown()


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[Memory]:
    db = Database.open(tmp_path / "f.db", all_migrations())
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    await memory.start()
    await memory.wait_ready()
    yield memory
    await memory.stop()
    db.close()


async def test_send_document_uploads_the_bytes_with_name_and_caption(
    api: FakeBotAPI, transport: TelegramTransport
) -> None:
    data = bytes(range(256)) * 40
    await transport.send_document(42, data, "notes.bin", caption="Here it is.")
    ((upload),) = api.uploads
    assert (upload.chat_id, upload.filename, upload.data, upload.caption) == (
        42,
        "notes.bin",
        data,
        "Here it is.",
    )


async def _export(memory: Memory, transport: TelegramTransport, part_bytes: int) -> None:
    assistant = Assistant(HealthRegistry())
    MemoryCommands(memory, 4000, part_bytes=part_bytes).register(assistant)
    await assistant.handle(Incoming(ANN.id, ANN, "/export", channel="telegram"), transport)


async def test_export_in_telegram_sends_the_json_as_a_document(
    api: FakeBotAPI, transport: TelegramTransport, memory: Memory
) -> None:
    await memory.add_fact(
        "the wifi password is on the fridge", Scope(ANN.id, ANN.id), source="user"
    )
    await _export(memory, transport, part_bytes=45 * 1024 * 1024)
    ((upload),) = api.uploads
    assert upload.chat_id == ANN.id and upload.filename.endswith(".json")
    texts = [m["text"] for m in json.loads(upload.data)["memories"]]
    assert texts == ["the wifi password is on the fridge"]


async def test_a_large_export_arrives_as_zip_parts_that_join_into_the_json(
    api: FakeBotAPI, transport: TelegramTransport, memory: Memory
) -> None:
    rng = random.Random(7)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=7)) for _ in range(6000)]
    for i in range(60):
        text = f"note {i}: " + " ".join(words[i * 100 : (i + 1) * 100])
        await memory.add_fact(text, Scope(ANN.id, ANN.id), source="user")
    await _export(memory, transport, part_bytes=4096)
    names = [u.filename for u in api.uploads]
    assert len(names) > 1 and names == sorted(names)
    assert all(name.endswith(f".zip.{n:03d}") for n, name in enumerate(names, start=1))
    assert all(len(u.data) <= 4096 for u in api.uploads)
    assert f"part 1 of {len(names)}" in api.uploads[0].caption
    joined = b"".join(u.data for u in api.uploads)
    with zipfile.ZipFile(io.BytesIO(joined)) as archive:
        (inner,) = archive.namelist()
        exported = json.loads(archive.read(inner))
    assert len(exported["memories"]) == 60


async def test_console_writes_the_document_into_its_folder_and_shows_the_path(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    console = ConsoleTransport(out, tmp_path / "exports")
    await console.send_document(0, b'{"a": 1}', "../../escape.json", caption="Your memory.")
    path = tmp_path / "exports" / "escape.json"
    assert path.read_bytes() == b'{"a": 1}' and path.stat().st_mode & 0o777 == 0o600
    assert f"Your memory. Saved to {path}" in out.getvalue()


GROUP = -100500


async def _export_in_group(
    memory: Memory, transport: TelegramTransport, api: FakeBotAPI
) -> list[str]:
    """/export said by Ann in a group; what the group was shown (everyone there sees it)."""
    assistant = Assistant(HealthRegistry())
    MemoryCommands(memory, 4000).register(assistant)
    msg = Incoming(GROUP, ANN, "/export", message_id=9, is_group=True, channel="telegram")
    await assistant.handle(msg, transport)
    return [text for chat, text in api.sent if chat == GROUP]


async def test_export_in_a_group_goes_to_the_person_privately(
    api: FakeBotAPI, transport: TelegramTransport, memory: Memory
) -> None:
    await memory.add_fact("Ann's locker code is 4711", Scope(GROUP, ANN.id), source="user")
    replies = await _export_in_group(memory, transport, api)
    ((upload),) = api.uploads
    assert upload.chat_id == ANN.id  # her private chat with the bot, not the group
    assert [m["text"] for m in json.loads(upload.data)["memories"]] == ["Ann's locker code is 4711"]
    assert upload.caption.startswith(f"Your memory in the group {GROUP}")
    assert replies == ["Ann, I sent your export to you in a private chat."]


async def test_export_in_a_group_without_a_private_chat_says_how_and_shows_no_data(
    api: FakeBotAPI, transport: TelegramTransport, memory: Memory
) -> None:
    await memory.add_fact("Ann's locker code is 4711", Scope(GROUP, ANN.id), source="user")
    api.forbidden.add(ANN.id)  # she never started the bot: Telegram answers 403
    replies = await _export_in_group(memory, transport, api)
    assert api.uploads == []
    (reply,) = replies
    assert "open a private chat with me" in reply and "/export" in reply
    assert "4711" not in reply and "locker" not in reply
