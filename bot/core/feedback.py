"""Feedback on answers: 👍 👎 🔁 📌 buttons under every answer, votes stored for digests and training.

Channel-agnostic: ``Feedback.install(assistant)`` wraps the answer path so every message it
sends carries the buttons, registers the ``fb`` button prefix and an interceptor that takes a
reply to "what was wrong?" as the reason of a 👎.

Button data is ``fb:<action><answer id, base 36>.<signature>`` (about 25 bytes; Telegram allows
64), signed by ``ButtonSigner`` for the chat with a key kept in the database, so a forged,
malformed or foreign press (data copied to another chat) is refused without a write.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

from bot.core.commands import parse_command
from bot.core.signing import ButtonSigner
from bot.core.transport import Transport
from bot.core.types import (
    Button,
    ButtonPress,
    Incoming,
    Reaction,
    Reply,
    Sender,
    SentMessage,
)
from memory.db import Database

if TYPE_CHECKING:
    from bot.core.assistant import Assistant

PREFIX = "fb"
ACTIONS = {"u": "👍", "d": "👎", "r": "🔁", "p": "📌"}
_DATA = re.compile(r"^([udrp])([0-9a-z]{1,12})$")
KEY_NAME = "feedback_hmac"
ASK_REASON = "What was wrong? Reply to this message to tell me (optional)."
# Reactions set on an answer that count as its 👍 or 👎 (compared without variation selectors).
LIKED = frozenset("👍 ❤ 🔥 👏 💯 🎉 🥰 😍 🤩 👌 🏆".split())
DISLIKED = frozenset("👎 💩 🤮 🤬".split())


def rating_of(emoji: tuple[str, ...]) -> int:
    """A set of reactions as a vote: 1, -1, or 0 (none of those, or both kinds at once)."""
    plain = {e.replace("\ufe0f", "") for e in emoji}
    liked, disliked = bool(plain & LIKED), bool(plain & DISLIKED)
    return 0 if liked == disliked else (1 if liked else -1)


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@dataclass(frozen=True)
class Answer:
    id: int
    channel: str
    chat_id: int
    user_id: int
    prompt: str
    text: str
    created_at: float


class FeedbackStore:
    """The SQL side: answers, votes, reason prompts, and the signing key. Synchronous; call it
    through ``Database.run`` from the event loop."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def key(self) -> bytes:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT value FROM bot_secrets WHERE name = ?", (KEY_NAME,)
            ).fetchone()
            if row:
                return bytes(row[0])
            key = secrets.token_bytes(32)
            conn.execute("INSERT INTO bot_secrets (name, value) VALUES (?, ?)", (KEY_NAME, key))
            return key

    def add_answer(self, channel: str, chat_id: int, user_id: int, prompt: str, text: str) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO feedback_answers (channel, chat_id, user_id, prompt, answer, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (channel, chat_id, user_id, prompt, text, time.time()),
            )
            return int(cur.lastrowid or 0)

    async def forget_user(self, user_id: int) -> int:
        """/forgetme: the person's answered prompts (with every vote and reason on them) and
        their votes and reasons on others' answers; how many rows."""
        return await self.db.run(self._forget_user, user_id)

    def _forget_user(self, user_id: int) -> int:
        with self.db.transaction() as conn:
            votes = conn.execute("DELETE FROM feedback WHERE user_id = ?", (user_id,)).rowcount
            asked = conn.execute(
                "DELETE FROM feedback_answers WHERE user_id = ?", (user_id,)
            ).rowcount
            conn.execute("DELETE FROM feedback_reason_prompts WHERE user_id = ?", (user_id,))
            return int(votes + asked)

    def shown_in(self, answer_id: int, message_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE feedback_answers SET message_id = ? WHERE id = ?", (message_id, answer_id)
            )

    def answer_in(self, chat_id: int, message_id: int) -> Answer | None:
        """The answer shown in that message of the chat, if it was recorded."""
        return self._answer_where("chat_id = ? AND message_id = ?", chat_id, message_id)

    def unvote(self, answer_id: int, user_id: int) -> bool:
        """Take a vote back (its reaction was); False when there was none."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM feedback WHERE answer_id = ? AND user_id = ?", (answer_id, user_id)
            )
            return cur.rowcount > 0

    def set_text(self, answer_id: int, text: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE feedback_answers SET answer = ? WHERE id = ?", (text, answer_id))

    def answer(self, answer_id: int) -> Answer | None:
        return self._answer_where("id = ?", answer_id)

    def _answer_where(self, where: str, *params: object) -> Answer | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT id, channel, chat_id, user_id, prompt, answer, created_at"
                f" FROM feedback_answers WHERE {where}",
                params,
            ).fetchone()
        return Answer(*row) if row else None

    def vote(self, answer_id: int, user_id: int, chat_id: int, rating: int) -> int | None:
        """Store or change a vote; returns the previous rating (None for a first vote)."""
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT rating FROM feedback WHERE answer_id = ? AND user_id = ?",
                (answer_id, user_id),
            ).fetchone()
            conn.execute(
                "INSERT INTO feedback (answer_id, user_id, chat_id, rating, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (answer_id, user_id) DO UPDATE SET"
                " rating = excluded.rating, updated_at = excluded.updated_at",
                (answer_id, user_id, chat_id, rating, now, now),
            )
            return int(row[0]) if row else None

    def add_reason_prompt(
        self, chat_id: int, message_id: int, answer_id: int, user_id: int
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO feedback_reason_prompts VALUES (?, ?, ?, ?, ?)",
                (chat_id, message_id, answer_id, user_id, time.time()),
            )

    def take_reason(self, chat_id: int, message_id: int, user_id: int, reason: str) -> bool:
        """Attach ``reason`` to the 👎 the prompt asked about; False when there is no such prompt."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT answer_id FROM feedback_reason_prompts"
                " WHERE chat_id = ? AND message_id = ? AND user_id = ?",
                (chat_id, message_id, user_id),
            ).fetchone()
            if not row:
                return False
            conn.execute(
                "UPDATE feedback SET reason = ?, updated_at = ? WHERE answer_id = ? AND user_id = ?",
                (reason[:2000], time.time(), row[0], user_id),
            )
            conn.execute(
                "DELETE FROM feedback_reason_prompts WHERE chat_id = ? AND message_id = ?",
                (chat_id, message_id),
            )
            return True


class Feedback:
    """Buttons, checked presses and votes. Build one per daemon and ``install`` it."""

    def __init__(self, db: Database, max_age_days: float = 30.0, ask_reason: bool = True) -> None:
        self.db = db
        self.store = FeedbackStore(db)
        self.max_age_s = max_age_days * 86400
        self.ask_reason = ask_reason
        self._key: bytes | None = None
        self.assistant: Assistant | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def load_key(self) -> None:
        self._key = await self.db.run(self.store.key)

    def install(self, assistant: Assistant) -> None:
        self.assistant = assistant
        assistant.buttons[PREFIX] = self.on_press
        assistant.answer_wrapper = lambda msg, transport: FeedbackTransport(transport, self, msg)
        assistant.interceptors.append(self.intercept_reason)
        assistant.on_reaction = self.on_reaction

    # -- button data -----------------------------------------------------------------------
    def _signer(self) -> ButtonSigner:
        if self._key is None:
            raise RuntimeError("Feedback.load_key() was not awaited")
        return ButtonSigner(self._key)

    def data(self, action: str, answer_id: int, chat_id: int) -> str:
        return self._signer().data(PREFIX, f"{action}{_b36(answer_id)}", chat_id)

    def buttons(self, answer_id: int, chat_id: int) -> list[list[Button]]:
        return [
            [
                Button(label, self.data(action, answer_id, chat_id))
                for action, label in ACTIONS.items()
            ]
        ]

    def parse(self, payload: str, chat_id: int) -> tuple[str, int] | None:
        """``(action, answer_id)`` when the payload is well formed and signed for this chat."""
        verified = self._signer().verify(PREFIX, payload, chat_id)
        m = _DATA.match(verified) if verified is not None else None
        if not m:
            return None
        return m.group(1), int(m.group(2), 36)

    # -- recording answers -----------------------------------------------------------------
    async def record(self, msg: Incoming, text: str) -> int:
        return await self.db.run(
            self.store.add_answer, msg.channel, msg.chat_id, msg.sender.id, msg.text, text
        )

    # -- presses -----------------------------------------------------------------------------
    async def on_press(self, press: ButtonPress, payload: str, transport: Transport) -> str:
        parsed = self.parse(payload, press.chat_id)
        if parsed is None:
            logger.info(
                "refused a feedback button that does not check out (chat {})", press.chat_id
            )
            return "This button isn't valid here."
        action, answer_id = parsed
        answer = await self.db.run(self.store.answer, answer_id)
        if answer is None or answer.chat_id != press.chat_id:
            return "This answer is no longer available."
        if time.time() - answer.created_at > self.max_age_s:
            return "This button has expired."
        if action in ("u", "d"):
            rating = 1 if action == "u" else -1
            return await self._vote(press.chat_id, press.sender, answer, rating, transport)
        if press.sender.id != answer.user_id:
            return "Only the person who asked can do that."
        if action == "r":
            self._spawn(self._regenerate(press, answer, transport))
            return "🔁 Answering again…"
        return await self._pin(press, answer, transport)

    async def on_reaction(self, reaction: Reaction, transport: Transport) -> None:
        """A reaction set on an answer: a liked one (``LIKED``) is its 👍, a disliked one its
        👎 (asking what was wrong, as the button does); taken back, or changed to one that is
        neither, the vote it made is taken back. Other messages' reactions change nothing."""
        rating, before = rating_of(reaction.emoji), rating_of(reaction.before)
        if rating == 0 and before == 0:
            return
        answer = await self.db.run(self.store.answer_in, reaction.chat_id, reaction.message_id)
        if answer is None or time.time() - answer.created_at > self.max_age_s:
            return
        if rating == 0:
            await self.db.run(self.store.unvote, answer.id, reaction.sender.id)
            return
        await self._vote(reaction.chat_id, reaction.sender, answer, rating, transport)

    async def _vote(
        self, chat_id: int, sender: Sender, answer: Answer, rating: int, transport: Transport
    ) -> str:
        previous = await self.db.run(self.store.vote, answer.id, sender.id, chat_id, rating)
        icon = "👍" if rating > 0 else "👎"
        if previous == rating:
            return f"You already voted {icon}."
        if rating < 0 and self.ask_reason:
            sent = await transport.send(chat_id, Reply(ASK_REASON, markdown=False))
            await self.db.run(
                self.store.add_reason_prompt, chat_id, sent.message_id, answer.id, sender.id
            )
        return f"Changed to {icon}." if previous is not None else f"Thanks for the {icon}."

    def _incoming(self, press: ButtonPress, answer: Answer, text: str) -> Incoming:
        return Incoming(
            press.chat_id,
            press.sender,
            text,
            is_group=press.chat_id != press.sender.id,
            channel=press.channel,
        )

    async def _regenerate(self, press: ButtonPress, answer: Answer, transport: Transport) -> None:
        assert self.assistant is not None
        await self.assistant.answer(self._incoming(press, answer, answer.prompt), transport)

    async def _pin(self, press: ButtonPress, answer: Answer, transport: Transport) -> str:
        assert self.assistant is not None
        command = self.assistant.commands.get("remember")
        if command is None:
            return "Remembering is not available."
        msg = self._incoming(press, answer, f"/remember {answer.text}")
        reply = await command.handler(msg, answer.text, transport)
        if reply is not None:
            await transport.send(press.chat_id, reply)
        return "📌 Sent to memory."

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.opt(exception=t.exception()).error("a feedback action failed")

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Wait for regenerations in flight (shutdown, tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- 👎 reasons ---------------------------------------------------------------------------
    async def intercept_reason(self, msg: Incoming, transport: Transport) -> bool:
        reply_to = msg.meta.get("reply_to_message_id")
        if not isinstance(reply_to, int) or parse_command(msg.text) is not None:
            return False
        taken = await self.db.run(
            self.store.take_reason, msg.chat_id, reply_to, msg.sender.id, msg.text
        )
        if taken:
            await transport.send(msg.chat_id, Reply("Thanks, noted.", markdown=False))
        return bool(taken)


def _rated(reply: Reply) -> bool:
    """An answer to rate: not a progress line or an error, and without buttons of its own unless
    it asks for the feedback row under them (a three-pass answer with "show the critique")."""
    return not reply.no_feedback and (not reply.buttons or reply.with_feedback)


class FeedbackTransport(Transport):
    """What the answer path sends through: records each answer and puts the buttons under it."""

    def __init__(self, inner: Transport, feedback: Feedback, msg: Incoming) -> None:
        self.inner = inner
        self.feedback = feedback
        self.msg = msg
        self._answers: dict[tuple[int, int], int] = {}

    async def send(self, chat_id: int, reply: Reply) -> SentMessage:
        if not _rated(reply):
            return await self.inner.send(chat_id, reply)
        answer_id = await self.feedback.record(self.msg, reply.text)
        buttons = [*reply.buttons, *self.feedback.buttons(answer_id, chat_id)]
        sent = await self.inner.send(chat_id, Reply(reply.text, buttons, reply.markdown))
        self._answers[(sent.chat_id, sent.message_id)] = answer_id
        await self.feedback.db.run(self.feedback.store.shown_in, answer_id, sent.message_id)
        return sent

    async def edit(self, message: SentMessage, reply: Reply) -> None:
        answer_id = self._answers.get((message.chat_id, message.message_id))
        if answer_id is None or not _rated(reply):
            await self.inner.edit(message, reply)
            return
        await self.feedback.db.run(self.feedback.store.set_text, answer_id, reply.text)
        buttons = [*reply.buttons, *self.feedback.buttons(answer_id, message.chat_id)]
        await self.inner.edit(message, Reply(reply.text, buttons, reply.markdown))

    async def typing(self, chat_id: int) -> None:
        await self.inner.typing(chat_id)

    async def send_document(
        self, chat_id: int, data: bytes, filename: str, caption: str = ""
    ) -> None:
        await self.inner.send_document(chat_id, data, filename, caption)


__all__ = ["ACTIONS", "Answer", "Feedback", "FeedbackStore", "FeedbackTransport", "Sender"]
