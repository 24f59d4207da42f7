"""Fixtures of the agents tests: the stub model server, a migrated database, providers on the stub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.providers.anthropic import AnthropicProvider
from agents.providers.openai import OpenAICompatibleProvider
from agents.schema import migrations
from memory.db import Database
from tests.stubs.anthropic_stub import LLMStub, llm_stub

MODEL = "claude-sonnet-4-6"
API_KEY = "sk-ant-test-0123456789abcdef"


@pytest.fixture
def stub() -> Iterator[LLMStub]:
    with llm_stub() as s:
        yield s


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "familiar.db", [migrations])
    yield database
    database.close()


@pytest.fixture
def anthropic_on_stub(stub: LLMStub):
    def make(**kw) -> AnthropicProvider:
        kw.setdefault("max_retries", 2)
        return AnthropicProvider(MODEL, api_key="test-key", base_url=stub.url, **kw)

    return make


@pytest.fixture
def openai_on_stub(stub: LLMStub):
    def make(**kw) -> OpenAICompatibleProvider:
        return OpenAICompatibleProvider("local-model", base_url=stub.openai_url, api_key="k", **kw)

    return make


@pytest.fixture
def model(stub: LLMStub, monkeypatch: pytest.MonkeyPatch) -> LLMStub:
    """The ``familiar`` CLI's settings, by environment, pointed at the stub (no retries)."""
    monkeypatch.setenv("FAMILIAR_LLM__PROVIDER", "anthropic")
    monkeypatch.setenv("FAMILIAR_LLM__ANTHROPIC_BASE_URL", stub.url)
    monkeypatch.setenv("FAMILIAR_LLM__MAX_RETRIES", "0")
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    return stub
