"""Earlier voice turns reach the model marked as heard, not typed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from memory.context import AUDIO_MARK
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.schema import migrations
from memory.service import Memory
from memory.settings import MemorySettings


def test_voice_turns_in_the_history_are_marked(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, str]]:
        db = Database.open(tmp_path / "f.db", [migrations])
        memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
        await memory.start()
        await memory.wait_ready()
        await memory.add_message(5, 1, "user", "buy oat milk tomorrow", meta={"from_audio": True})
        await memory.add_message(5, None, "assistant", "Noted: oat milk.")
        await memory.add_message(5, 1, "user", "and bread", meta=None)
        ctx = await memory.assemble_context(5, 1, "what did I ask?", 4000)
        await memory.stop()
        db.close()
        return ctx.messages

    messages = asyncio.run(scenario())
    contents = [m["content"] for m in messages]
    assert contents[0] == AUDIO_MARK + "buy oat milk tomorrow"
    assert contents[1] == "Noted: oat milk."
    assert contents[2] == "and bread"
    assert contents[-1] == "what did I ask?"
