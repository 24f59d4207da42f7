"""The agent's fetch_url tool against a page served on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.llm import LLM
from agents.loop import ToolLoop
from agents.providers.base import Completion, ToolUseBlock, Usage
from agents.providers.fake import FakeProvider
from agents.schema import migrations as agent_migrations
from agents.tools.base import ToolContext, ToolError
from agents.tools.registry import StaticSource, ToolRegistry
from agents.tools.settings import ToolsSettings
from agents.tools.web import FetchUrl
from agents.usage import CallContext
from memory.db import Database
from tests.memory.webserver import ARTICLE_SENTENCE, web_server

CTX = ToolContext(chat_id=1, user_id=1)


LONG = "\n".join(f"Line {i}: the tide came in and went out again." for i in range(1500))


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with web_server({"/long.txt": (LONG.encode(), "text/plain")}) as url:
        yield url


def test_the_spec_marks_it_untrusted_and_read_only() -> None:
    spec = FetchUrl.spec
    assert spec.name == "fetch_url" and spec.untrusted and spec.read_only
    assert spec.input_schema["required"] == ["url"]


def test_it_returns_the_pages_main_text(site: str) -> None:
    tool = FetchUrl(ToolsSettings(fetch_allow_private=True))
    result = asyncio.run(tool.call({"url": f"{site}/moved"}, CTX))
    assert ARTICLE_SENTENCE in result.content
    assert result.content.startswith("Title: The Lighthouse\nURL: " + f"{site}/article")
    assert result.data["url"] == f"{site}/article"


def test_private_addresses_are_refused_unless_the_setting_allows(site: str) -> None:
    tool = FetchUrl(ToolsSettings())
    with pytest.raises(ToolError, match="private or local address"):
        asyncio.run(tool.call({"url": f"{site}/article"}, CTX))


def test_a_long_page_reaches_the_model_cut_once_to_the_untrusted_budget(
    site: str, tmp_path: Path
) -> None:
    """One budget, applied once by the loop: the model is told how much of the page it does not
    see (the tool used to cut at 20,000 characters first, so the loop's note counted from
    there)."""
    assert len(LONG) > 60_000
    settings = ToolsSettings(fetch_allow_private=True, untrusted_max_chars=1000)
    db = Database.open(tmp_path / "familiar.db", [agent_migrations])
    loop = ToolLoop(ToolRegistry([StaticSource("web", [FetchUrl(settings)])]), settings, db)
    call = ToolUseBlock("c1", "fetch_url", {"url": f"{site}/long.txt"})
    provider = FakeProvider(
        [Completion("", Usage(10, 5), "fake", "tool_use", 0, [call]), "It is about tides."]
    )
    result = asyncio.run(
        loop.start(
            LLM(provider),
            CallContext(1, 1, "chat"),
            system_prefix="",
            system="",
            messages=[{"role": "user", "content": "read it"}],
            cache_turns=0,
            max_tokens=100,
        )
    )
    db.close()
    assert result.text == "It is about tides."
    (block,) = provider.requests[1].messages[-1]["content"]
    assert block.content.count("cut") == 1 and "Line 0: the tide" in block.content
    left_out = int(block.content.split("[… cut: ")[1].split(" ")[0])
    assert left_out > len(LONG) - 1000  # counted from the whole page
