"""Personas: a chat answered by a trained archetype's LoRA adapter (``/persona NAME``).

``ChatPersonas`` keeps each chat's choice in ``chat_settings.persona``. ``PersonaRouter`` is the
chat agent's ``route``: for a chat whose persona has a promoted adapter it returns an ``LLM``
whose provider serves that adapter, else None (the default model answers):

* the ``local`` provider: ``LocalProvider.for_archetype(name)``, the same base model in this
  process with the adapter hot-swapped in (the registry names the promoted version per call);
* the OpenAI-compatible provider (vLLM started with ``--enable-lora``): the same server asked
  for the model ``<archetype>-<version>`` of the promoted version, which vLLM serves when started
  with ``--lora-modules <archetype>-<version>=<data dir>/adapters/<archetype>/<version>``.

Each persona's provider gets the default provider's circuit breaker (one backend, one breaker)
and the same concurrency cap and deadline. Providers are told apart by what they can do
(``for_archetype``, ``with_model``), so this module never imports torch.
"""

from __future__ import annotations

import asyncio
from typing import Any

from loguru import logger

from agents.llm import LLM, AdminAlert
from agents.providers.base import Provider
from agents.resilience import ResilientProvider
from agents.settings import LLMSettings
from agents.training.errors import RegistryError
from agents.training.registry import AdapterRegistry, check_slug
from agents.usage import UsageStore
from bot.core.assistant import Assistant
from bot.core.commands import GROUP_SETTING_REFUSAL, Command, may_change_chat_settings
from bot.core.transport import Transport
from bot.core.types import Incoming, Reply
from memory.db import Database

DEFAULT_WORDS = ("default", "off", "none")
NEEDS_PROVIDER = (
    "Trained personas are LoRA adapters: they need the local provider (FAMILIAR_LLM__PROVIDER=local "
    "with FAMILIAR_TRAINING__BASE_MODEL) or the OpenAI-compatible provider pointed at vLLM started "
    "with --enable-lora (FAMILIAR_LLM__PROVIDER=openai). This daemon uses the {provider} provider."
)


class ChatPersonas:
    """``chat_settings.persona``: the archetype a chat is answered by (None: the default model)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _get(self, chat_id: int) -> str | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT persona FROM chat_settings WHERE chat_id = ?", (chat_id,)
            ).fetchone()
        return row[0] if row and row[0] else None

    def _set(self, chat_id: int, archetype: str | None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO chat_settings (chat_id, persona) VALUES (?, ?)"
                " ON CONFLICT (chat_id) DO UPDATE SET persona = excluded.persona",
                (chat_id, archetype),
            )

    async def get(self, chat_id: int) -> str | None:
        return await self.db.run(self._get, chat_id)

    async def set(self, chat_id: int, archetype: str | None) -> None:
        await self.db.run(self._set, chat_id, archetype)


class PersonaRouter:
    """The ``ChatAgent.route``: chat id → the LLM serving its persona's adapter, or None."""

    def __init__(
        self,
        personas: ChatPersonas,
        registry: AdapterRegistry,
        provider: Provider,
        settings: LLMSettings,
        usage: UsageStore | None = None,
        on_admin_alert: AdminAlert | None = None,
    ) -> None:
        self.personas, self.registry, self.settings = personas, registry, settings
        self.usage, self.on_admin_alert = usage, on_admin_alert
        self.outer = provider
        self.inner: Any = provider.inner if isinstance(provider, ResilientProvider) else provider
        self._llms: dict[str, LLM] = {}

    @property
    def kind(self) -> str | None:
        """ "local", "openai" (a server that takes adapter names as models), or None: no adapters."""
        if hasattr(self.inner, "for_archetype"):
            return "local"
        if hasattr(self.inner, "with_model"):
            return "openai"
        return None

    def served_model(self, archetype: str) -> str | None:
        """The adapter name a chat with ``archetype`` is answered by; None when none is promoted.
        Blocking (reads the registry): call it off the event loop."""
        version = self.registry.promoted_version(archetype)
        return f"{archetype}-{version}" if version else None

    def promoted_archetypes(self) -> list[tuple[str, str]]:
        """(archetype, promoted version) of every archetype that has one; blocking."""
        out = []
        for name in self.registry.archetypes():
            try:
                version = self.registry.promoted_version(name)
            except (RegistryError, OSError, ValueError):
                continue  # a damaged archetype directory must not hide the others
            if version:
                out.append((name, version))
        return out

    async def __call__(self, chat_id: int) -> LLM | None:
        kind = self.kind
        if kind is None:
            return None
        archetype = await self.personas.get(chat_id)
        if archetype is None:
            return None
        try:
            model = await asyncio.to_thread(self.served_model, archetype)
        except (RegistryError, OSError, ValueError) as exc:
            logger.warning("persona {} of chat {} cannot be served: {}", archetype, chat_id, exc)
            return None
        if model is None:  # rolled back to nothing: the default model answers until one is promoted
            return None
        # local: one provider per archetype (it resolves the promoted version itself, per call)
        key = archetype if kind == "local" else model
        if key not in self._llms:
            inner = (
                self.inner.for_archetype(archetype)
                if kind == "local"
                else self.inner.with_model(model)
            )
            self._llms[key] = LLM(self._guard(inner), self.usage, self.on_admin_alert)
        return self._llms[key]

    def _guard(self, inner: Provider) -> Provider:
        if not isinstance(self.outer, ResilientProvider):
            return inner
        return ResilientProvider(
            inner,
            self.outer.breaker,
            max_concurrency=self.settings.max_concurrency,
            call_timeout_s=self.settings.answer_deadline_s,
        )


class PersonaCommands:
    """``/persona``: show the persona and the trained ones; ``/persona NAME`` selects one here."""

    def __init__(self, router: PersonaRouter, default_persona: str, provider_name: str) -> None:
        self.router = router
        self.default_persona = default_persona
        self.provider_name = provider_name

    def register(self, assistant: Assistant) -> None:
        assistant.commands.replace(
            Command(
                "persona",
                "Show the persona, or answer here as a trained one (/persona default: back)",
                self.persona,
                "/persona [NAME | default]",
            )
        )

    async def persona(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        name = (
            args.strip().split()[0] if args.strip() else ""
        )  # as typed: no case folding of look-alikes
        personas = self.router.personas
        if not name:
            return await self._show(msg.chat_id)
        if not may_change_chat_settings(msg):
            return Reply(GROUP_SETTING_REFUSAL, markdown=False)
        if name.lower() in DEFAULT_WORDS:
            await personas.set(msg.chat_id, None)
            return Reply("Back to the default persona in this chat.", markdown=False)
        if self.router.kind is None:
            return Reply(NEEDS_PROVIDER.format(provider=self.provider_name), markdown=False)
        try:
            check_slug(name)
            model = await asyncio.to_thread(self.router.served_model, name)
        except RegistryError:
            model = None
        if model is None:
            return Reply(
                f"There is no trained persona called {name[:40]!r}. "
                + await self._available_line(),
                markdown=False,
            )
        await personas.set(msg.chat_id, name)
        return Reply(
            f"From now on {name} answers in this chat (adapter {model}). "
            "/persona default goes back.",
            markdown=False,
        )

    async def _available_line(self) -> str:
        available = await asyncio.to_thread(self.router.promoted_archetypes)
        if not available:
            return "None is trained yet: an admin trains one with /train NAME DESCRIPTION and promotes it."
        return "Trained personas: " + ", ".join(f"{n} ({v})" for n, v in available) + "."

    async def _show(self, chat_id: int) -> Reply:
        selected = await self.router.personas.get(chat_id)
        lines = [f"Persona in this chat: {selected or 'the default'}."]
        if selected is None:
            lines.append(self.default_persona)
        if self.router.kind is None:
            lines.append(
                "Trained personas need the local or the OpenAI-compatible (vLLM) provider."
            )
        else:
            lines.append(await self._available_line())
            lines.append("/persona NAME answers here as one; /persona default goes back.")
        return Reply("\n".join(lines), markdown=False)
