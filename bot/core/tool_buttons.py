"""The buttons of tool-using answers: "🔧 steps" (what the answer called, and how it went) and the
✅/❌ of a call that waits for the person's OK.

Button data is signed for the chat (``ButtonSigner``): ``ts:<run id>`` shows the steps,
``tc:a<run id>`` approves and ``tc:x<run id>`` declines. A forged, malformed or foreign press,
a press by someone other than the asker, and a press on an expired or answered request change
nothing. Carrying the answer on (model calls) runs in the background so the press is
acknowledged at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from agents.chat import ChatAgent
from agents.tools.runs import SEARCH_STEP, CallRow
from bot.core.signing import ButtonSigner
from bot.core.transport import Transport
from bot.core.types import Button, ButtonPress, Reply, SentMessage

if TYPE_CHECKING:
    from bot.core.agent_commands import AgentCommands
    from bot.core.assistant import Assistant

STEPS, CONFIRM = "ts", "tc"


def step_line(n: int, call: CallRow) -> str:
    args = json.dumps(call.arguments, ensure_ascii=False)
    if len(args) > 120:
        args = args[:119] + "…"
    how = {
        "ok": f"✅ {call.result_chars} chars, {call.latency_ms} ms",
        "error": f"⚠️ {call.error or 'failed'}",
        "declined": "❌ you declined",
        "expired": "⌛ not confirmed in time",
        "replayed": "↩️ done before a restart, not again",
    }.get(call.outcome, call.outcome)
    if call.tool == SEARCH_STEP and call.outcome == "ok":  # the model looked for a deferred tool
        how = f"🔎 found {call.result or 'nothing'}"
    return f"{n}. {call.tool} {args} → {how}"


class ToolButtons:
    def __init__(self, agent: ChatAgent, signer: ButtonSigner, commands: AgentCommands) -> None:
        self.agent = agent
        self.signer = signer
        self.commands = commands
        self._tasks: set[asyncio.Task[Any]] = set()

    def register(self, assistant: Assistant) -> None:
        assistant.buttons[STEPS] = self.on_steps
        assistant.buttons[CONFIRM] = self.on_confirm

    def steps_button(self, run_id: int, chat_id: int) -> Button:
        return Button("🔧 steps", self.signer.data(STEPS, str(run_id), chat_id))

    def confirm_reply(self, run_id: int, chat_id: int, waiting_for: str) -> Reply:
        assert self.agent.tools is not None
        minutes = self.agent.tools.settings.confirm_timeout_min
        return Reply(
            f"🔐 May I do this?\n{waiting_for}\n\n(Nothing happens unless you press ✅; "
            f"this question expires in {minutes:g} min.)",
            buttons=[
                [
                    Button("✅ Yes", self.signer.data(CONFIRM, f"a{run_id}", chat_id)),
                    Button("❌ No", self.signer.data(CONFIRM, f"x{run_id}", chat_id)),
                ]
            ],
            markdown=False,
            no_feedback=True,
        )

    async def on_steps(self, press: ButtonPress, payload: str, transport: Transport) -> str:
        verified = self.signer.verify(STEPS, payload, press.chat_id)
        if verified is None or not verified.isdigit():
            logger.info("refused a steps button that does not check out (chat {})", press.chat_id)
            return "This button isn't valid here."
        tools = self.agent.tools
        assert tools is not None
        run_id = int(verified)
        if await tools.db.run(tools.store.run_chat, run_id) != press.chat_id:
            return "Those steps are no longer stored."
        calls = await tools.db.run(tools.store.calls, run_id)
        lines = ["🔧 Steps of this answer:"] + [step_line(i, c) for i, c in enumerate(calls, 1)]
        if not calls:
            lines.append("(no tool calls)")
        await transport.send(press.chat_id, Reply("\n".join(lines), markdown=False))
        return "Here are the steps."

    async def on_confirm(self, press: ButtonPress, payload: str, transport: Transport) -> str:
        verified = self.signer.verify(CONFIRM, payload, press.chat_id)
        if (
            verified is None
            or len(verified) < 2
            or verified[0] not in "ax"
            or not verified[1:].isdigit()
        ):
            logger.info("refused a confirm button that does not check out (chat {})", press.chat_id)
            return "This button isn't valid here."
        approved, run_id = verified[0] == "a", int(verified[1:])
        tools = self.agent.tools
        assert tools is not None
        row = await tools.db.run(tools.store.peek, run_id)
        if row is None or row[0] != press.chat_id:
            return "This request is no longer stored."
        _, owner, status, waiting_for, expires_at = row
        if status != "waiting":
            return "This request was already answered."
        if owner is not None and owner != press.sender.id:
            return "Only the person who asked can answer this."
        if expires_at is not None and expires_at <= time.time():
            return "This request has expired; nothing was done."
        if press.message_id is not None:  # the question loses its buttons: it is answered
            mark = "✅ Yes" if approved else "❌ No"
            try:
                await transport.edit(
                    SentMessage(press.chat_id, press.message_id),
                    Reply(f"🔐 {waiting_for}\n{mark}", markdown=False, no_feedback=True),
                )
            except Exception:  # decoration: the answer goes on
                logger.opt(exception=True).debug("could not clear the confirm buttons")
        self._spawn(self.commands.resume(press, run_id, approved, transport), run_id)
        return "Going ahead…" if approved else "Cancelled; nothing was done."

    def _spawn(self, coro: Any, run_id: int) -> None:
        task = asyncio.create_task(coro, name=f"resume-answer-{run_id}")
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.opt(exception=t.exception()).error("carrying on answer {} failed", run_id)

        task.add_done_callback(done)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
