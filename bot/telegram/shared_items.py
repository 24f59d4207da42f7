"""Things Telegram sends as data rather than text (a location, a place, a contact, a poll, a
sticker), written out as text so they are answered and kept in memory like a message. What
cannot be read (a video, a GIF, a game) gets a notice that names it and says what can be sent
instead.
"""

from __future__ import annotations

import warnings

from telegram import Message
from telegram.warnings import PTBDeprecationWarning

_UNREAD = (  # (Message field, what the notice calls it); the first four only when switched off
    ("voice", "voice messages"),
    ("audio", "audio files"),
    ("video_note", "video messages"),
    ("photo", "photos"),
    ("document", "documents"),
    ("video", "videos"),
    ("animation", "GIFs"),
    ("game", "games"),
    ("story", "stories"),
    ("paid_media", "paid media"),
    ("invoice", "invoices"),
)


def _line(text: str) -> str:
    """A name, address or option on one line (Telegram allows line breaks in them)."""
    return " ".join(text.split())


def _place(latitude: float, longitude: float) -> str:
    # Coordinates only: a map link in the text would be taken for a link to read (and fetched).
    return f"{latitude:.6f}, {longitude:.6f}"


def as_text(message: Message) -> str | None:
    """The message written out as text, or None when it is not one of these kinds."""
    if message.venue is not None:
        venue = message.venue
        where = _place(venue.location.latitude, venue.location.longitude)
        return f"📍 Shared a place: {_line(venue.title)}, {_line(venue.address)} — {where}"
    if message.location is not None:
        loc = message.location
        with warnings.catch_warnings():  # PTB 22 moves live_period to timedelta: either will do
            warnings.simplefilter("ignore", PTBDeprecationWarning)
            live = " (shared live; later moves are not followed)" if loc.live_period else ""
        return f"📍 Shared a location: {_place(loc.latitude, loc.longitude)}{live}"
    if message.contact is not None:
        contact = message.contact
        name = _line(f"{contact.first_name} {contact.last_name or ''}")
        return f"👤 Shared a contact: {name}, phone {contact.phone_number}"
    if message.poll is not None:
        poll = message.poll
        options = "\n".join(f"- {_line(o.text)}" for o in poll.options)
        return f"📊 Shared a poll: {_line(poll.question)}\n{options}"
    if message.sticker is not None:
        emoji = message.sticker.emoji
        return f"[a sticker: {emoji}]" if emoji else "[a sticker]"
    if message.dice is not None:
        return f"🎲 Rolled {message.dice.emoji}: {message.dice.value}"
    return None


def unreadable(message: Message, reads: list[str]) -> str:
    """The notice for a message with nothing to read: what it was, and what can be sent
    (``reads``: what this daemon reads, "text" first)."""
    kind = next((name for field, name in _UNREAD if getattr(message, field, None)), "")
    what = ", ".join(reads[:-1]) + f" or {reads[-1]}" if len(reads) > 1 else reads[0]
    if kind:
        return f"I can't read {kind} here: send {what}."
    return f"I can't read that kind of message: send {what}."
