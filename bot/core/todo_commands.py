"""``/todo``: the chat's to-do list (the same list the ``*_todo`` tools keep), with signed ✅ buttons.

``/todo`` lists open items by priority, overdue ones marked; ``/todo [!high|!low] TEXT
[due:WHEN]`` adds one; ``/todo done ID`` completes one and ``/todo rm ID`` (or ``delete``,
``remove``) deletes one, without asking, as ``/forget ID`` does for a memory (in a group, only
the person who added it or an admin). A ✅ press marks that item done, only in the chat the
button was sent to, and redraws the list in place.
"""

from __future__ import annotations

import time
from zoneinfo import ZoneInfo

from loguru import logger

from agents.tools.todos import PRIORITIES, TodoError, TodoStore, render_list
from bot.core.assistant import Assistant
from bot.core.commands import Command, may_change_chat_settings, parse_id
from bot.core.signing import ButtonSigner
from bot.core.transport import Transport
from bot.core.types import Button, ButtonPress, Incoming, Reply, SentMessage

MAX_BUTTONS = 20
USAGE = "/todo [!high|!low] [TEXT] [due:WHEN] | /todo done ID | /todo rm ID"
# A first word that names an action, not a to-do: "/todo done 3" completes #3, it adds nothing.
DONE_WORDS = frozenset({"done", "complete"})
DELETE_WORDS = frozenset({"rm", "delete", "del", "remove"})
LIST_WORDS = frozenset({"list", "ls", "show"})  # alone: the list, as /todo
# Also plain verbs a to-do may start with ("/todo remove the old shelf"): an action only with an id.
VERBS = frozenset({"complete", "delete", "remove"})


def parse_todo_args(args: str) -> tuple[str, str, str | None]:
    """``"!high pay rent due:friday"`` -> ``("pay rent", "high", "friday")``."""
    text, priority = args.strip(), "normal"
    head, _, rest = text.partition(" ")
    if head.startswith("!") and head[1:].lower() in PRIORITIES:
        text, priority = rest.strip(), head[1:].lower()
    due = None
    before, marker, after = text.rpartition("due:")
    if marker and (not before or before.endswith(" ")):
        text, due = before.strip(), after.strip() or None
    return text, priority, due


class TodoCommands:
    def __init__(self, store: TodoStore, signer: ButtonSigner, tz: ZoneInfo) -> None:
        self.store, self.signer, self.tz = store, signer, tz

    def register(self, assistant: Assistant) -> None:
        assistant.commands.add(
            Command(
                "todo",
                "Your to-do list, by priority; /todo TEXT adds one (!high, !low, due:WHEN),"
                " done ID completes one, rm ID deletes one",
                self.todo,
                USAGE,
            )
        )
        assistant.buttons["td"] = self.on_done

    async def todo(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/todo lists; /todo TEXT adds; /todo done ID completes; /todo rm ID deletes."""
        if not args.strip():
            return await self.list(msg.chat_id)
        word, _, rest = args.strip().partition(" ")
        word = word.lower()
        if word in LIST_WORDS and not rest.strip():
            return await self.list(msg.chat_id)
        if word == "add":  # "/todo add buy milk" adds "buy milk"
            if not rest.strip():
                return Reply(f"Usage: {USAGE}", markdown=False)
            args = rest
        if word in DONE_WORDS | DELETE_WORDS and (
            word not in VERBS or not rest.strip() or parse_id(rest) is not None
        ):
            return await self.by_id(msg, word, rest)
        text, priority, due = parse_todo_args(args)
        try:
            todo = await self.store.add(
                msg.chat_id, msg.sender.id, text, priority, due, self.tz, key=msg.key
            )
        except TodoError as exc:
            return Reply(f"{exc}\nUsage: {USAGE}", markdown=False)
        return Reply(f"📝 Added {todo.line(time.time())}", markdown=False)

    async def by_id(self, msg: Incoming, word: str, rest: str) -> Reply:
        chat_id, todo_id = msg.chat_id, parse_id(rest)
        if todo_id is None:
            return Reply(
                f"Usage: /todo {word} ID (the # number /todo shows). To add a to-do that starts"
                f' with "{word}", write /todo !normal {word} …',
                markdown=False,
            )
        try:
            if word in DONE_WORDS:
                todo, changed = await self.store.complete(chat_id, todo_id)
                if not changed:
                    return Reply(f"#{todo.id} was already done: {todo.text}", markdown=False)
                return Reply(f"✅ Done: #{todo.id} {todo.text}", markdown=False)
            # In a group anyone may tick an item off (the ✅ buttons do), but deleting one is for
            # the person who added it and the group's admins.
            owner = None if may_change_chat_settings(msg) else msg.sender.id
            todo = await self.store.delete(chat_id, todo_id, only_by=owner)
        except TodoError as exc:
            return Reply(f"{str(exc)[:1].upper()}{str(exc)[1:]}.", markdown=False)
        return Reply(f"🗑 Deleted #{todo.id} {todo.text}", markdown=False)

    async def list(self, chat_id: int) -> Reply:
        todos = await self.store.open(chat_id)
        if not todos:
            return Reply(f"No open to-dos. Add one: {USAGE}", markdown=False)
        buttons = [
            [Button(f"✅ #{t.id} {t.text[:24]}", self.signer.data("td", str(t.id), chat_id))]
            for t in todos[:MAX_BUTTONS]
        ]
        return Reply(render_list(todos), buttons=buttons, markdown=False)

    async def on_done(self, press: ButtonPress, payload: str, transport: Transport) -> str:
        verified = self.signer.verify("td", payload, press.chat_id)
        if verified is None or not verified.isdigit():
            return "This button isn't valid here."
        try:
            todo, changed = await self.store.complete(press.chat_id, int(verified))
        except TodoError:
            return "That to-do is gone."
        if changed and press.message_id is not None:  # the list shows what is left
            try:
                listing = await self.list(press.chat_id)
                await transport.edit(SentMessage(press.chat_id, press.message_id), listing)
            except Exception:  # the item is done either way; a stale list is no reason to fail
                logger.opt(exception=True).warning("could not refresh the /todo message")
        return f"✅ Done: {todo.text[:150]}" if changed else "That one was already done."
