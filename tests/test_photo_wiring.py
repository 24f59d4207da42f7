"""Photos through the daemon's real service graph: the [media] settings, a provider without vision,
and /forgetme deleting the person's image files (and only theirs)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import Capabilities
from agents.providers.none import NoneProvider
from agents.providers.openai import OpenAICompatibleProvider
from bot.core.photos import NO_VISION
from bot.core.types import ButtonPress, Incoming, Sender
from tests.core_graph import core_graph
from tests.memory.imagefiles import make_jpeg, make_png

ANN, BOB = Sender(61, "Ann"), Sender(62, "Bob")


def test_which_providers_see_images() -> None:
    assert AnthropicProvider("m", api_key="k").capabilities.vision
    assert OpenAICompatibleProvider("m", base_url="http://127.0.0.1:9/v1").capabilities.vision
    assert not NoneProvider().capabilities.vision
    assert not Capabilities().vision  # the default, which the local provider keeps


def test_forgetme_deletes_the_persons_image_files_and_keeps_others(data_dir: Path) -> None:
    shared, own = make_jpeg(50, 40), make_png(20, 20)

    async def scenario() -> None:
        async with core_graph(data_dir) as graph:
            photos = graph.services.photos
            assert photos is not None and not photos.sees  # provider none: no vision
            assert photos.max_bytes == graph.settings.media.max_image_bytes
            sends = [(ANN, [shared, own], "Our holiday"), (BOB, [shared], "Same picture")]
            for n, (who, blobs, caption) in enumerate(sends, 1):
                msg = Incoming(who.id, who, caption, message_id=n, channel="test")
                await photos.on_photos(msg, blobs, caption, graph.transport)
                assert graph.transport.shown().text == NO_VISION
            images = data_dir / "images"
            names = {p.name for p in images.iterdir()}
            shared_name = f"{hashlib.sha256(shared).hexdigest()}.jpg"
            own_name = f"{hashlib.sha256(own).hexdigest()}.png"
            assert names == {shared_name, own_name}
            turns = await graph.services.memory.recent_messages(ANN.id)
            assert [t.text for t in turns] == ["Our holiday\n\n[2 photos, not seen]"]

            await graph.say("/forgetme", ANN)
            notice = await graph.services.assistant.press(
                ButtonPress(ANN.id, ANN, f"fm:yes:{ANN.id}", channel="test"), graph.transport
            )
            assert notice == "Forgotten."
            # Bob's row still names the shared photo: only Ann's own file goes.
            assert {p.name for p in images.iterdir()} == {shared_name}

    asyncio.run(scenario())
