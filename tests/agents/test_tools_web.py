"""The agent's fetch_url tool against a page served on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agents.tools.base import ToolContext, ToolError
from agents.tools.settings import ToolsSettings
from agents.tools.web import FetchUrl
from tests.memory.webserver import ARTICLE_SENTENCE, web_server

CTX = ToolContext(chat_id=1, user_id=1)


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with web_server() as url:
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
