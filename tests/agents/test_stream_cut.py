"""A model stream that ends part-way (the connection drops: no stop reason, no end event) is an
error for both SDK-backed providers, never a short answer passed off as the whole one. The real
SDKs against the stub server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from agents.errors import ProviderUnavailable
from agents.providers.base import Completion, LLMRequest
from tests.stubs.anthropic_stub import Reply

REQ = LLMRequest([{"role": "user", "content": "hello"}], max_tokens=50)
ANSWER = "the first words and then the rest of the answer"


def stream(provider):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        return [item async for item in provider.stream(REQ)]

    return asyncio.run(go())


@pytest.mark.parametrize("fault", ["cut", "empty_stream"])
def test_anthropic_stream_ended_part_way_is_an_error(stub, anthropic_on_stub, fault) -> None:  # type: ignore[no-untyped-def]
    stub.script(Reply(ANSWER, fault=fault))
    with pytest.raises(ProviderUnavailable, match="ended before the answer was finished"):
        stream(anthropic_on_stub(max_retries=0))


def test_openai_stream_ended_part_way_is_an_error(stub, openai_on_stub) -> None:  # type: ignore[no-untyped-def]
    stub.script(Reply(ANSWER, fault="cut"))
    with pytest.raises(ProviderUnavailable, match="ended before the answer was finished"):
        stream(openai_on_stub(max_retries=0))


@pytest.mark.parametrize("make", ["anthropic_on_stub", "openai_on_stub"])
def test_a_whole_stream_still_ends_with_its_completion(stub, request, make) -> None:  # type: ignore[no-untyped-def]
    stub.script(Reply(ANSWER))
    *deltas, final = stream(request.getfixturevalue(make)(max_retries=0))
    assert isinstance(final, Completion)
    assert "".join(deltas) == final.text == ANSWER and final.stop_reason is not None
