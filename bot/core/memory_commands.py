"""The memory commands: /remember, /recall, /memories, /forget, /context, /summary, /export,
/forgetme. They talk to memory's ``Memory`` facade and know nothing about Telegram."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from loguru import logger

from bot.core.assistant import Assistant
from bot.core.commands import Command, parse_id
from bot.core.export_files import PART_BYTES as export_file_limit
from bot.core.export_files import export_files
from bot.core.transport import ChatUnreachable, Transport
from bot.core.types import Button, ButtonPress, Incoming, Reply
from memory.errors import FamiliarError
from memory.search import shown_once
from memory.service import Memory
from memory.types import Hit, Scope
from memory.when import describe

LISTED_KINDS = ("fact", "note", "summary", "lesson")
SNIPPET = 160


def scope_of(msg: Incoming | ButtonPress) -> Scope:
    return Scope(chat_id=msg.chat_id, user_id=msg.sender.id)


def snippet(text: str, limit: int = SNIPPET) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def hit_line(hit: Hit) -> str:
    return f"#{hit.id} [{hit.kind}, {hit.ts:%Y-%m-%d}] {snippet(hit.text)}"


# Forgets what another package keeps about a person (user id in, how many items out): /forgetme.
ForgetUser = Callable[[int], Awaitable[int]]


def recall_lines(hit: Hit) -> str:
    """A hit, with the turns around a conversation turn indented under it (context, not hits)."""
    lines = [f"  ↑ {snippet(t.text, 100)}" for t in hit.before]
    lines.append(hit_line(hit))
    lines += [f"  ↓ {snippet(t.text, 100)}" for t in hit.after]
    return "\n".join(lines)


class MemoryCommands:
    def __init__(
        self,
        memory: Memory,
        context_tokens: int,
        part_bytes: int = export_file_limit,
        *,
        also_forget: Sequence[ForgetUser] = (),
    ) -> None:
        self.memory = memory
        self.context_tokens = context_tokens
        self.part_bytes = part_bytes  # the largest file /export sends
        self.also_forget = list(also_forget)
        # Run after /forget removed a row: files only that row named go too (photos).
        self.after_forget: list[Callable[[], Awaitable[object]]] = []

    def register(self, assistant: Assistant) -> None:
        replace = assistant.commands.replace
        replace(
            Command(
                "remember", "Remember something", self.remember, "/remember TEXT", needs_args=True
            )
        )
        replace(
            Command(
                "recall", "Search what I remember", self.recall, "/recall QUERY", needs_args=True
            )
        )
        replace(
            Command("memories", "List what I remember about this chat", self.memories, "/memories")
        )
        replace(Command("forget", "Forget one memory", self.forget, "/forget ID", needs_args=True))
        replace(
            Command("context", "Show what I would send to the model now", self.context, "/context")
        )
        replace(Command("summary", "Summarise this chat so far", self.summary, "/summary"))
        replace(
            Command(
                "export",
                "Export your memory of this chat as JSON (asked in a group: sent to you privately)",
                self.export,
                "/export",
            )
        )
        replace(Command("forgetme", "Forget everything about you", self.forgetme, "/forgetme"))
        assistant.buttons["fm"] = self.confirm_forgetme

    async def remember(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/remember TEXT: store a memory card, without duplicates."""
        try:
            result = await self.memory.add_fact(args, scope_of(msg), source="user")
        except FamiliarError as exc:
            return Reply(f"I couldn't remember that: {exc}", markdown=False)
        if result.action == "duplicate":
            return Reply(f"I already knew that (#{result.id}).", markdown=False)
        if result.action == "superseded":
            return Reply(f"Updated: #{result.id} replaces #{result.superseded_id}.", markdown=False)
        return Reply(f"Remembered (#{result.id}).", markdown=False)

    async def recall(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/recall QUERY: the best matches in this chat's memory."""
        hits = await self.memory.search(args, scope_of(msg), k=8)
        if not hits:
            window = self.memory.time_asked(args)
            if window is not None:  # "/recall two weeks ago", and nothing is kept from then
                return Reply(f"Nothing from {describe(window)}.", markdown=False)
            return Reply("I don't remember anything about that.", markdown=False)
        # Each turn once: a reply that is a hit too is shown under its question.
        lines = [recall_lines(h) for h in shown_once(hits)]
        if all("outside" in h.provenance for h in hits):
            # The question named a time and nothing from then matched: say so, rather than let
            # other times' matches pass for an answer.
            when = hits[0].provenance["outside"]
            lines.insert(0, f"Nothing from {when}; matches from other times:")
        return Reply("\n".join(lines), markdown=False)

    async def memories(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/memories: the latest facts, notes and summaries of this chat."""
        hits = await self.memory.list_memories(scope_of(msg), kinds=LISTED_KINDS, limit=20)
        if not hits:
            return Reply(
                "I have no memories of this chat yet. /remember TEXT adds one.", markdown=False
            )
        return Reply(
            "\n".join(hit_line(h) for h in hits) + "\n\n/forget ID removes one.", markdown=False
        )

    async def forget(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/forget ID: remove one memory of this chat."""
        memory_id = parse_id(args)
        if memory_id is None:
            return Reply(
                "Usage: /forget ID (the number /memories or /recall shows)", markdown=False
            )
        if await self.memory.forget(memory_id, scope_of(msg)):
            for after in self.after_forget:
                await after()
            return Reply(f"Forgotten #{memory_id}.", markdown=False)
        return Reply(f"There is no memory #{memory_id} of yours in this chat.", markdown=False)

    async def context(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/context: what the model would see now, and what did not fit."""
        ctx = await self.memory.assemble_context(
            msg.chat_id,
            msg.sender.id,
            args or "(your next message)",
            self.context_tokens,
            speaker=msg.speaker,
        )
        lines = [f"Context: {ctx.tokens_used} of {self.context_tokens} tokens."]
        if ctx.included:
            lines.append("Included:")
            lines += [f"• {snippet(item)}" for item in ctx.included]
        if ctx.dropped:
            lines.append("Left out (still searchable):")
            lines += [f"• {snippet(item)}" for item in ctx.dropped]
        return Reply("\n".join(lines), markdown=False)

    async def summary(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/summary: a summary of the recent conversation in this chat."""
        turns = await self.memory.recent_messages(msg.chat_id, limit=200)
        if not turns:
            return Reply("Nothing to summarise yet.", markdown=False)
        await transport.typing(msg.chat_id)
        text = await self.memory.summariser.summarise(turns)
        return Reply(text, markdown=False)

    async def export(self, msg: Incoming, args: str, transport: Transport) -> Reply | None:
        """/export: this chat's memory of you as a JSON file (zipped, or in parts, when large).
        Asked in a group, the file goes to the person's private chat with the bot, never to
        the group (everyone there would see it)."""
        to = msg.sender.id if msg.is_group else msg.chat_id  # a private chat's id is the user's
        data = await self.memory.export(chat_id=msg.chat_id, user_id=msg.sender.id)
        payload = json.dumps(data, ensure_ascii=False, indent=1, default=str).encode()
        stem = f"familiar-export-{msg.chat_id}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        caption = (
            f"Your memory in the group {msg.chat_id}"
            if msg.is_group
            else "Your memory in this chat"
        )
        files = await asyncio.to_thread(
            export_files, stem, payload, caption, part_bytes=self.part_bytes
        )
        who = f"{msg.sender.name}, " if msg.sender.name else ""
        try:
            for file in files:
                await transport.send_document(to, file.data, file.filename, file.caption)
        except NotImplementedError:
            return Reply(
                "This channel cannot send files; `familiar memory export` on the server does the same.",
                markdown=False,
            )
        except ChatUnreachable:
            if not msg.is_group:
                raise
            logger.info("/export: user {} has no private chat with the bot", msg.sender.id)
            return Reply(
                f"{who}I can't send you your export privately yet: open a private chat with me"
                " (tap my name, then Start), then send /export here again.",
                markdown=False,
            )
        if msg.is_group:
            return Reply(f"{who}I sent your export to you in a private chat.", markdown=False)
        return None

    async def forgetme(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/forgetme: ask to confirm, with buttons, before erasing the person."""
        uid = msg.sender.id
        return Reply(
            "Forget everything I know about you, in every chat (your messages and memories, my"
            " answers to you, and the summaries that used them)? This cannot be undone.",
            buttons=[[Button("Yes, forget me", f"fm:yes:{uid}"), Button("No", f"fm:no:{uid}")]],
            markdown=False,
        )

    async def confirm_forgetme(self, press: ButtonPress, payload: str, transport: Transport) -> str:
        answer, _, uid = payload.partition(":")
        if uid != str(press.sender.id):
            return "This button is not yours."
        if answer != "yes":
            await transport.send(press.chat_id, Reply("Nothing was forgotten.", markdown=False))
            return "Cancelled."
        removed = await self.memory.forget_user(press.sender.id)
        for forget in self.also_forget:
            removed += await forget(press.sender.id)
        await self.memory.purge()  # what the others deleted, out of the WAL too
        await transport.send(
            press.chat_id, Reply(f"Done: I forgot {removed} items about you.", markdown=False)
        )
        return "Forgotten."
