"""One command registry: it feeds the handlers, ``/help`` and Telegram's ``setMyCommands``."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.core.types import Incoming, Reply

if TYPE_CHECKING:
    from bot.core.transport import Transport

Handler = Callable[[Incoming, str, "Transport"], Awaitable[Reply | None]]


@dataclass(frozen=True)
class Command:
    name: str
    description: str  # one line, shown in /help and the Telegram command menu
    handler: Handler
    usage: str = ""  # e.g. "/remember TEXT"; shown when the arguments are wrong
    admin_only: bool = False
    needs_args: bool = False

    def usage_line(self) -> str:
        return f"Usage: {self.usage or '/' + self.name}"


class CommandRegistry:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(self, command: Command) -> None:
        if command.name in self._commands:
            raise ValueError(f"command /{command.name} is registered twice")
        self._commands[command.name] = command

    def replace(self, command: Command) -> None:
        """Swap in the real handler of a command that was registered as not built yet."""
        self._commands[command.name] = command

    def get(self, name: str) -> Command | None:
        return self._commands.get(name.lower())

    def visible_to(self, is_admin: bool) -> list[Command]:
        return [c for c in self._commands.values() if is_admin or not c.admin_only]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._commands.values())

    def help_text(self, is_admin: bool) -> str:
        lines = ["Commands:"]
        for c in self.visible_to(is_admin):
            lines.append(f"{c.usage or '/' + c.name} - {c.description}")
        lines.append("Anything else you write goes to the assistant.")
        return "\n".join(lines)


GROUP_SETTING_REFUSAL = "In a group only an admin can change this."  # its own admins or Familiar's


def may_change_chat_settings(msg: Incoming) -> bool:
    """Per-chat settings (answer mode, persona, training opt-in) apply to everyone in the chat
    (/think on triples the cost of every answer there): in a group only the group's own admins
    and Familiar's admins may change them."""
    return not msg.is_group or msg.sender.is_admin or msg.sender.is_chat_admin


MAX_ID = 2**63 - 1  # SQLite's largest INTEGER
_ID = re.compile(r"#?([0-9]{1,19})")


def parse_id(text: str) -> int | None:
    """A row id typed by a person ("12", "#12"); None for anything else: other scripts' digits
    ("²", "١٢"), signs, or a number past what SQLite can hold."""
    m = _ID.fullmatch(text.strip())
    if m is None:
        return None
    value = int(m.group(1))
    return value if 0 < value <= MAX_ID else None


def parse_command(text: str) -> tuple[str, str] | None:
    """``"/remember@MyBot milk"`` -> ``("remember", "milk")``; None when not a command."""
    if not text.startswith("/") or len(text) < 2:
        return None
    head, _, rest = re.sub(r"\s", " ", text[1:], count=1).partition(" ")
    name = head.split("@", 1)[0].lower()
    if not name or not all(ch.isalnum() or ch == "_" for ch in name):
        return None
    return name, rest.strip()
