"""The chat agent with photos: image blocks for a model with vision, text only for one without."""

from __future__ import annotations

import asyncio

from agents.providers.base import Capabilities, ImageBlock, TextBlock
from agents.providers.fake import FakeProvider
from tests.agents.test_agents_chat import make_agent, memory_db  # noqa: F401 (fixture)

PHOTO = ImageBlock(b"\xff\xd8 jpeg bytes", "image/jpeg")


def test_images_go_with_the_message_and_think_mode_answers_in_one_call(memory_db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    memory, db = memory_db
    provider = FakeProvider(["A red square."], capabilities=Capabilities(vision=True))
    agent = make_agent(memory, db, provider, fact_extraction_every=0)

    async def scenario():  # type: ignore[no-untyped-def]
        answer = await agent.answer(
            10, 1, "What is it?\n\n[photo: a red square]", mode="think", images=[PHOTO]
        )
        return answer, await memory.recent_messages(10)

    answer, turns = asyncio.run(scenario())
    assert answer.text == "A red square." and answer.mode == "single"
    [request] = provider.requests  # three-pass would have made three calls
    content = request.messages[-1]["content"]
    assert content[0] == PHOTO
    assert isinstance(content[1], TextBlock) and content[1].text.endswith("[photo: a red square]")
    assert turns[0].text == "What is it?\n\n[photo: a red square]"  # memory keeps text only


def test_a_model_without_vision_gets_the_text_only(memory_db) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    memory, db = memory_db
    provider = FakeProvider(["Hard to say."], capabilities=Capabilities(vision=False))
    agent = make_agent(memory, db, provider, fact_extraction_every=0)
    asyncio.run(agent.answer(11, 1, "What is it?", images=[PHOTO]))
    [request] = provider.requests
    assert request.messages[-1]["content"] == "What is it?"
