"""Values that cross between a channel and the assistant core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.providers.base import ImageBlock
from memory.context import Quoted
from memory.text import speaker_label

# Channels whose message ids name a message for good (replayed updates carry the same id).
DURABLE_ID_CHANNELS = frozenset({"telegram", "task"})  # task: ``AgentTask.run_id``


@dataclass(frozen=True)
class Sender:
    id: int
    name: str = ""
    is_admin: bool = False  # one of Familiar's admins
    is_chat_admin: bool = False  # an administrator of the group the message came from


@dataclass(frozen=True)
class Incoming:
    """One message from a person, already authorised by the channel."""

    chat_id: int
    sender: Sender
    text: str
    message_id: int | None = None
    is_group: bool = False
    channel: str = "console"
    meta: dict[str, Any] = field(default_factory=dict)
    # What the model sees with the message but memory does not keep as the person's words:
    # a document or web page they sent (already stored as chunks of its own).
    attachment: str = ""
    # Photos the person sent with it (already checked and stored), for a model with vision.
    images: tuple[ImageBlock, ...] = ()
    # The message this one replies to, for the model (not kept as the person's words).
    quoted: Quoted | None = None
    # Forwarded: who wrote it (a name, a chat's title); "" for the sender's own message. Shown to
    # the model as someone else's words, and no fact about the sender is learnt from it.
    forwarded_from: str = ""

    @property
    def key(self) -> str | None:
        """Names this message for good: a write keyed on it is done once, however often the
        update is replayed. None where the channel's ids do not outlive the process (the
        console counts from 1 each session)."""
        if self.message_id is None or self.channel not in DURABLE_ID_CHANNELS:
            return None
        return f"{self.channel}:{self.chat_id}:{self.message_id}"

    @property
    def speaker(self) -> str:
        """In a group chat, the sender's name, which labels their turns for the model ("Ann:
        ...", ``memory.context.labelled``) so it can tell who said what; "" in a private chat."""
        if not self.is_group:
            return ""
        if self.channel == "task":  # a scheduled task's prompt, run on a member's behalf
            return "scheduled task"
        return speaker_label(self.sender.name) or f"member {self.sender.id}"

    @property
    def labels(self) -> dict[str, str]:
        """Who said it, stored with the turn: ``speaker`` in a group, ``forwarded_from`` for a
        forwarded message (``memory.context.as_heard`` shows both to the model)."""
        out = {"speaker": self.speaker, "forwarded_from": self.forwarded_from}
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class Button:
    label: str
    data: str  # compact and checked by the core; at most 64 bytes (Telegram's callback_data limit)


@dataclass
class Reply:
    text: str
    buttons: list[list[Button]] = field(default_factory=list)
    markdown: bool = True
    # An assistant answer that carries buttons of its own still gets the feedback row.
    with_feedback: bool = False
    # Not an answer to rate (a progress line, an error message): no feedback row, nothing recorded.
    no_feedback: bool = False


@dataclass(frozen=True)
class ButtonPress:
    chat_id: int
    sender: Sender
    data: str
    message_id: int | None = None
    channel: str = "console"


@dataclass(frozen=True)
class Reaction:
    """A person set, changed or took back their reaction (emoji) on a message of the bot's."""

    chat_id: int
    sender: Sender
    message_id: int
    emoji: tuple[str, ...]  # what they react with now (empty: taken back)
    before: tuple[str, ...] = ()  # what they reacted with until now


@dataclass(frozen=True)
class SentMessage:
    """A handle on a message the transport sent, so it can be edited later."""

    chat_id: int
    message_id: int
