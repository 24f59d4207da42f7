"""The local provider inside the agent loop: a Mistral-style model (its ``generate`` scripted, the
tokenizer and chat template real) calls the built-in ``current_time``, the loop runs it, and the
result goes back through the template to the model, which answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agents.chat import ChatAgent
from agents.llm import LLM
from agents.loop import ToolLoop
from agents.schema import migrations as agent_migrations
from agents.settings import LLMSettings, ToolLoopSettings
from agents.tools.clock import clock_tools
from agents.tools.registry import ToolRegistry
from agents.usage import UsageStore
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.schema import migrations as memory_migrations
from memory.service import Memory
from memory.settings import MemorySettings
from tests.training.tool_templates import model_dir, scripted_provider


def test_a_local_model_calls_a_tool_through_the_loop_and_answers(
    tiny_model: Path, tmp_path: Path
) -> None:
    path = model_dir(tiny_model, tmp_path, "mistral")
    provider, model = scripted_provider(
        path, ['[TOOL_CALLS][{"name": "current_time", "arguments": {}}]', "It is Tuesday."]
    )
    db = Database.open(tmp_path / "familiar.db", [memory_migrations, agent_migrations])
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    settings = LLMSettings(fact_extraction_every=0)
    loop = ToolLoop(ToolRegistry([clock_tools()]), ToolLoopSettings(), db)
    agent = ChatAgent(memory, LLM(provider, UsageStore(db, settings)), settings, db=db, tools=loop)

    async def main() -> None:
        try:
            answer = await agent.answer(1, 1, "What day is it?")
            assert (answer.text, answer.error, answer.tool_calls) == ("It is Tuesday.", None, 1)
        finally:
            await memory.stop()

    try:
        asyncio.run(main())
        with db.read() as conn:
            rows = conn.execute("SELECT tool, outcome FROM agent_tool_calls").fetchall()
    finally:
        db.close()
    assert rows == [("current_time", "ok")]
    assert "[AVAILABLE_TOOLS]" in model.prompts[0] and '"current_time"' in model.prompts[0]
    # The clock's answer reached the model as the call's result, paired by the template's id.
    assert "[TOOL_RESULTS]" in model.prompts[1] and "(UTC, UTC+0000)" in model.prompts[1]
