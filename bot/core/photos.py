"""Photos a person sends: checked, kept, described once, then answered with the images in view.

The channel hands over the downloaded bytes of one photo or of an album (several photos sent
together, answered as one message). Each is checked with Pillow (``memory.images.check_image``:
not an image, too big, a decompression bomb each get one clear sentence, and nothing is kept).
With a model that has vision, the images are kept content-addressed (``ImageStore``), the model
is asked once for a one-line description of them, and the caption (or a short default question)
is answered with the images as image blocks. The stored user turn is the question with that
description, and names the files in ``meta["photos"]``, so the photo is recalled later by what it
showed and its files go when the turn is forgotten (``sweep``). A model without vision says so in
one sentence; the caption is still kept (with the image) as the person's turn.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from loguru import logger

from agents.errors import LLMError
from agents.llm import LLM
from agents.providers.base import ImageBlock, LLMRequest, TextBlock
from agents.usage import CallContext
from bot.core.assistant import Assistant
from bot.core.transport import Transport
from bot.core.types import Incoming, Reply
from memory.images import CheckedImage, ImageError, ImageStore, check_image
from memory.service import Memory
from memory.settings import MediaSettings

DEFAULT_QUESTION = "What is in this photo?"
DEFAULT_QUESTION_MANY = "What is in these photos?"
DESCRIBE = (
    "Describe the image above in one line (at most 25 words) for a search index: what it shows, "
    "with any names, numbers or text that matter. Reply with the line only."
)
DESCRIBE_MANY = DESCRIBE.replace("the image above", "the images above (all of them)")
NO_VISION = (
    "The model I use now cannot see images, so I kept your photo's caption but not what it shows."
)
NO_VISION_NO_CAPTION = (
    "The model I use now cannot see images; add a caption if you want me to keep a note of it."
)
MAX_DESCRIPTION_CHARS = 300


class PhotoDesk:
    def __init__(
        self,
        memory: Memory,
        images: ImageStore,
        assistant: Assistant,
        llm: LLM | None,
        settings: MediaSettings,
    ) -> None:
        self.memory = memory
        self.images = images
        self.assistant = assistant
        self.llm = llm  # None or a model without vision: captions only
        self.settings = settings

    @property
    def max_bytes(self) -> int:
        return self.settings.max_image_bytes

    @property
    def sees(self) -> bool:
        caps = self.llm.capabilities if self.llm is not None else None
        return bool(caps and caps.generates and caps.vision)

    async def on_photos(
        self, msg: Incoming, blobs: list[bytes], question: str, transport: Transport
    ) -> None:
        """Check, keep and answer one photo or an album (``blobs`` in the order sent)."""
        checked: list[CheckedImage] = []
        for n, data in enumerate(blobs, 1):
            try:
                checked.append(
                    await asyncio.to_thread(
                        check_image, data, self.max_bytes, self.settings.max_image_pixels
                    )
                )
            except ImageError as exc:
                which = f"photo {n} of {len(blobs)}" if len(blobs) > 1 else "that photo"
                fix = f" Please {exc.fix}." if exc.fix else ""
                await _say(transport, msg.chat_id, f"⚠️ I couldn't take {which}: {exc}.{fix}")
                return
        question = question.strip()
        if not self.sees:
            await self._without_vision(msg, checked, question, transport)
            return
        shas = await self._keep(msg, checked, transport)
        if shas is None:
            return
        try:
            blocks = tuple(ImageBlock(c.data, c.media_type) for c in checked)
            # A replayed update (the daemon stopped while answering) keeps the turn it stored:
            # the model is not asked to describe the photo a second time.
            text = await self.memory.db.run(_stored_turn, self.memory, msg)
            description = ""
            if text is None:
                description = await self._describe(msg, blocks) or question
                default = DEFAULT_QUESTION if len(blocks) == 1 else DEFAULT_QUESTION_MANY
                text = question or default
                if description:
                    text += f"\n\n[{_photos(len(blocks))}: {description}]"
            meta: dict[str, Any] = {**msg.meta, "photos": shas, "photo_description": description}
            logger.info("photo(s) {} in chat {}: {}", shas, msg.chat_id, description)
            await self.assistant.answer(
                replace(msg, text=text, images=blocks, meta=meta), transport
            )
        finally:
            self.images.release(shas)

    async def _without_vision(
        self, msg: Incoming, checked: list[CheckedImage], question: str, transport: Transport
    ) -> None:
        if not question:
            await _say(transport, msg.chat_id, NO_VISION_NO_CAPTION)
            return
        shas = await self._keep(msg, checked, transport)
        if shas is None:
            return
        try:
            await self.memory.store_turn(
                msg.chat_id,
                msg.sender.id,
                "user",
                f"{question}\n\n[{_photos(len(checked))}, not seen]",
                telegram_message_id=msg.message_id if msg.key is not None else None,
                meta={**msg.meta, "photos": shas, **msg.labels},
            )
        finally:
            self.images.release(shas)
        await _say(transport, msg.chat_id, NO_VISION)

    async def _keep(
        self, msg: Incoming, checked: list[CheckedImage], transport: Transport
    ) -> list[str] | None:
        """Store the images (their sha256 out); None, having said so, when the disk fails."""
        shas: list[str] = []
        try:
            for image in checked:
                shas.append(await asyncio.to_thread(self.images.put, image))
        except OSError:
            logger.exception("keeping a photo in chat {} failed", msg.chat_id)
            self.images.release(shas)
            await _say(
                transport,
                msg.chat_id,
                "⚠️ Keeping the photo failed on my side; the details are in the log.",
            )
            return None
        return shas

    async def _describe(self, msg: Incoming, blocks: tuple[ImageBlock, ...]) -> str:
        """One line saying what the images show (for recall); "" when the model fails."""
        assert self.llm is not None
        ask = DESCRIBE if len(blocks) == 1 else DESCRIBE_MANY
        request = LLMRequest(
            messages=[{"role": "user", "content": [*blocks, TextBlock(ask)]}], max_tokens=120
        )
        ctx = CallContext(msg.sender.id, msg.chat_id, "photo", msg.sender.is_admin)
        try:
            result = await self.llm.complete(request, ctx)
        except LLMError as exc:  # the answer still comes; recall falls back to the caption
            logger.warning("describing a photo in chat {} failed: {}", msg.chat_id, exc)
            return ""
        line = " ".join(result.text.split())
        return line[:MAX_DESCRIPTION_CHARS]

    async def forget_files(self, user_id: int = 0) -> int:
        """Delete the image files no memory row names any more (after /forget, /forgetme)."""
        removed = await asyncio.to_thread(self.images.sweep, self.memory.db)
        if removed:
            logger.info("deleted {} image file(s) no memory names any more", removed)
        return removed


def _stored_turn(memory: Memory, msg: Incoming) -> str | None:
    """The text of this message's user turn, when a replayed update finds it stored."""
    if msg.key is None or msg.message_id is None:
        return None
    with memory.db.read() as conn:
        row = conn.execute(
            "SELECT text FROM messages WHERE chat_id = ? AND telegram_message_id = ?"
            " AND role = 'user'",
            (msg.chat_id, msg.message_id),
        ).fetchone()
    return str(row[0]) if row else None


def _photos(n: int) -> str:
    return "photo" if n == 1 else f"{n} photos"


async def _say(transport: Transport, chat_id: int, text: str) -> None:
    await transport.send(chat_id, Reply(text, markdown=False, no_feedback=True))
