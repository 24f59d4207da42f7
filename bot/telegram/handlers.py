"""Telegram updates in, assistant core calls out: access checks, group rules, rate limit, buttons.

``UpdateHandler.handle`` takes one parsed ``telegram.Update``. Nothing from a stranger reaches
the assistant (or an LLM) and nothing of theirs is stored beyond an audit row; every callback
query is answered, whatever happens. Errors go to the ``ErrorReporter``, except Telegram being
unreachable (``NetworkError``, ``RetryAfter``), which is raised so the caller tries again later.

A voice note (audio file, video note) passes the same access, group and rate-limit checks as
text before it is downloaded; its transcript is then answered exactly like typed text, with
"🗣 I heard: ..." shown first and ``Incoming.meta`` saying it came from audio. A document
passes the same checks before it is downloaded (``DocumentReader``); its caption is the question.
So does a photo (``PhotoReader``); the further parts of an album being collected are taken
without spending the rate limit again (the album is one message).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from loguru import logger
from telegram import (
    CallbackQuery,
    Message,
    MessageOriginChannel,
    MessageOriginChat,
    MessageOriginHiddenUser,
    MessageOriginUser,
    MessageReactionUpdated,
    ReactionType,
    ReactionTypeEmoji,
    Update,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, NetworkError, RetryAfter

from agents.voice import Route, VoiceNote
from agents.voice.handler import HEARD_NOTHING
from bot.core.assistant import Assistant
from bot.core.commands import Command, parse_command
from bot.core.transport import Transport
from bot.core.types import ButtonPress, Incoming, Reaction, Reply, Sender
from bot.core.voice_replies import VoiceReplies
from bot.telegram.access import AccessControl, Role
from bot.telegram.bursts import Bursts
from bot.telegram.documents import DocumentReader
from bot.telegram.limits import Throttle, TokenBucket
from bot.telegram.photos import PhotoReader
from bot.telegram.reporting import ErrorReporter
from bot.telegram.shared_items import as_text, unreadable
from bot.telegram.transport import TOPIC
from bot.telegram.voice import VoiceReader, heard, voice_note
from memory.context import Quoted
from memory.db import Database, storage_fault
from memory.text import has_visible, speaker_label

AnswerCallback = Callable[[str, str], Awaitable[None]]
ChatAdminCheck = Callable[[int, int], Awaitable[bool]]  # (chat id, user id): a group admin?
GROUP_TYPES = (ChatType.GROUP, ChatType.SUPERGROUP)
REFUSAL = (
    "Sorry, this is a private assistant. If its owner gave you an invite code, send /start CODE."
)
BAD_CODE = "That invite code is not valid: it was used already or has expired."
SLOW_DOWN = "You're sending messages faster than I can answer; please wait a moment."
GROUP_NOT_ALLOWED = "I only work in groups an admin has allowed: an admin can send /group on here."
TYPING_EVERY_S = 4.5  # Telegram shows the typing action for about 5 s


@contextlib.asynccontextmanager
async def typing_shown(transport: Transport, chat_id: int) -> AsyncIterator[None]:
    """Keep the chat's "typing..." shown while the body runs (best-effort, as ``typing`` is)."""

    async def keep_typing() -> None:
        while True:
            await transport.typing(chat_id)
            await asyncio.sleep(TYPING_EVERY_S)

    task = asyncio.create_task(keep_typing())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _topic(update: Update) -> tuple[int, int] | None:
    """(chat, topic) of an update from a forum topic (a message in it, a button under one)."""
    message = update.effective_message
    if message is None or not message.is_topic_message or message.message_thread_id is None:
        return None
    return message.chat.id, message.message_thread_id


def _emoji(reactions: Sequence[ReactionType]) -> tuple[str, ...]:
    """The plain emoji of a message's reactions (custom and paid ones are none of them)."""
    return tuple(r.emoji for r in reactions if isinstance(r, ReactionTypeEmoji))


@dataclass
class BotIdentity:
    id: int = 0
    username: str = ""


class UpdateHandler:
    def __init__(
        self,
        db: Database,
        assistant: Assistant,
        transport: Transport,
        access: AccessControl,
        reporter: ErrorReporter,
        answer_callback: AnswerCallback,
        bucket: TokenBucket,
        refusal_interval_s: float = 3600.0,
        voice: VoiceReader | None = None,
        documents: DocumentReader | None = None,
        voice_replies: VoiceReplies | None = None,
        chat_admin: ChatAdminCheck | None = None,
        photos: PhotoReader | None = None,
        bursts: Bursts | None = None,
    ) -> None:
        self.db = db
        self.chat_admin = chat_admin  # None: nobody counts as a group admin
        self.assistant = assistant
        self.transport = transport
        self.access = access
        self.reporter = reporter
        self.answer_callback = answer_callback
        self.bucket = bucket
        self.voice = voice  # None: recordings get the "can't read" notice
        self.documents = documents  # None: files get the "can't read" notice
        self.voice_replies = voice_replies  # None: voice notes are answered in text only
        self.photos = photos  # None: photos get the "can't read" notice
        self.bursts = bursts  # None: every message is answered, even one of a burst
        self.me = BotIdentity()
        self.refusals = Throttle(refusal_interval_s)
        self.notices = Throttle(60.0)

    def register_commands(self) -> None:
        """Telegram's own commands: the real /invite, /group for admins, /voice."""
        if self.voice_replies is not None and self.assistant.commands.get("voice") is None:
            self.voice_replies.register(self.assistant)
        self.assistant.commands.replace(
            Command(
                "invite",
                "Make a one-time invite code (admins)",
                self._invite,
                usage="/invite",
                admin_only=True,
            )
        )
        if self.assistant.commands.get("group") is None:
            self.assistant.commands.add(
                Command(
                    "group",
                    "Allow or stop me in this group (admins)",
                    self._group,
                    usage="/group on|off",
                    admin_only=True,
                    needs_args=True,
                )
            )

    # -- entry ----------------------------------------------------------------------------
    async def handle(self, update: Update) -> None:
        chat_id = update.effective_chat.id if update.effective_chat else None
        topic = TOPIC.set(_topic(update))  # answers go into the topic the update came from
        try:
            await self._handle(update, chat_id)
        finally:
            TOPIC.reset(topic)

    async def _handle(self, update: Update, chat_id: int | None) -> None:
        try:
            if update.callback_query is not None:
                await self.on_callback(update.callback_query)
            elif update.message is not None:
                await self.on_message(update.update_id, update.message)
                await self.transport.settle(update.message.chat.id)
            elif update.edited_message is not None:
                await self.on_edit(update.update_id, update.edited_message)
                await self.transport.settle(update.edited_message.chat.id)
            elif update.message_reaction is not None:
                await self.on_reaction(update.message_reaction)
            # Other kinds (channel posts, member changes) are not for the assistant.
        except (RetryAfter, NetworkError) as exc:
            if isinstance(exc, BadRequest):
                await self.reporter.report(exc, update.update_id, chat_id)
                return
            raise
        except Exception as exc:
            if storage_fault(exc) is not None:
                raise  # the dispatcher tells the sender and tries again once storage works
            await self.reporter.report(exc, update.update_id, chat_id)

    # -- messages ---------------------------------------------------------------------------
    def _addressed(self, message: Message, text: str) -> tuple[bool, str]:
        """In a group: is the bot mentioned, replied to, or commanded? Returns the text without the mention."""
        username = self.me.username
        parsed = parse_command(text)
        if parsed is not None:
            head = text.split(" ", 1)[0]
            target = head.partition("@")[2]
            return (not target or target.lower() == username.lower()), text
        reply = message.reply_to_message
        if reply is not None and reply.from_user is not None and reply.from_user.id == self.me.id:
            return True, text
        mention = f"@{username}".lower()
        if username and mention in text.lower():
            start = text.lower().index(mention)
            return True, (text[:start] + text[start + len(mention) :]).strip()
        return False, text

    def _quoted(self, message: Message) -> Quoted | None:
        """What a message replies to, for the model: the part quoted, else the whole text or
        caption of the message replied to; None for a reply to something without text."""
        reply = message.reply_to_message
        if reply is None:
            return None
        part = message.quote.text if message.quote is not None else None
        text = part or reply.text or reply.caption or ""
        if not has_visible(text):
            return None
        author = reply.from_user
        if author is not None and author.id == self.me.id:
            who = "assistant"
        elif (
            author is not None
            and message.from_user is not None
            and author.id == message.from_user.id
        ):
            who = "self"
        else:
            who = speaker_label(author.first_name if author is not None else "") or "someone"
        return Quoted(text, who)

    def _reads(self) -> list[str]:
        """What this daemon reads, for the notice to a message it cannot."""
        kinds = {
            "a voice message": self.voice,
            "a photo": self.photos,
            "a document": self.documents,
        }
        return ["text", *(kind for kind, reader in kinds.items() if reader is not None)]

    def _forwarded_from(self, message: Message) -> str:
        """Who wrote a forwarded message, for the model ("" when it is not forwarded, or is the
        sender's own message passed on: their words all the same)."""
        origin = message.forward_origin
        if origin is None:
            return ""
        name = ""
        if isinstance(origin, MessageOriginUser):
            user = origin.sender_user
            if user.id == self.me.id:
                return "you (the assistant)"
            if message.from_user is not None and user.id == message.from_user.id:
                return ""
            name = user.full_name
        elif isinstance(origin, MessageOriginHiddenUser):
            name = origin.sender_user_name
        elif isinstance(origin, MessageOriginChat):
            name = origin.sender_chat.title or ""
        elif isinstance(origin, MessageOriginChannel):
            name = f"the channel {origin.chat.title or ''}"
        return speaker_label(name) or "someone"

    async def on_message(self, update_id: int, message: Message) -> None:
        user, chat = message.from_user, message.chat
        if user is None or user.is_bot or chat.type == ChatType.CHANNEL:
            return
        text = message.text if message.text is not None else message.caption
        if text is None:
            text = as_text(message)  # a location, a contact, a poll, a sticker: written out
        is_group = chat.type in GROUP_TYPES
        album_part = self.photos is not None and bool(message.photo) and self.photos.joins(message)
        if is_group:
            addressed, text = self._addressed(message, text or "")
            if not addressed and not album_part:
                return
        role = self.access.role(user.id)
        parsed = parse_command(text or "")
        if not is_group and role is Role.STRANGER:
            if parsed is not None and parsed[0] == "start" and parsed[1]:
                if await self.db.run(self.access.redeem, parsed[1], user.id):
                    await self.db.run(self.access.audit, user.id, chat.id, "invite redeemed")
                    role, text = Role.USER, "/start"
                else:
                    await self.db.run(self.access.audit, user.id, chat.id, "invite code rejected")
                    await self._notice(chat.id, BAD_CODE, key=("code", user.id))
                    return
            else:
                await self._refuse(user.id, chat.id)
                return
        if is_group and not self.access.group_allowed(chat.id):
            if not (parsed is not None and parsed[0] == "group" and role is Role.ADMIN):
                await self.db.run(self.access.audit, user.id, chat.id, "group not allowed")
                if role is not Role.STRANGER:
                    await self._notice(chat.id, GROUP_NOT_ALLOWED, key=("group", chat.id))
                return
        note = voice_note(message) if self.voice is not None and parsed is None else None
        document = message.document if self.documents is not None and parsed is None else None
        photo = bool(message.photo) and self.photos is not None and parsed is None
        # A picture sent as a file: a photo, not a document to read as text.
        picture = (
            message.document
            if self.photos is not None
            and parsed is None
            and message.document is not None
            and (message.document.mime_type or "").startswith("image/")
            else None
        )
        if not text and note is None and document is None and not photo and picture is None:
            if not is_group:
                await self._notice(
                    chat.id, unreadable(message, self._reads()), key=("text", user.id)
                )
            return
        # A forward with more of the sender's text behind it, or the comment before forwards
        # (``Bursts``): stored, not answered.
        plain = parsed is None and not (note or document or photo or picture)
        kept = False
        if plain and not is_group and self.bursts is not None:
            if message.forward_origin is not None:
                kept = await self.bursts.continued(update_id, chat.id, user.id)
            else:  # the comment sent before forwards that wait already
                kept = await self.bursts.introduces(update_id, chat.id, user.id)
        if not album_part and not kept and not self.bucket.take(user.id):
            await self._notice(chat.id, SLOW_DOWN, key=("slow", user.id))
            return
        reply_to = message.reply_to_message.message_id if message.reply_to_message else None
        quoted = self._quoted(message)
        # Asked only where it matters: a command in a group (per-chat settings are commands).
        chat_admin = (
            is_group
            and parsed is not None
            and role is not Role.ADMIN
            and self.chat_admin is not None
            and await self.chat_admin(chat.id, user.id)
        )
        incoming = Incoming(
            chat.id,
            Sender(
                user.id,
                user.first_name or user.username or "",
                role is Role.ADMIN,
                is_chat_admin=bool(chat_admin),
            ),
            text or "",
            message_id=message.message_id,
            is_group=is_group,
            channel="telegram",
            meta={"update_id": update_id, "reply_to_message_id": reply_to},
            quoted=quoted,
            forwarded_from=self._forwarded_from(message),
        )
        if parsed is not None:
            await self.assistant.handle(incoming, self.transport)
            return
        if kept:
            await self.assistant.keep(incoming, self.transport)
            return
        async with typing_shown(self.transport, chat.id):
            if photo:
                assert self.photos is not None
                await self.photos.receive(incoming, message, text or "", self.transport)
            elif picture is not None:
                assert self.photos is not None
                await self.photos.receive_file(incoming, picture, text or "", self.transport)
            elif document is not None:
                assert self.documents is not None
                await self.documents.receive(incoming, document, text or "", self.transport)
            elif note is not None:
                await self._answer_voice(incoming, note)
            else:
                await self.assistant.handle(incoming, self.transport)

    async def on_edit(self, update_id: int, message: Message) -> None:
        """A text message edited after it was sent: its new words go to the assistant core
        (``Assistant.edited``), past the same checks as a new message, except that a stranger
        is not told anything again. A caption edited (a photo's, a document's) changes nothing:
        the file was read with the words it came with."""
        user, chat, text = message.from_user, message.chat, message.text
        if user is None or user.is_bot or chat.type == ChatType.CHANNEL or text is None:
            return
        is_group = chat.type in GROUP_TYPES
        role = self.access.role(user.id)
        if is_group:
            addressed, text = self._addressed(message, text)
            if not addressed or not self.access.group_allowed(chat.id):
                return
        elif role is Role.STRANGER:
            await self.db.run(self.access.audit, user.id, chat.id, "refused edit")
            return
        if not self.bucket.take(user.id):  # answering it again is a model call like any other
            await self._notice(chat.id, SLOW_DOWN, key=("slow", user.id))
            return
        edited = message.edit_date or message.date
        incoming = Incoming(
            chat.id,
            Sender(user.id, user.first_name or user.username or "", role is Role.ADMIN),
            text,
            message_id=message.message_id,
            is_group=is_group,
            channel="telegram",
            meta={"update_id": update_id, "edit": int(edited.timestamp())},
        )
        async with typing_shown(self.transport, chat.id):
            await self.assistant.edited(incoming, self.transport)

    async def _answer_voice(self, incoming: Incoming, note: VoiceNote) -> None:
        """Transcribe, show what was heard, then answer the transcript as if it had been typed.

        The caption (if any) only served to address the bot in a group; what was said is the
        message. A failed transcription gets its reply and nothing reaches the assistant; one
        the engine could not do is kept with its route, to be answered by ``VoiceRetry``.
        """
        assert self.voice is not None
        sender = incoming.sender
        route = Route(
            incoming.chat_id,
            sender.id,
            sender.name,
            sender.is_admin,
            incoming.message_id,
            incoming.is_group,
            incoming.forwarded_from,
        )
        outcome = await self.voice.read(note, route)
        if not outcome.ok:
            await self.transport.send(
                incoming.chat_id, Reply(outcome.reply or HEARD_NOTHING, markdown=False)
            )
            return
        await self.transport.send(incoming.chat_id, Reply(outcome.heard_line(), markdown=False))
        if self.voice_replies is None:
            await self.assistant.handle(heard(incoming, outcome), self.transport)
        else:
            await self.voice_replies.answer(
                heard(incoming, outcome), self.assistant, self.transport
            )

    async def _refuse(self, user_id: int, chat_id: int) -> None:
        await self.db.run(self.access.audit, user_id, chat_id, "refused stranger")
        logger.info("refused a message from stranger {}", user_id)
        if self.refusals.allow(user_id):
            await self._send_notice(chat_id, REFUSAL)

    async def _notice(self, chat_id: int, text: str, key: object) -> None:
        if self.notices.allow(key):
            await self._send_notice(chat_id, text)

    async def _send_notice(self, chat_id: int, text: str) -> None:
        await self.transport.send(chat_id, Reply(text, markdown=False))

    def _may_act(self, chat_id: int, chat_type: str, user_id: int, role: Role) -> bool:
        """Whether a press or a reaction is taken: in a group, anyone's where the group is
        allowed; else only the person's own private chat's, and not a stranger's."""
        if chat_type in GROUP_TYPES:
            return self.access.group_allowed(chat_id)
        return role is not Role.STRANGER and chat_id == user_id

    # -- reactions ----------------------------------------------------------------------------
    async def on_reaction(self, update: MessageReactionUpdated) -> None:
        """A reaction set on a message (Telegram sends those on the bot's own in private chats,
        and in groups where it is an administrator): to the core, from the people a button
        press would be taken from; an anonymous one (a chat reacting) changes nothing."""
        user, chat = update.user, update.chat
        if user is None or user.is_bot:
            return
        role = self.access.role(user.id)
        if not self._may_act(chat.id, chat.type, user.id, role):
            await self.db.run(self.access.audit, user.id, chat.id, "refused reaction")
            return
        if not self.bucket.take(user.id):  # a 👎 asks what was wrong: a message of ours
            return
        reaction = Reaction(
            chat.id,
            Sender(user.id, user.first_name or "", role is Role.ADMIN),
            update.message_id,
            _emoji(update.new_reaction),
            _emoji(update.old_reaction),
        )
        await self.assistant.react(reaction, self.transport)

    # -- buttons ------------------------------------------------------------------------------
    async def on_callback(self, query: CallbackQuery) -> None:
        notice = ""
        try:
            notice = await self._press(query)
        finally:
            try:
                await self.answer_callback(query.id, notice[:190])
            except Exception as exc:  # answering is best-effort; the press was handled
                logger.warning("answerCallbackQuery failed: {}", exc)

    async def _press(self, query: CallbackQuery) -> str:
        user, message = query.from_user, query.message
        if message is None or not isinstance(message, Message):
            return "This button has expired."
        chat = message.chat
        role = self.access.role(user.id)
        if not self._may_act(chat.id, chat.type, user.id, role) or user.is_bot:
            await self.db.run(self.access.audit, user.id, chat.id, "refused button")
            return "This button isn't for you."
        if not self.bucket.take(user.id):
            return SLOW_DOWN
        press = ButtonPress(
            chat.id,
            Sender(user.id, user.first_name or "", role is Role.ADMIN),
            (query.data or "")[:64],
            message_id=message.message_id,
            channel="telegram",
        )
        return await self.assistant.press(press, self.transport)

    # -- Telegram-only commands -----------------------------------------------------------------
    async def _invite(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        code, _ = await self.db.run(self.access.create_invite, msg.sender.id, msg.key)
        hours = self.access.invite_ttl_s / 3600
        link = f"\nOr open https://t.me/{self.me.username}?start={code}" if self.me.username else ""
        return Reply(
            f"Invite code: {code}\nIt works once, for {hours:g} hours: the new person sends "
            f"/start {code} to me.{link}",
            markdown=False,
        )

    async def _group(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        if not msg.is_group:
            return Reply("Send /group on inside the group you want me in.", markdown=False)
        choice = args.strip().lower()
        if choice not in ("on", "off"):
            return Reply("Usage: /group on|off", markdown=False)
        await self.db.run(self.access.set_group, msg.chat_id, choice == "on", msg.sender.id)
        if choice == "on":
            return Reply(
                "I'll answer here when I'm mentioned, replied to, or given a command.",
                markdown=False,
            )
        return Reply("I'll stay quiet in this group.", markdown=False)
