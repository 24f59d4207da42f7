"""The assistant core: routes a person's message to a command or to the assistant's answerer.

Channels hand it authorised ``Incoming`` messages and ``ButtonPress`` values; it answers
through the channel's ``Transport``. Features plug in by registering commands, button prefixes
and the text answerer; commands whose feature is not built say so plainly.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from bot import __version__
from bot.core.commands import Command, CommandRegistry, parse_command
from bot.core.transport import Transport
from bot.core.types import ButtonPress, Incoming, Reaction, Reply
from memory.health import HealthRegistry, Status, overall
from memory.text import has_visible

TextAnswerer = Callable[[Incoming, Transport], Awaitable[None]]
# A button handler returns the short notice shown to the presser (answerCallbackQuery text).
ButtonHandler = Callable[[ButtonPress, str, Transport], Awaitable[str]]
# Sees a message before routing; returns True when it consumed it (e.g. a reply to "what was wrong?").
Interceptor = Callable[[Incoming, Transport], Awaitable[bool]]
# Wraps the transport the text answerer gets, e.g. to attach feedback buttons to every answer.
AnswerWrapper = Callable[[Incoming, Transport], Transport]

EMPTY = "That message looks empty to me: there is nothing in it I can read."
STATUS_ICON = {Status.HEALTHY: "✅", Status.DEGRADED: "⚠️", Status.FAILING: "❌"}

# Commands every channel shows; their real handlers are registered by the feature that owns them.
PLANNED: list[tuple[str, str, str, bool]] = [
    ("remember", "Remember something", "/remember TEXT", False),
    ("recall", "Search what I remember", "/recall QUERY", False),
    ("memories", "List recent memories", "/memories", False),
    ("forget", "Forget one memory", "/forget ID", False),
    ("context", "Show what I would send to the model now", "/context", False),
    ("summary", "Summarise this chat", "/summary", False),
    ("think", "Answer in three passes: draft, critique, refine", "/think QUESTION", False),
    ("review", "Have the review panel work on a task", "/review TASK", False),
    ("persona", "Show or choose the persona", "/persona [NAME]", False),
    ("usage", "Show your token usage and budget", "/usage", False),
    ("export", "Export your memory as JSON", "/export", False),
    ("forgetme", "Forget everything about you", "/forgetme", False),
    ("invite", "Make a one-time invite code (admins)", "/invite", True),
]


class Assistant:
    def __init__(self, health: HealthRegistry, started_at: float | None = None) -> None:
        self.health = health
        self.started_at = started_at or time.monotonic()
        self.commands = CommandRegistry()
        self.buttons: dict[str, ButtonHandler] = {}
        self.answer_text: TextAnswerer = self._no_model
        # Stores a message without answering it (one of several forwarded at once: the last is
        # answered with all of them in view); None: every message is answered.
        self.keep_text: TextAnswerer | None = None
        # Takes a message the person edited (its new words); None: edits change nothing.
        self.edit_text: TextAnswerer | None = None
        # Takes a reaction set on one of the bot's messages (feedback); None: ignored.
        self.on_reaction: Callable[[Reaction, Transport], Awaitable[None]] | None = None
        self.interceptors: list[Interceptor] = []
        self.answer_wrapper: AnswerWrapper | None = None
        self._register_builtins()

    # -- routing ---------------------------------------------------------------------------
    async def handle(self, msg: Incoming, transport: Transport) -> None:
        """Answer one message: a command, or text for the assistant."""
        if not has_visible(msg.text):  # zero-width or control characters only: an empty message
            await transport.send(msg.chat_id, Reply(EMPTY, markdown=False, no_feedback=True))
            return
        for intercept in self.interceptors:
            if await intercept(msg, transport):
                return
        parsed = parse_command(msg.text)
        if parsed is None:
            await self.answer(msg, transport)
            return
        name, args = parsed
        command = self.commands.get(name)
        if command is None:
            await transport.send(
                msg.chat_id,
                Reply(f"I don't know /{name}. /help lists what I can do.", markdown=False),
            )
            return
        if command.admin_only and not msg.sender.is_admin:
            await transport.send(msg.chat_id, Reply(f"/{name} is for admins only.", markdown=False))
            return
        if command.needs_args and not has_visible(args):
            await transport.send(msg.chat_id, Reply(command.usage_line(), markdown=False))
            return
        reply = await command.handler(msg, args, transport)
        if reply is not None:
            await transport.send(msg.chat_id, reply)

    async def keep(self, msg: Incoming, transport: Transport) -> None:
        """A message of a burst that more of it follows (``bot.telegram.bursts``): stored, not
        answered (the last one's answer has it in view). What an interceptor is waiting for (a
        👎's reason) is still taken by it; without a keeper, it is answered."""
        if self.keep_text is None:
            await self.handle(msg, transport)
            return
        if not has_visible(msg.text):
            return
        for intercept in self.interceptors:
            if await intercept(msg, transport):
                return
        await self.keep_text(msg, transport)

    async def edited(self, msg: Incoming, transport: Transport) -> None:
        """A message the person edited (``msg.text``: what it says now; ``meta["edit"]``: when).
        A command is not run again (said, so they send it anew); text goes to the editor."""
        if not has_visible(msg.text):
            return
        parsed = parse_command(msg.text)
        if parsed is not None:
            await transport.send(
                msg.chat_id,
                Reply(
                    f"I don't run an edited command again: send /{parsed[0]} as a new message.",
                    markdown=False,
                    no_feedback=True,
                ),
            )
            return
        if self.edit_text is not None:
            wrapped = self.answer_wrapper(msg, transport) if self.answer_wrapper else transport
            await self.edit_text(msg, wrapped)

    async def answer(self, msg: Incoming, transport: Transport) -> None:
        """Run the text answerer, through ``answer_wrapper`` when one is installed."""
        wrapped = self.answer_wrapper(msg, transport) if self.answer_wrapper else transport
        await self.answer_text(msg, wrapped)

    async def react(self, reaction: Reaction, transport: Transport) -> None:
        """A reaction set, changed or taken back on a message of the bot's."""
        if self.on_reaction is not None:
            await self.on_reaction(reaction, transport)

    async def press(self, press: ButtonPress, transport: Transport) -> str:
        """Handle a button press; returns the short notice for the presser."""
        prefix, _, payload = press.data.partition(":")
        handler = self.buttons.get(prefix)
        if handler is None:
            return "This button is no longer valid."
        return await handler(press, payload, transport)

    # -- built-in commands -----------------------------------------------------------------
    def _register_builtins(self) -> None:
        self.commands.add(Command("start", "Say hello and show what I can do", self._start))
        self.commands.add(Command("help", "List the commands", self._help))
        self.commands.add(Command("status", "Show the daemon's health", self._status))
        for name, description, usage, admin in PLANNED:
            self.commands.add(
                Command(name, description, self._not_built(name), usage=usage, admin_only=admin)
            )

    def _not_built(self, name: str) -> Callable[[Incoming, str, Transport], Awaitable[Reply]]:
        async def handler(msg: Incoming, args: str, transport: Transport) -> Reply:
            return Reply(
                f"/{name} is not available in this version of Familiar yet.", markdown=False
            )

        return handler

    async def _start(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        hello = f"Hello{', ' + msg.sender.name if msg.sender.name else ''}! I'm Familiar, your assistant."
        return Reply(hello + "\n\n" + self.commands.help_text(msg.sender.is_admin), markdown=False)

    async def _help(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        return Reply(self.commands.help_text(msg.sender.is_admin), markdown=False)

    async def _status(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        results = await self.health.run()
        state = overall(results)
        uptime = int(time.monotonic() - self.started_at)
        lines = [
            f"Familiar {__version__}: {state.name.lower()}, up {uptime // 3600}h {uptime % 3600 // 60}m"
        ]
        lines += [f"{STATUS_ICON[r.status]} {r.name}: {r.detail}" for r in results]
        return Reply("\n".join(lines), markdown=False)

    async def _no_model(self, msg: Incoming, transport: Transport) -> None:
        await transport.send(
            msg.chat_id,
            Reply(
                "No language model is configured, so I can't answer yet. "
                "Set FAMILIAR_LLM__PROVIDER (and its key), then restart me.",
                markdown=False,
            ),
        )
