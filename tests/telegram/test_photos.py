"""Photos in the Telegram channel: checked, downloaded, kept, described, answered with vision.

The handler tests run the real ``UpdateHandler`` with a PTB ``Bot`` pointed at the emulator
(photos served through its ``/putFile`` hook, then ``getFile`` and the download), real memory on
SQLite in tmp_path, a ``FakeProvider`` (the hand-written provider double) for the one-line
description, and the handler rig's recording answerer, which shows what reached the assistant.
The end-to-end test runs the daemon with the real anthropic provider against the stub model.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from telegram import Bot, Update

from agents.llm import LLM
from agents.providers.base import Capabilities, ImageBlock, Provider, TextBlock
from agents.providers.fake import FakeProvider
from agents.providers.openai import OpenAICompatibleProvider
from bot.core.documents import DocumentDesk
from bot.core.photos import DESCRIBE, NO_VISION, NO_VISION_NO_CAPTION, PhotoDesk
from bot.telegram.photos import PhotoReader
from bot.telegram.voice import file_base_url
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.fetch import FetchLimits
from memory.images import ImageStore
from memory.schema import migrations as memory_migrations
from memory.service import Memory
from memory.settings import MediaSettings, MemorySettings
from tests.memory.imagefiles import make_jpeg, make_png, png_bomb
from tests.stubs.anthropic_stub import Reply as StubReply
from tests.stubs.anthropic_stub import llm_stub
from tests.telegram.conftest import VENV_BIN, Emulator
from tests.telegram.helpers import ALLOWED, Rig, build_rig, message

STRANGER = 4343


def photo_message(
    user_id: int,
    sizes: list[tuple[str, int, int, int]],
    caption: str | None = None,
    update_id: int = 1,
    media_group_id: str | None = None,
) -> dict:
    """A photo update; ``sizes`` are (file id, width, height, bytes), smallest first."""
    payload = message(user_id, "", update_id=update_id)
    msg = payload["message"]
    del msg["text"]
    msg["photo"] = [
        {"file_id": f, "file_unique_id": f"u{f}", "width": w, "height": h, "file_size": n}
        for f, w, h, n in sizes
    ]
    if caption is not None:
        msg["caption"] = caption
    if media_group_id is not None:
        msg["media_group_id"] = media_group_id
    return payload


class PhotoRig:
    def __init__(
        self,
        tmp_path: Path,
        emulator: Emulator,
        token: str,
        vision: bool = True,
        provider: Provider | None = None,
        **media: object,
    ) -> None:
        self.emulator, self.token = emulator, token
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.bot = Bot(
            token, base_url=emulator.base_url, base_file_url=file_base_url(emulator.base_url)
        )
        self.rig: Rig = build_rig(tmp_path)
        self.db = Database.open(tmp_path / "memory.db", [memory_migrations])
        self.memory = Memory(self.db, HashingEmbedder(), MemorySettings(), tmp_path / "i")
        self.memory.warm_sync()
        self.provider = FakeProvider(capabilities=Capabilities(vision=vision))
        llm = LLM(provider or self.provider)
        self.store = ImageStore(tmp_path / "images")
        settings = MediaSettings(**{"album_window_s": 0.3, **media})  # type: ignore[arg-type]
        self.desk = PhotoDesk(self.memory, self.store, self.rig.assistant, llm, settings)
        self.reader = PhotoReader(self.bot, self.desk)
        self.rig.handler.photos = self.reader

    def run(self, *payloads: dict) -> None:
        async def go() -> None:
            async with self.bot:
                for payload in payloads:
                    await self.rig.handler.handle(Update.de_json(payload, self.bot))
                await self.reader.drain()
            await self.memory.stop()

        asyncio.run(go())

    def put(self, file_id: str, data: bytes) -> int:
        self.emulator.put_file(self.token, file_id, data)
        return len(data)

    def fetched(self) -> list[str]:
        return [r["fileId"] for r in self.emulator.file_requests(self.token) if r.get("fileId")]

    def turns(self) -> list[tuple[str, str | None]]:
        with self.db.read() as conn:
            return conn.execute(
                "SELECT text, meta FROM memories WHERE kind = 'message' ORDER BY id"
            ).fetchall()


@pytest.fixture
def make_rig(
    tmp_path: Path, emulator: Emulator, request: pytest.FixtureRequest
) -> Iterator[object]:
    rigs: list[PhotoRig] = []

    def make(**kw: object) -> PhotoRig:
        token = f"7{abs(hash(request.node.name)) % 10**8}{len(rigs)}:photos"
        rig = PhotoRig(tmp_path / str(len(rigs)), emulator, token, **kw)  # type: ignore[arg-type]
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.db.close()


def test_a_photo_with_a_caption_reaches_the_model_as_an_image_with_its_description(
    make_rig,
) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(max_image_bytes=50_000)
    small, large = make_jpeg(32, 24), make_jpeg(640, 480, (30, 200, 30))
    huge = 60_000  # stated over the limit: never fetched
    rig.put("p-small", small)
    rig.put("p-large", large)
    rig.provider.script("A green rectangle on its own.")
    sizes = [("p-small", 32, 24, len(small)), ("p-large", 640, 480, len(large))]
    rig.run(photo_message(ALLOWED, [*sizes, ("p-huge", 1280, 960, huge)], "What colour?"))

    assert rig.fetched() == ["p-large"]  # the largest size within the limit, and only it
    [described] = rig.provider.requests
    [ask] = described.messages
    assert ask["content"][0] == ImageBlock(large, "image/jpeg")
    assert ask["content"][-1] == TextBlock(DESCRIBE)
    [seen] = rig.rig.answerer.seen
    assert seen.images == (ImageBlock(large, "image/jpeg"),)
    assert seen.text == "What colour?\n\n[photo: A green rectangle on its own.]"
    sha = hashlib.sha256(large).hexdigest()
    assert seen.meta["photos"] == [sha]
    assert seen.meta["photo_description"] == "A green rectangle on its own."
    [path] = rig.store.files()
    assert path.name == f"{sha}.jpg" and path.read_bytes() == large


def test_a_photo_without_a_caption_gets_a_short_default_question(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    png = make_png()
    rig.provider.script("A blue square.")
    rig.run(photo_message(ALLOWED, [("q", 32, 32, rig.put("q", png))]))
    [seen] = rig.rig.answerer.seen
    assert seen.text == "What is in this photo?\n\n[photo: A blue square.]"
    assert seen.images == (ImageBlock(png, "image/png"),)


def test_an_album_is_answered_once_with_all_its_images(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    reds = [make_jpeg(40, 30, (200, 10 * n, 10)) for n in range(3)]
    for n, data in enumerate(reds):
        rig.put(f"a{n}", data)
    rig.provider.script("Three red cards.")
    rig.run(
        *(
            photo_message(
                ALLOWED,
                [(f"a{n}", 40, 30, len(reds[n]))],
                "Which is darkest?" if n == 0 else None,
                update_id=10 + n,
                media_group_id="album-1",
            )
            for n in range(3)
        )
    )
    [seen] = rig.rig.answerer.seen
    assert seen.images == tuple(ImageBlock(d, "image/jpeg") for d in reds)
    assert seen.text == "Which is darkest?\n\n[3 photos: Three red cards.]"
    assert len(rig.provider.requests) == 1  # one description for the album
    assert len(rig.store.files()) == 3


def test_a_replayed_photo_is_not_described_again(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    data = make_jpeg()
    stored = "What is this?\n\n[photo: A red square.]"
    # The daemon stopped after storing the turn of message 7; Telegram delivers it again.
    asyncio.run(rig.memory.store_turn(ALLOWED, ALLOWED, "user", stored, telegram_message_id=7))
    rig.run(photo_message(ALLOWED, [("r", 64, 48, rig.put("r", data))], "What is this?", 7))
    assert rig.provider.requests == []
    [seen] = rig.rig.answerer.seen
    assert seen.text == stored and seen.images == (ImageBlock(data, "image/jpeg"),)


def test_a_picture_sent_as_a_file_is_taken_like_a_photo(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(max_image_bytes=100_000)
    png = make_png(120, 80)
    payload = message(ALLOWED, "", update_id=1)
    del payload["message"]["text"]
    payload["message"]["caption"] = "Read the chart"
    payload["message"]["document"] = {
        "file_id": "shot",
        "file_unique_id": "ushot",
        "file_name": "screenshot.png",
        "mime_type": "image/png",
        "file_size": rig.put("shot", png),
    }
    big = message(ALLOWED, "", update_id=2)
    del big["message"]["text"]
    big["message"]["document"] = {**payload["message"]["document"], "file_size": 200_000}
    rig.provider.script("A blue chart.")
    rig.run(payload, big)
    [seen] = rig.rig.answerer.seen
    assert seen.images == (ImageBlock(png, "image/png"),)
    assert seen.text == "Read the chart\n\n[photo: A blue chart.]"
    assert rig.fetched() == ["shot"]  # the one over the limit was not downloaded
    assert "over the 0.1 MB limit for images" in rig.rig.transport.texts[-1]


def test_a_photo_captioned_with_a_link_is_about_the_photo(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    desk = DocumentDesk(rig.memory, rig.rig.assistant, FetchLimits(allow_private=True))
    desk.register()  # links are fetched in front of the answerer, as in the daemon
    data = make_jpeg()
    rig.provider.script("A page of a website.")
    caption = "http://127.0.0.1:9/article"
    rig.run(photo_message(ALLOWED, [("l", 64, 48, rig.put("l", data))], caption))
    [seen] = rig.rig.answerer.seen
    assert seen.images == (ImageBlock(data, "image/jpeg"),) and seen.attachment == ""
    assert seen.text.startswith(caption)
    assert not any("Reading" in t or "couldn't fetch" in t for t in rig.rig.transport.texts)


def test_an_openai_compatible_model_gets_the_photo_as_a_data_url(make_rig) -> None:  # type: ignore[no-untyped-def]
    with llm_stub() as stub:
        stub.script(StubReply("A yellow square."))
        rig = make_rig(provider=OpenAICompatibleProvider("local-vl", base_url=stub.openai_url))
        data = make_png(40, 40, (250, 230, 0))
        rig.run(photo_message(ALLOWED, [("o", 40, 40, rig.put("o", data))], "Colour?"))
        [body] = stub.bodies("/v1/chat/completions")
    parts = body["messages"][-1]["content"]
    [url] = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    head, _, encoded = url.partition(",")
    assert head == "data:image/png;base64" and base64.b64decode(encoded) == data
    [seen] = rig.rig.answerer.seen
    assert seen.text == "Colour?\n\n[photo: A yellow square.]"


def test_a_disk_that_fails_gets_a_clear_answer_and_no_model_call(make_rig, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the images folder should be")
    rig.store.root = blocker
    rig.run(photo_message(ALLOWED, [("d", 64, 48, rig.put("d", make_jpeg()))], "hi"))
    assert rig.rig.transport.texts == [
        "⚠️ Keeping the photo failed on my side; the details are in the log."
    ]
    assert rig.provider.requests == [] and rig.rig.answerer.seen == []


def test_a_strangers_photo_is_never_downloaded(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig()
    data = make_jpeg()
    rig.run(photo_message(STRANGER, [("s1", 64, 48, rig.put("s1", data))], "hi"))
    assert rig.fetched() == []
    assert rig.rig.answerer.seen == [] and rig.provider.requests == []
    assert rig.store.files() == []
    assert "private assistant" in rig.rig.transport.texts[0]


def test_bad_images_get_a_clear_answer_and_nothing_is_kept(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(max_image_bytes=100_000)
    fake = b"%PDF-1.4 not a picture at all"
    bomb = png_bomb()
    rig.run(
        photo_message(ALLOWED, [("fake", 64, 48, rig.put("fake", fake))], "look", update_id=1),
        photo_message(ALLOWED, [("bomb", 640, 480, rig.put("bomb", bomb))], "look", update_id=2),
        photo_message(ALLOWED, [("big", 4000, 3000, 5_000_000)], "look", update_id=3),
    )
    texts = rig.rig.transport.texts
    assert texts[0] == (
        "⚠️ I couldn't take that photo: it is not an image I can read. Please send a JPEG, PNG or "
        "WebP."
    )
    assert "decompression bomb" in texts[1]
    assert texts[2] == (
        "⚠️ That photo is 5.0 MB, over the 0.1 MB limit for images. Please send a smaller picture."
    )
    assert "big" not in rig.fetched()
    assert rig.rig.answerer.seen == [] and rig.provider.requests == []
    assert rig.store.files() == [] and rig.turns() == []


def test_without_vision_it_says_so_and_keeps_the_caption(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = make_rig(vision=False)
    data = make_jpeg()
    size = rig.put("nv", data)
    rig.run(
        photo_message(ALLOWED, [("nv", 64, 48, size)], "Receipt from the bakery", update_id=1),
        photo_message(ALLOWED, [("nv", 64, 48, size)], update_id=2),
    )
    assert rig.rig.transport.texts == [NO_VISION, NO_VISION_NO_CAPTION]
    assert rig.provider.requests == [] and rig.rig.answerer.seen == []
    [(text, meta)] = rig.turns()
    assert text == "Receipt from the bakery\n\n[photo, not seen]"
    sha = hashlib.sha256(data).hexdigest()
    assert f'"photos": ["{sha}"]' in (meta or "")
    assert [p.name for p in rig.store.files()] == [f"{sha}.jpg"]


def _images(body: dict) -> list[dict]:
    return [
        b
        for m in body["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "image"
    ]


def _text(body: dict) -> str:
    last = body["messages"][-1]["content"]
    return last if isinstance(last, str) else " ".join(b["text"] for b in last if "text" in b)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_the_daemon_sees_a_photo_keeps_it_recalls_it_and_forgets_it(
    emulator: Emulator, daemon
) -> None:  # type: ignore[no-untyped-def]
    ann = 5301
    receipt = make_jpeg(320, 240, (240, 220, 180))
    cat = make_png(200, 150, (90, 90, 90))
    described = "A bakery receipt from Maison Kayser for 12.40 euros, stamped paid."
    with llm_stub() as stub:
        stub.script(
            StubReply(described),
            StubReply("Yes, it is stamped paid."),
            StubReply("12.40 euros."),
            StubReply("A grey cat asleep on a sofa."),
            StubReply("A grey cat."),
        )
        env = {
            "FAMILIAR_LLM__PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": stub.url,
            "ANTHROPIC_API_KEY": "test",
            "FAMILIAR_LLM__FACT_EXTRACTION_EVERY": "0",  # no extra call taking a scripted reply
        }
        run, token = daemon(env_extra=env, allowed_users=str(ann))
        emulator.put_file(token, "receipt", receipt)
        emulator.put_file(token, "cat", cat)
        emulator.say_photo(token, ann, [("receipt", 320, 240, len(receipt))], "Is this paid?")
        run.wait_for("SELECT id FROM messages WHERE role = 'assistant'", lambda r: len(r) >= 1, 60)
        emulator.say(token, ann, "How much was the Maison Kayser receipt?")
        run.wait_for("SELECT id FROM messages WHERE role = 'assistant'", lambda r: len(r) >= 2, 60)
        emulator.say_photo(token, ann, [("cat", 200, 150, len(cat))])
        run.wait_for("SELECT id FROM messages WHERE role = 'assistant'", lambda r: len(r) >= 3, 60)
        bodies = stub.bodies()
        images = run.data_dir / "images"
        kept = images / f"{hashlib.sha256(receipt).hexdigest()}.jpg"
        cat_file = images / f"{hashlib.sha256(cat).hexdigest()}.png"
        assert kept.read_bytes() == receipt and cat_file.read_bytes() == cat
        rows = run.query("SELECT id, text FROM memories WHERE meta LIKE '%\"photos\"%' ORDER BY id")
        [(_, text), (cat_row, _)] = rows
        emulator.say(token, ann, f"/forget {cat_row}")
        deadline = time.monotonic() + 30
        while cat_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = run.log_text()
        run.stop()

    # The description call, then the answer: each with the photo as an Anthropic image block.
    assert len(bodies) == 5, log[-3000:]
    for body in bodies[:2]:
        [image] = _images(body)
        assert image["source"]["type"] == "base64"
        assert image["source"]["media_type"] == "image/jpeg"
        assert base64.b64decode(image["source"]["data"]) == receipt
    assert "one line" in _text(bodies[0])
    assert _text(bodies[1]).startswith("Is this paid?")
    # Stored with the turn: the caption and what the photo showed; later it goes as text only.
    assert text == f"Is this paid?\n\n[photo: {described}]"
    assert any(described in str(m["content"]) for m in bodies[2]["messages"])
    assert _images(bodies[2]) == []
    assert _text(bodies[4]).startswith("What is in this photo?")  # no caption: the default
    assert not cat_file.exists(), "/forget of the photo's row deletes its file"
    assert kept.exists(), "the other photo's file stays"
    # Recalled by what it showed (the caption says nothing of a bakery): memory search finds it.
    found = subprocess.run(
        [str(VENV_BIN / "familiar"), "memory", "search", "bakery receipt Maison Kayser"]
        + ["--chat", str(ann), "--json"],
        env=run.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and hits[0]["text"] == text


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_the_daemon_answers_an_album_once_with_all_its_photos(emulator: Emulator, daemon) -> None:  # type: ignore[no-untyped-def]
    ann = 5302
    parts = [make_jpeg(80, 60, (20 * n, 100, 100)) for n in range(1, 4)]
    with llm_stub() as stub:
        stub.script(StubReply("Three teal swatches."), StubReply("The third is lightest."))
        env = {
            "FAMILIAR_LLM__PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": stub.url,
            "ANTHROPIC_API_KEY": "test",
            "FAMILIAR_LLM__FACT_EXTRACTION_EVERY": "0",
            "FAMILIAR_MEDIA__ALBUM_WINDOW_S": "1.0",
        }
        run, token = daemon(env_extra=env, allowed_users=str(ann))
        for n, data in enumerate(parts):
            emulator.put_file(token, f"part{n}", data)
            caption = "Which is lightest?" if n == 0 else None
            emulator.say_photo(token, ann, [(f"part{n}", 80, 60, len(data))], caption, "grp-7")
        run.wait_for("SELECT id FROM messages WHERE role = 'assistant'", lambda r: len(r) >= 1, 60)
        time.sleep(1.5)  # room for a second answer, if the album were answered twice
        turns = run.query("SELECT role, text FROM messages ORDER BY id")
        bodies = stub.bodies()

    assert len(bodies) == 2  # one description, one answer
    for body in bodies:
        sent = [base64.b64decode(b["source"]["data"]) for b in _images(body)]
        assert sent == parts
    assert turns == [
        ("user", "Which is lightest?\n\n[3 photos: Three teal swatches.]"),
        ("assistant", "The third is lightest."),
    ]
