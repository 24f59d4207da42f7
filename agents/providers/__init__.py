"""Model backends behind one interface, and ``build_provider``: settings in, a guarded provider out.

``FAMILIAR_LLM__PROVIDER`` selects: ``anthropic``, ``openai`` (any compatible server), ``local``
(transformers; its factory comes from agents.training and is passed in), ``none`` (retrieval only).
Every generating provider is wrapped in ``ResilientProvider`` (breaker, concurrency cap, timeout).
"""

from __future__ import annotations

from collections.abc import Callable

from agents.errors import LLMError
from agents.providers.base import Capabilities, Completion, LLMRequest, Provider, Usage
from agents.providers.none import NoneProvider
from agents.settings import LLMSettings
from memory.health import CheckFn

__all__ = [
    "Capabilities",
    "Completion",
    "LLMRequest",
    "Provider",
    "Usage",
    "build_provider",
    "health_checks",
]


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def build_provider(
    settings: LLMSettings, local_factory: Callable[[LLMSettings], Provider] | None = None
) -> Provider:
    """The provider the settings name, guarded by a breaker unless it is ``none``."""
    from agents.resilience import CircuitBreaker, ResilientProvider  # resilience imports base

    inner: Provider
    if settings.provider == "none":
        return NoneProvider()
    if settings.provider == "anthropic":
        from agents.providers.anthropic import AnthropicProvider

        inner = AnthropicProvider(
            settings.model,
            api_key=_secret(settings.anthropic_api_key),
            base_url=settings.anthropic_base_url,
            timeout_s=settings.request_timeout_s,
            max_retries=settings.max_retries,
            prompt_cache=settings.prompt_cache,
            send_effort=settings.send_effort,
        )
    elif settings.provider == "openai":
        from agents.providers.openai import OpenAICompatibleProvider

        inner = OpenAICompatibleProvider(
            settings.model,
            base_url=settings.openai_base_url,
            api_key=_secret(settings.openai_api_key),
            timeout_s=settings.request_timeout_s,
            max_retries=settings.max_retries,
            tools=settings.openai_tools,
        )
    else:
        if local_factory is None:
            raise LLMError(
                "the local provider is not available in this build",
                "set FAMILIAR_LLM__PROVIDER to anthropic, openai or none",
            )
        inner = local_factory(settings)
    breaker = CircuitBreaker(inner.name, settings.breaker_failures, settings.breaker_reset_s)
    return ResilientProvider(
        inner,
        breaker,
        max_concurrency=settings.max_concurrency,
        call_timeout_s=settings.answer_deadline_s,
    )


def health_checks(provider: Provider) -> dict[str, CheckFn]:
    """``{"llm": check}`` reporting the breaker state; empty for the retrieval-only provider."""
    from agents.resilience import ResilientProvider

    if isinstance(provider, ResilientProvider):
        return {"llm": provider.breaker.check}
    return {}
