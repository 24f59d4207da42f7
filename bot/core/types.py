"""Values that cross between a channel and the assistant core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sender:
    id: int
    name: str = ""
    is_admin: bool = False


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
class SentMessage:
    """A handle on a message the transport sent, so it can be edited later."""

    chat_id: int
    message_id: int
