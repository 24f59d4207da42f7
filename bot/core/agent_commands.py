"""The assistant's answers and the agent commands: plain text, /think, /review, /usage.

Answers stream into one message, edited at most about once a second; three-pass and review runs
show their phase in a status message and end with buttons (show the critique; accept, one more
round, reject), signed so that a forged or foreign press changes nothing. While a tool runs the
streamed message says what it does; an answer that used tools gets a "🔧 steps" button, and one
that waits for the person's OK ends in a question with ✅/❌ buttons (``bot.core.tool_buttons``).
While an answer is being written, its message (or the status line) carries "⏹ Stop": the person
who asked (or an admin) stops it there, the text so far stays, marked stopped, and nothing more is
asked of the model or done by a tool. The press is handled at once, not behind the answer it
stops (``bot.telegram.dispatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, Protocol

from loguru import logger

from agents.chat import Answer, ChatAgent, Edit, source_key
from agents.errors import LLMError
from agents.review import ReviewEngine, ReviewResult
from agents.usage import CallContext, UsageStore
from bot.core.assistant import Assistant
from bot.core.commands import GROUP_SETTING_REFUSAL, Command, may_change_chat_settings
from bot.core.drafts import AnswerDrafts
from bot.core.signing import ButtonSigner
from bot.core.tool_buttons import ToolButtons
from bot.core.transport import Transport
from bot.core.types import Button, ButtonPress, Incoming, Reply, Sender, SentMessage
from jobs.charts import render, usage_figure
from memory.text import MemoryInputError

Mode = Literal["single", "think", "review"]
STOP_PREFIX = "st"  # a Stop button's data: "st:<token>.<mac>" (``bot.telegram.dispatch``)
STOP_LABEL = "⏹ Stop"
STOPPED = "⏹ Stopped."
STOPPABLE_CHANNELS = ("telegram", "task")  # where a press can arrive while the answer runs
EDIT_INTERVAL_S = 1.0
STREAM_MAX_CHARS = 3500  # past this a message may need splitting; the rest arrives at the end
PHASES = {
    "draft": "✍️ Drafting…",
    "critique": "🧐 Critiquing the draft…",
    "refine": "🛠 Refining…",
    "review": "🧑‍⚖️ The panel is reviewing…",
    "revise": "🛠 Revising against the reviews…",
}


@dataclass
class Running:
    """An answer being written, which its Stop button can stop."""

    asker: int
    task: asyncio.Task[Answer]
    stopped: bool = False


class ChatModes(Protocol):
    """Where the per-chat answer mode ("answer everything in three passes") is kept."""

    async def get(self, chat_id: int) -> Mode: ...

    async def set(self, chat_id: int, mode: Mode) -> None: ...


class StreamingReply:
    """Sends the first piece, then edits the same message at most once per interval."""

    def __init__(
        self,
        transport: Transport,
        chat_id: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        resume: SentMessage | None = None,
        on_sent: Callable[[SentMessage], Awaitable[None]] | None = None,
        buttons: list[list[Button]] | None = None,
    ) -> None:
        """``resume``: a message a stream cut off by a restart left; the answer goes there.
        ``on_sent`` is told of the message once it is sent, before anything more streams.
        ``buttons`` go under the text while it streams (Stop); the finished answer has its own."""
        self.transport, self.chat_id, self.clock = transport, chat_id, clock
        self.buttons = buttons or []
        self.sent: SentMessage | None = resume
        self.on_sent = on_sent
        self.last_edit = 0.0
        self.shown = ""
        self.latest = ""  # all the text so far, shown or not yet (edits are throttled)

    async def delta(self, text: str) -> None:
        self.latest = text
        if not text.strip() or len(text) > STREAM_MAX_CHARS:
            return
        now = self.clock()
        if self.sent is None:
            self.sent = await self.transport.send(self.chat_id, self._partial(text + " …"))
            self.last_edit, self.shown = now, text
            if self.on_sent is not None:
                await self.on_sent(self.sent)
        elif now - self.last_edit >= EDIT_INTERVAL_S and text != self.shown:
            await self.transport.edit(self.sent, self._partial(text + " …"))
            self.last_edit, self.shown = now, text

    def _partial(self, text: str) -> Reply:
        # with_feedback: the answer is recorded for the feedback row from its first piece, as
        # without buttons of its own.
        return Reply(text, buttons=self.buttons, markdown=False, with_feedback=bool(self.buttons))

    async def activity(self, label: str) -> None:
        """Show what a tool is doing under the text so far (shown at once, not throttled)."""
        so_far = self.latest[:STREAM_MAX_CHARS]
        text = f"{so_far}\n\n{label}" if so_far.strip() else label
        if self.sent is None:
            self.sent = await self.transport.send(self.chat_id, self._partial(text))
        else:
            await self.transport.edit(self.sent, self._partial(text))
        self.last_edit, self.shown = self.clock(), so_far

    async def finish(self, reply: Reply) -> SentMessage:
        if self.sent is None:
            return await self.transport.send(self.chat_id, reply)
        await self.transport.edit(self.sent, reply)
        return self.sent


def stored_meta(msg: Incoming) -> dict | None:
    """What of a message's channel meta is stored with it: all of it when it was not typed
    (``from_audio``: a voice note's transcript, its file id, engine, ...; ``document``: the file
    or page it came with; ``photos``: the images it came with); typed text stores none. In a
    group, the sender's name as ``speaker``; a forwarded message's author as ``forwarded_from``."""
    kept = msg.meta.get("from_audio") or msg.meta.get("document") or msg.meta.get("photos")
    meta = dict(msg.meta) if kept else {}
    meta.update(msg.labels)
    return meta or None


def format_review(result: ReviewResult) -> str:
    last = result.rounds[-1] if result.rounds else None
    lines = [result.final, "", f"— review: {result.outcome}, {len(result.rounds)} round(s)"]
    if last:
        for review in last.reviews:
            mark = "✅" if review.approve else "✏️"
            lines.append(f"{mark} {review.reviewer}: {review.score:.0f}/10")
    return "\n".join(lines)


def format_critique(transcript: dict) -> str:
    lines = [f"Run #{transcript['run_id']} ({transcript['kind']}, {transcript['outcome']})"]
    for rnd in transcript.get("rounds", []):
        lines.append(f"\nRound {rnd['number']} (mean score {rnd['mean_score']}):")
        for review in rnd.get("reviews", []):
            verdict = "approve" if review.get("approve") else "revise"
            lines.append(f"• {review['reviewer']}: {review['score']}/10, {verdict}")
            for issue in review.get("issues", []):
                lines.append(f"   - [{issue.get('severity')}] {issue.get('text')}")
            if review.get("summary"):
                lines.append(f"   {review['summary']}")
    return "\n".join(lines)


class AgentCommands:
    def __init__(
        self,
        agent: ChatAgent,
        review: ReviewEngine,
        usage: UsageStore,
        signer: ButtonSigner,
        modes: ChatModes,
        drafts: AnswerDrafts | None = None,
        edit_window_s: float = 900.0,
    ) -> None:
        self.agent, self.review, self.usage = agent, review, usage
        # An edited message is answered again when it is the chat's newest and was edited
        # within this long of being sent; an older one is only corrected in memory.
        self.edit_window_s = edit_window_s
        self.signer, self.modes = signer, modes
        self.drafts = drafts  # None: a replayed update's cut-off answer is not found again
        self.tool_buttons: ToolButtons | None = None
        self.assistant: Assistant | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, Running] = {}  # answers being written, by their Stop token

    def register(self, assistant: Assistant) -> None:
        self.assistant = assistant
        assistant.answer_text = self.answer
        assistant.keep_text = self.keep
        assistant.edit_text = self.edited
        replace = assistant.commands.replace
        replace(
            Command(
                "think",
                "Answer in three passes (/think on|off: for every message here)",
                self.think,
                "/think QUESTION | on | off",
                needs_args=True,
            )
        )
        replace(
            Command(
                "review",
                "Have the review panel work on a task",
                self.review_task,
                "/review TASK",
                needs_args=True,
            )
        )
        replace(
            Command(
                "usage",
                "Show your token usage and budget today (/usage week: the last 7 days, as a chart)",
                self.show_usage,
                "/usage [week]",
            )
        )
        assistant.buttons[STOP_PREFIX] = self.on_stop
        assistant.buttons["cq"] = self.on_show_critique
        assistant.buttons["rv"] = self.on_review_decision
        if self.agent.tools is not None:
            self.tool_buttons = ToolButtons(self.agent, self.signer, self)
            self.tool_buttons.register(assistant)

    # -- answering -----------------------------------------------------------------------------
    def _answer_transport(self, msg: Incoming, transport: Transport) -> Transport:
        wrap = self.assistant.answer_wrapper if self.assistant else None
        return wrap(msg, transport) if wrap else transport

    async def answer(self, msg: Incoming, transport: Transport) -> None:
        """Plain text: answered in the chat's mode (single, or three-pass when turned on)."""
        mode = await self.modes.get(msg.chat_id)
        await self._run(msg, msg.text, mode, transport)

    async def keep(self, msg: Incoming, transport: Transport) -> None:
        """Store a message without answering it: one of several forwarded at once, whose last
        message is answered with these in view. Kept under the message's key, so a replay
        stores it once."""
        try:
            await self.agent.memory.store_turn(
                msg.chat_id,
                msg.sender.id,
                "user",
                msg.text,
                telegram_message_id=msg.message_id if msg.key is not None else None,
                meta=stored_meta(msg),
            )
        except MemoryInputError as exc:  # too big to keep: said, as an answer would say it
            await transport.send(
                msg.chat_id,
                Reply(f"⚠️ I can't take that message: {exc}. Please {exc.fix}.", markdown=False),
            )

    async def edited(self, msg: Incoming, transport: Transport) -> None:
        """The person edited a message (``msg``: its new words, ``meta["edit"]`` the edit's
        time). Its stored turn is revised (found by the new words, the old ones left in no
        byte of memory) and read for facts again; when it is the chat's newest turn and was
        edited within ``edit_window_s`` of being sent, it is answered again, in a new message
        (the model told that its earlier answer was to the earlier words). A message never
        stored (a command, one not for the bot) changes nothing."""
        if msg.message_id is None:
            return
        at = int(msg.meta.get("edit") or time.time())
        memory = self.agent.memory
        try:
            revision = await memory.revise_turn(
                msg.chat_id, msg.message_id, msg.text, {"edited_at": at}
            )
        except MemoryInputError as exc:  # as a new message that cannot be kept is told
            await transport.send(
                msg.chat_id,
                Reply(
                    f"⚠️ I can't take that edit: {exc}. Please {exc.fix}.",
                    markdown=False,
                    no_feedback=True,
                ),
            )
            return
        if revision is None:
            return
        if revision.changed:
            logger.info("message {} in chat {} was edited", msg.message_id, msg.chat_id)
            await self.agent.relearn(msg.chat_id, msg.sender.id, revision.message_id)
        if not revision.latest or at - revision.ts > self.edit_window_s:
            return
        mode = await self.modes.get(msg.chat_id)
        await self._run(msg, msg.text, mode, transport, Edit(revision.message_id, at))

    async def _run(
        self,
        msg: Incoming,
        text: str,
        mode: Mode,
        transport: Transport,
        edit: Edit | None = None,
    ) -> Answer:
        # An answer after an edit is not a draft of the message's: the first answer's is done.
        drafts = self.drafts if edit is None else None
        draft = await drafts.get(msg) if drafts is not None else None
        if draft is not None and draft.done:
            # Answered in full before the daemon stopped; only the inbox's done mark was lost.
            logger.info("message {} in chat {} was answered already", msg.message_id, msg.chat_id)
            return Answer("", mode, replayed=True)
        await transport.typing(msg.chat_id)

        async def started(sent: SentMessage) -> None:
            if drafts is not None:
                await drafts.started(msg, sent)

        token, stop = self._stop_button(msg.chat_id, msg.channel)
        stream = StreamingReply(
            transport,
            msg.chat_id,
            resume=draft.sent if draft is not None else None,
            on_sent=started,
            buttons=stop,
        )
        status: SentMessage | None = None

        async def finish(reply: Reply) -> None:
            sent = await stream.finish(reply)
            if drafts is not None:
                await drafts.finished(msg, sent)

        async def progress(phase: str) -> None:
            nonlocal status
            label = PHASES.get(phase, f"{phase}…")
            try:
                line = Reply(label, buttons=stop, markdown=False, no_feedback=True)
                if status is None:
                    status = await transport.send(msg.chat_id, line)
                else:
                    await transport.edit(status, line)
            except Exception:  # progress is decoration: never lose the answer over it
                logger.opt(exception=True).debug("progress update failed")

        answer = await self._stoppable(
            token,
            msg.chat_id,
            msg.sender.id,
            self.agent.answer(
                msg.chat_id,
                msg.sender.id,
                text,
                mode=mode,
                is_admin=msg.sender.is_admin,
                telegram_message_id=msg.message_id if msg.key is not None else None,
                on_delta=stream.delta if mode == "single" else None,
                progress=progress if mode != "single" else None,
                meta=stored_meta(msg),
                on_activity=stream.activity if mode == "single" else None,
                attachment=msg.attachment,
                images=msg.images,
                quoted=msg.quoted,
                edit=edit,
            ),
        )
        if answer is not None and answer.replayed and edit is not None:
            return answer  # answered after this edit already (a replayed edit): nothing again
        if answer is None:
            # Stopped by the person: the text so far stays, marked; it is not kept as an answer,
            # and the inbox's replay after a restart finds it finished.
            line = Reply(STOPPED, markdown=False, no_feedback=True)
            if status is not None:
                with contextlib.suppress(Exception):
                    await transport.edit(status, line)
            if status is not None and stream.sent is None:  # three passes: the status says it
                if drafts is not None:
                    await drafts.finished(msg, status)
            else:
                done = None
                if msg.key is not None and msg.message_id is not None:
                    done = await self._steps_done(
                        source_key=source_key(msg.chat_id, msg.message_id, edit)
                    )
                await finish(self._stopped_reply(stream, done))
            return Answer(STOPPED, mode, error="stopped")
        if answer.error:
            if status is not None:  # its Stop button goes: nothing is running any more
                with contextlib.suppress(Exception):
                    await transport.edit(status, Reply("Not finished.", markdown=False))
            await finish(Reply(answer.text, markdown=False, no_feedback=True))
            return answer
        if answer.review is not None and answer.run_id is not None:
            if mode == "review":
                body = format_review(answer.review)
                buttons = [
                    [
                        self._button("rv", f"a{answer.run_id}", msg.chat_id, "✅ Accept"),
                        self._button("rv", f"m{answer.run_id}", msg.chat_id, "🔁 One more round"),
                        self._button("rv", f"x{answer.run_id}", msg.chat_id, "❌ Reject"),
                    ]
                ]
            else:
                body = answer.text
                buttons = [
                    [self._button("cq", str(answer.run_id), msg.chat_id, "🧐 Show the critique")]
                ]
            if answer.tool_calls and answer.tool_run_id is not None and self.tool_buttons:
                buttons.append([self.tool_buttons.steps_button(answer.tool_run_id, msg.chat_id)])
            if status is not None:
                await transport.edit(status, Reply("Done.", markdown=False))
            await finish(Reply(body, buttons=buttons, with_feedback=True))
            return answer
        if status is not None:
            with contextlib.suppress(Exception):
                await transport.edit(status, Reply("Done.", markdown=False))
        sent = await self.present(msg.chat_id, answer, stream, transport)
        if drafts is not None and sent is not None:
            await drafts.finished(msg, sent)
        return answer

    async def present(
        self, chat_id: int, answer: Answer, stream: StreamingReply, transport: Transport
    ) -> SentMessage | None:
        """Show a single-mode answer: with the steps button when it used tools, or, when it
        waits for the person's OK, the text so far and the question with ✅/❌. Returns the
        answer's message (None where nothing was shown before the question)."""
        if answer.error:
            return await stream.finish(Reply(answer.text, markdown=False, no_feedback=True))
        buttons = self.tool_buttons
        if answer.waiting_for is not None and answer.tool_run_id is not None and buttons:
            sent = None
            if stream.sent is not None or answer.text:
                sent = await stream.finish(
                    Reply(answer.text or "…", markdown=False, no_feedback=True)
                )
            await transport.send(
                chat_id, buttons.confirm_reply(answer.tool_run_id, chat_id, answer.waiting_for)
            )
            return sent
        if answer.tool_calls and answer.tool_run_id is not None and buttons:
            steps = [[buttons.steps_button(answer.tool_run_id, chat_id)]]
            return await stream.finish(Reply(answer.text, buttons=steps, with_feedback=True))
        return await stream.finish(Reply(answer.text))

    async def resume(
        self, press: ButtonPress, run_id: int, approved: bool, transport: Transport
    ) -> None:
        """Carry on an answer after the person's ✅ or ❌, streaming into a new message."""
        msg = Incoming(press.chat_id, press.sender, "", channel=press.channel)
        transport = self._answer_transport(msg, transport)
        token, stop = self._stop_button(press.chat_id, press.channel)
        stream = StreamingReply(transport, press.chat_id, buttons=stop)
        answer = await self._stoppable(
            token,
            press.chat_id,
            press.sender.id,
            self.agent.resume(
                run_id,
                approved,
                press.sender.id,
                on_delta=stream.delta,
                on_activity=stream.activity,
            ),
        )
        if answer is None:
            done = await self._steps_done(run_id=run_id)
            await stream.finish(self._stopped_reply(stream, done))
            return
        await self.present(press.chat_id, answer, stream, transport)

    async def run_scheduled(
        self,
        chat_id: int,
        sender: Sender,
        prompt: str,
        header: str,
        transport: Transport,
        run_id: int | None = None,
    ) -> None:
        """A scheduled agent task's run: its header line, then the answer to its prompt, as if
        the person had asked (tools, budget and buttons as usual). ``run_id`` names the run for
        good (``AgentTask.run_id``): the rerun of a run the process died in finishes that run's
        answer in its message, stores its turns once, and sends nothing if it was answered."""
        msg = Incoming(
            chat_id,
            sender,
            prompt,
            message_id=run_id,
            is_group=chat_id != sender.id,
            channel="task",
        )
        draft = await self.drafts.get(msg) if self.drafts is not None else None
        if draft is not None and draft.done:
            logger.info("task run {} in chat {} was answered already", run_id, chat_id)
            return
        await transport.send(chat_id, Reply(header, markdown=False, no_feedback=True))
        await self._run(msg, prompt, "single", self._answer_transport(msg, transport))

    def _stop_button(self, chat_id: int, channel: str) -> tuple[str, list[list[Button]]]:
        """A new answer's Stop token and button row (none where no press can arrive)."""
        token = secrets.token_urlsafe(9)  # stops this answer alone, across restarts too
        if channel not in STOPPABLE_CHANNELS:
            return token, []
        return token, [[self._button(STOP_PREFIX, token, chat_id, STOP_LABEL)]]

    async def _stoppable(
        self, token: str, chat_id: int, asker: int, work: Awaitable[Answer]
    ) -> Answer | None:
        """Run an answer as a task its Stop button can cancel: the answer, or None when Stop
        was pressed. A cancellation from elsewhere (the daemon stopping) goes on up."""
        running = Running(asker, asyncio.ensure_future(work))
        self._running[token] = running
        try:
            return await running.task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not running.stopped or (current is not None and current.cancelling()):
                running.task.cancel()
                raise
            logger.info("answer in chat {} stopped (⏹ Stop)", chat_id)
            return None
        finally:
            self._running.pop(token, None)

    def _stopped_reply(self, stream: StreamingReply, done: tuple[int, int] | None) -> Reply:
        """The text so far, marked stopped, with what its tools had done (🔧 steps)."""
        so_far = stream.latest.strip()[:STREAM_MAX_CHARS]
        text = f"{so_far}\n\n{STOPPED}" if so_far else STOPPED
        buttons = []
        if done is not None and self.tool_buttons is not None:
            # What its tools did stays done: say so, and show them.
            text += f" {done[1]} tool step(s) had been done."
            buttons = [[self.tool_buttons.steps_button(done[0], stream.chat_id)]]
        return Reply(text, buttons=buttons, markdown=False, no_feedback=True)

    async def _steps_done(
        self, *, run_id: int | None = None, source_key: str | None = None
    ) -> tuple[int, int] | None:
        """(run id, calls) of what a stopped answer's tools did (``RunStore.with_calls``)."""
        tools = self.agent.tools
        if tools is None or self.tool_buttons is None:
            return None
        try:
            find = partial(tools.store.with_calls, run_id=run_id, source_key=source_key)
            return await tools.db.run(find)
        except Exception:  # the notice is a courtesy: never lose the stop over it
            logger.opt(exception=True).warning("could not read a stopped answer's steps")
            return None

    async def on_stop(self, press: ButtonPress, payload: str, transport: Transport) -> str:
        """⏹ Stop under an answer being written: only its asker (or an admin) stops it."""
        token = self.signer.verify(STOP_PREFIX, payload, press.chat_id)
        if token is None:
            return "This button is no longer valid."
        running = self._running.get(token)
        if running is None or running.task.done():
            return "That answer is already finished."
        if press.sender.id != running.asker and not press.sender.is_admin:
            return "Only the person who asked can stop this answer."
        running.stopped = True
        running.task.cancel()
        return "Stopping."

    def _button(self, prefix: str, payload: str, chat_id: int, label: str) -> Button:
        return Button(label, self.signer.data(prefix, payload, chat_id))

    # -- commands ------------------------------------------------------------------------------
    async def think(self, msg: Incoming, args: str, transport: Transport) -> Reply | None:
        """/think QUESTION: draft, critique, refine; /think on|off sets it for this chat."""
        switch = args.strip().lower()
        if switch in ("on", "off"):
            if not may_change_chat_settings(msg):
                return Reply(GROUP_SETTING_REFUSAL, markdown=False)
            await self.modes.set(msg.chat_id, "think" if switch == "on" else "single")
            state = "in three passes" if switch == "on" else "directly"
            return Reply(f"From now on I answer every message here {state}.", markdown=False)
        await self._run(msg, args, "think", self._answer_transport(msg, transport))
        return None

    async def review_task(self, msg: Incoming, args: str, transport: Transport) -> Reply | None:
        """/review TASK: the review panel drafts and reviews until it approves."""
        await self._run(msg, args, "review", self._answer_transport(msg, transport))
        return None

    async def show_usage(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/usage: tokens used today against the daily budget; /usage week: 7 days, charted."""
        if args.strip().lower() in ("week", "chart", "7"):
            return await self.usage_week(msg, transport)
        summary = await self.usage.db.run(self.usage.summary, msg.sender.id, 1, msg.sender.is_admin)
        totals = summary["totals"]
        budget = summary.get("daily_budget")
        used = summary.get("used_today", totals["tokens"])
        cached = (
            f" ({totals['cache_read']:,} read from the cache count a tenth)"
            if totals["cache_read"]
            else ""
        )
        lines = [
            f"Today: {totals['calls']} model calls, {used:,} tokens{cached}, about ${totals['cost_usd']:.4f}."
        ]
        lines.append(
            f"Daily budget: {budget:,} tokens ({max(budget - used, 0):,} left)."
            if budget
            else "Daily budget: none (unlimited)."
        )
        for purpose, row in summary["per_purpose"].items():
            lines.append(f"• {purpose}: {row['calls']} calls, {row['counted']:,} tokens")
        return Reply("\n".join(lines), markdown=False)

    async def usage_week(self, msg: Incoming, transport: Transport) -> Reply:
        """The last 7 days: a bar chart where the channel shows pictures, and the numbers."""
        days = await self.usage.db.run(self.usage.daily, msg.sender.id, 7)
        lines = ["Tokens per day (as the budget counts them):"]
        lines += [f"• {day:%a %d %b}: {tokens:,}" for day, tokens in days]
        try:
            image = await render(
                usage_figure,
                "Your tokens, last 7 days",
                [d for d, _ in days],
                [t for _, t in days],
            )
            await transport.send_photo(msg.chat_id, image, "Your tokens, last 7 days")
        except NotImplementedError:
            pass  # a channel without pictures: the numbers below say it all
        except Exception:
            logger.opt(exception=True).warning("usage chart for chat {} failed", msg.chat_id)
        return Reply("\n".join(lines), markdown=False)

    # -- buttons -------------------------------------------------------------------------------
    async def on_show_critique(self, press: ButtonPress, payload: str, transport: Transport) -> str:
        verified = self.signer.verify("cq", payload, press.chat_id)
        if verified is None or not verified.isdigit():
            return "This button isn't valid here."
        transcript = await self.review.db.run(self.review.load_transcript, int(verified))  # type: ignore[union-attr]
        if transcript is None:
            return "That critique is no longer stored."
        await transport.send(press.chat_id, Reply(format_critique(transcript), markdown=False))
        return "Here is the critique."

    async def on_review_decision(
        self, press: ButtonPress, payload: str, transport: Transport
    ) -> str:
        verified = self.signer.verify("rv", payload, press.chat_id)
        if (
            verified is None
            or len(verified) < 2
            or verified[0] not in "amx"
            or not verified[1:].isdigit()
        ):
            return "This button isn't valid here."
        action, run_id = verified[0], int(verified[1:])
        db = self.review.db
        assert db is not None
        if action in "ax":
            decision: Literal["accepted", "rejected"] = "accepted" if action == "a" else "rejected"
            if not await db.run(self.review.set_decision, run_id, decision):
                return "That review is no longer stored."
            return "Accepted." if action == "a" else "Rejected."
        ctx = CallContext(press.sender.id, press.chat_id, "review", press.sender.is_admin)
        msg = Incoming(press.chat_id, press.sender, "", channel=press.channel)
        self._spawn_round(run_id, ctx, msg, transport)
        return "One more round…"

    def _spawn_round(
        self, run_id: int, ctx: CallContext, msg: Incoming, transport: Transport
    ) -> None:
        async def go() -> None:
            try:
                result = await self.review.one_more_round(run_id, ctx)
            except LLMError as exc:
                await transport.send(
                    msg.chat_id, Reply(f"The extra round failed: {exc}", markdown=False)
                )
                return
            buttons = [
                [
                    self._button("rv", f"a{result.run_id}", msg.chat_id, "✅ Accept"),
                    self._button("rv", f"m{result.run_id}", msg.chat_id, "🔁 One more round"),
                    self._button("rv", f"x{result.run_id}", msg.chat_id, "❌ Reject"),
                ]
            ]
            await self._answer_transport(msg, transport).send(
                msg.chat_id, Reply(format_review(result), buttons=buttons, with_feedback=True)
            )

        task = asyncio.create_task(go(), name=f"review-round-{run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for extra review rounds in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
