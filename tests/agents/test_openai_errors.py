"""The OpenAI-compatible provider's errors, as the real ``openai`` SDK meets them from the stub
server on 127.0.0.1: each HTTP failure maps to the error class the rest of Familiar acts on
(auth and spend limits alert the admins and are not retried; overload is retried by the breaker's
caller; a bad request is the request's fault), mid-stream failures included."""

from __future__ import annotations

import asyncio

import pytest

from agents.errors import ProviderAuthError, ProviderRejected, ProviderUnavailable
from agents.providers.base import LLMRequest
from tests.stubs.anthropic_stub import Reply

REQ = LLMRequest([{"role": "user", "content": "hello"}], max_tokens=50)


def stream(provider, request):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        return [item async for item in provider.stream(request)]

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (403, ProviderAuthError, "refused the credentials (HTTP 403)"),
        (402, ProviderAuthError, "spend limit is reached (HTTP 402)"),
        (429, ProviderUnavailable, "overloaded or failing (HTTP 429)"),
        (503, ProviderUnavailable, "overloaded or failing (HTTP 503)"),
        (400, ProviderRejected, "rejected the request (HTTP 400)"),
    ],
)
def test_each_status_maps_to_what_familiar_acts_on(  # type: ignore[no-untyped-def]
    stub, openai_on_stub, status, error, words
) -> None:
    stub.script(Reply.error(status, message="stub says no"))
    with pytest.raises(error) as caught:
        asyncio.run(openai_on_stub(max_retries=0).complete(REQ))
    assert words in str(caught.value)


def test_the_key_fix_names_the_openai_setting(stub, openai_on_stub) -> None:  # type: ignore[no-untyped-def]
    stub.script(Reply.error(401))
    with pytest.raises(ProviderAuthError) as caught:
        asyncio.run(openai_on_stub(max_retries=0).complete(REQ))
    assert "FAMILIAR_LLM__OPENAI_API_KEY" in caught.value.fix


def test_an_error_mid_stream_is_unavailable_not_a_crash(stub, openai_on_stub) -> None:  # type: ignore[no-untyped-def]
    stub.script(Reply("a b c d e f g h i j", fault="stream_error"))
    with pytest.raises(ProviderUnavailable):
        stream(openai_on_stub(max_retries=0), REQ)


def test_an_unreachable_server_is_unavailable(openai_on_stub, stub) -> None:  # type: ignore[no-untyped-def]
    provider = openai_on_stub(max_retries=0)
    stub.stop()  # nothing listens any more
    with pytest.raises(ProviderUnavailable, match="cannot reach the model server"):
        asyncio.run(provider.complete(REQ))
