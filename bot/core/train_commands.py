"""The training commands: /train (start, status, opt-in) and /adapters, with their buttons.

``/train NAME DESCRIPTION`` (admins) starts the archetype pipeline and shows one message that
``TrainingService`` keeps editing through ``on_update`` (progress bar, stage, ETA; at most one
edit per ``edit_interval_s``, the latest text winning) with a cancel button; when the adapter is
proposed for promotion the same message carries Promote / Reject. ``/adapters`` (admins) lists
the registry's versions with their evaluation and promote / roll-back buttons. Every button is
signed for its chat and checked for an admin on press, so a forged, foreign or non-admin press
changes nothing. ``/train status`` lists the pipelines with their stage and error; ``/train
status N`` shows pipeline N with the transcript of each review (spec, data, blind probe judging).
``/train optin on|off`` lets a chat's 👍-rated answers become training data.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from agents.training.pipeline import Pipeline, PipelineStore
from agents.training.progress import pipeline_text, review_lines
from agents.training.registry import AdapterRegistry, AdapterVersion, check_slug
from bot.core.assistant import Assistant
from bot.core.commands import GROUP_SETTING_REFUSAL, Command, may_change_chat_settings
from bot.core.signing import ButtonSigner
from bot.core.transport import Transport
from bot.core.types import Button, ButtonPress, Incoming, Reply, SentMessage
from jobs.charts import loss_figure, render
from memory.db import Database
from memory.errors import FamiliarError

USAGE = "/train NAME DESCRIPTION | status [N] | optin on|off"
DETAIL_LIMIT = 3800  # characters of one pipeline's review transcripts in a message
LIKED_LIMIT = 500  # newest opted-in 👍 answers offered to one pipeline's data stage


class TrainingPrefs:
    """``chat_settings.train_optin`` and the 👍-rated answers of the chats that opted in."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _optin(self, chat_id: int) -> bool:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT train_optin FROM chat_settings WHERE chat_id = ?", (chat_id,)
            ).fetchone()
        return bool(row and row[0])

    def _set_optin(self, chat_id: int, on: bool) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO chat_settings (chat_id, train_optin) VALUES (?, ?)"
                " ON CONFLICT (chat_id) DO UPDATE SET train_optin = excluded.train_optin",
                (chat_id, int(on)),
            )

    async def optin(self, chat_id: int) -> bool:
        return await self.db.run(self._optin, chat_id)

    async def set_optin(self, chat_id: int, on: bool) -> None:
        await self.db.run(self._set_optin, chat_id, on)

    def liked_answers(self, limit: int = LIKED_LIMIT) -> list[list[dict[str, str]]]:
        """``PipelineDeps.feedback``: answers someone rated 👍 and nobody 👎, in opted-in chats, as
        conversations (commands such as ``/think …`` left out: their prompt is not what was asked)."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT a.prompt, a.answer FROM feedback_answers a"
                " JOIN chat_settings s ON s.chat_id = a.chat_id AND s.train_optin = 1"
                " WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.answer_id = a.id AND f.rating = 1)"
                " AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.answer_id = a.id AND f.rating = -1)"
                " AND a.prompt NOT LIKE '/%' ORDER BY a.id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
            for p, a in rows
            if p.strip() and a.strip()
        ]


def archetype_tag(archetype: str) -> str:
    """A short stand-in for a name in button data (names may be 40 characters; data holds 40)."""
    return hashlib.sha256(archetype.encode()).hexdigest()[:10]


def evaluation_line(v: AdapterVersion) -> str:
    mark = " ★ promoted" if v.promoted else ""
    e = v.evaluation
    if not e:
        return f"{v.version}{mark}: not evaluated"
    verdict = "proposed" if e.get("proposed") else "not proposed"
    return (
        f"{v.version}{mark}: held-out loss {e['adapter_loss']:.3f} vs base {e['base_loss']:.3f} "
        f"({e['improvement']:+.0%}), probes won {e.get('adapter_wins', 0)} lost {e.get('base_wins', 0)}, "
        f"{verdict}"
    )


class TrainCommands:
    def __init__(
        self,
        db: Database,
        pipeline: Pipeline | None,
        registry: AdapterRegistry,
        signer: ButtonSigner,
        prefs: TrainingPrefs,
        *,
        base_model_set: bool,
        edit_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db, self.pipeline, self.registry, self.signer, self.prefs = (
            db,
            pipeline,
            registry,
            signer,
            prefs,
        )
        self.store = PipelineStore(db)
        self.base_model_set = base_model_set
        self.edit_interval_s, self.clock = edit_interval_s, clock
        # The channel's transport, for edits from the background; set by the channel and refreshed
        # by every command or press (a restarted daemon edits again once anyone talks to it).
        self.transport: Transport | None = None
        self.poke: Callable[[], None] = lambda: (
            None
        )  # TrainingService.poke, set by the composition root
        self._shown: dict[int, str] = {}
        self._last_edit: dict[int, float] = {}
        self._pending: dict[int, Reply] = {}
        self._flushers: dict[int, asyncio.Task[None]] = {}
        self._charted: set[int] = set()  # pipelines whose report chart was sent (this process)
        self._charts: set[asyncio.Task[None]] = set()

    def register(self, assistant: Assistant) -> None:
        # not admin_only: /train optin is each chat's own decision; the rest checks for an admin
        assistant.commands.add(
            Command(
                "train",
                "Train a persona (admins); optin: offer this chat's 👍 answers",
                self.train,
                USAGE,
                needs_args=True,
            )
        )
        assistant.commands.add(
            Command(
                "adapters",
                "List trained adapters; promote or roll back (admins)",
                self.adapters,
                "/adapters",
                admin_only=True,
            )
        )
        assistant.buttons["tp"] = self.on_pipeline_button
        assistant.buttons["ad"] = self.on_adapter_button

    def _button(self, prefix: str, payload: str, chat_id: int, label: str) -> Button:
        return Button(label, self.signer.data(prefix, payload, chat_id))

    # -- /train ------------------------------------------------------------------------------
    async def train(self, msg: Incoming, args: str, transport: Transport) -> Reply | None:
        self.transport = transport
        head, _, rest = args.strip().partition(" ")
        if head.lower() == "optin":
            return await self._optin(msg, rest.strip().lower())
        if not msg.sender.is_admin:
            return Reply(
                "Only admins can train personas. /train optin on|off offers this chat's 👍 answers.",
                markdown=False,
            )
        if head.lower() == "status":
            number = rest.strip().lstrip("#")
            if number:
                return await self._detail(msg.chat_id, number)
            return await self._status(msg.chat_id)
        # the name as typed: check_slug refuses anything but ASCII slugs, and lower() would turn
        # look-alikes such as the Kelvin sign into ASCII letters
        return await self._start(msg, head, rest.strip(), transport)

    async def _optin(self, msg: Incoming, switch: str) -> Reply:
        if switch not in ("on", "off"):
            state = "offers" if await self.prefs.optin(msg.chat_id) else "does not offer"
            return Reply(
                f"This chat {state} its 👍-rated answers as training data. /train optin on|off",
                markdown=False,
            )
        if not may_change_chat_settings(msg):
            return Reply(GROUP_SETTING_REFUSAL, markdown=False)
        await self.prefs.set_optin(msg.chat_id, switch == "on")
        if switch == "on":
            return Reply(
                "This chat's 👍-rated answers may now become training data for personas "
                "(checked for secrets and personal data first). /train optin off stops it.",
                markdown=False,
            )
        return Reply("This chat's answers are no longer offered as training data.", markdown=False)

    async def _start(
        self, msg: Incoming, name: str, description: str, transport: Transport
    ) -> Reply | None:
        if self.pipeline is None:
            return Reply(
                "Training needs a language model: set FAMILIAR_LLM__PROVIDER.", markdown=False
            )
        if not self.base_model_set:
            return Reply(
                "Training needs a local base model: set FAMILIAR_TRAINING__BASE_MODEL to its directory.",
                markdown=False,
            )
        if not description:
            return Reply(f"Usage: {USAGE}", markdown=False)
        try:
            check_slug(name)
        except FamiliarError as exc:
            return Reply(f"{exc}: {exc.fix}", markdown=False)
        busy = [
            r
            for r in await self.db.run(self.store.list, 50)
            if r["archetype"] == name and r["state"] in ("running", "waiting")
        ]
        if busy:
            return Reply(
                f"A pipeline for {name} is already under way (#{busy[0]['id']}). /train status",
                markdown=False,
            )
        pipeline_id = await self.db.run(self.pipeline.start, name, description[:2000], msg.chat_id)
        row = await self.db.run(self.store.get, pipeline_id)
        sent = await transport.send(msg.chat_id, self.render(row))
        await self.db.run(lambda: self.store.set(pipeline_id, message_id=sent.message_id))
        self._shown[pipeline_id], self._last_edit[pipeline_id] = self.render(row).text, self.clock()
        self.poke()
        return None

    async def _status(self, chat_id: int) -> Reply:
        rows = await self.db.run(self.store.list, 10)
        if not rows:
            return Reply(
                "No training pipelines yet. /train NAME DESCRIPTION starts one.", markdown=False
            )
        lines: list[str] = []
        buttons: list[list[Button]] = []
        for r in rows:
            error = f": {str(r['error']).splitlines()[0][:160]}" if r["error"] else ""
            lines.append(f"#{r['id']} {r['archetype']}: {r['stage']} ({r['state']}){error}")
            if len(buttons) < 8:
                buttons += [[b] for b in self._actions(r, chat_id, with_number=True)]
        lines.append("/train status N shows a pipeline with the transcript of each review.")
        return Reply("\n".join(lines), buttons=buttons, markdown=False)

    async def _detail(self, chat_id: int, number: str) -> Reply:
        if not number.isdigit() or len(number) > 9:
            return Reply(f"Usage: {USAGE}", markdown=False)
        try:
            row = await self.db.run(self.store.get, int(number))
        except FamiliarError:
            return Reply(
                f"There is no pipeline #{number}. /train status lists them.", markdown=False
            )
        reviews = review_lines(row) or ["no reviews yet"]
        text = pipeline_text(row) + "\n\n" + "\n".join(reviews)
        if len(text) > DETAIL_LIMIT:
            text = (
                text[:DETAIL_LIMIT].rsplit("\n", 1)[0]
                + f"\n… (all of it: familiar train status --pipeline {row['id']})"
            )
        actions = self._actions(row, chat_id, with_number=True)
        return Reply(text, buttons=[actions] if actions else [], markdown=False)

    # -- the progress message ----------------------------------------------------------------
    def _actions(
        self, row: dict[str, Any], chat_id: int, with_number: bool = False
    ) -> list[Button]:
        n, pid = (f" #{row['id']}" if with_number else ""), row["id"]
        if row["state"] == "waiting" and row["stage"] == "promote":
            return [
                self._button("tp", f"p{pid}", chat_id, f"✅ Promote{n}"),
                self._button("tp", f"x{pid}", chat_id, f"❌ Reject{n}"),
            ]
        if row["state"] in ("running", "waiting"):
            return [self._button("tp", f"c{pid}", chat_id, f"⛔ Cancel{n}")]
        if row["state"] in ("failed", "cancelled"):
            return [self._button("tp", f"r{pid}", chat_id, f"🔁 Retry{n}")]
        return []

    def render(self, row: dict[str, Any]) -> Reply:
        actions = self._actions(row, row["chat_id"]) if row.get("chat_id") is not None else []
        return Reply(pipeline_text(row), buttons=[actions] if actions else [], markdown=False)

    async def on_update(self, row: dict[str, Any]) -> None:
        """``TrainingService``'s callback: edit the pipeline's message, throttled, never raising."""
        if row.get("chat_id") is None or row.get("message_id") is None or self.transport is None:
            return
        self._maybe_chart(row)
        reply = self.render(row)
        pid = row["id"]
        if self._pending.get(pid) is None and reply.text == self._shown.get(pid):
            return
        wait = self._last_edit.get(pid, -1e9) + self.edit_interval_s - self.clock()
        if wait <= 0 and pid not in self._flushers:
            await self._edit(row, reply)
            return
        self._pending[pid] = reply
        if pid not in self._flushers:
            self._flushers[pid] = asyncio.create_task(self._flush_later(row, max(wait, 0.0)))

    def _maybe_chart(self, row: dict[str, Any]) -> None:
        """Once evaluated, the report carries a picture: loss curves and the evaluation table."""
        evaluated = (row.get("stages", {}).get("evaluate") or {}).get("outputs") or {}
        if "adapter_loss" not in evaluated or row["id"] in self._charted:
            return
        self._charted.add(row["id"])
        task = asyncio.create_task(self._send_chart(row, evaluated))
        self._charts.add(task)
        task.add_done_callback(self._charts.discard)

    async def _send_chart(self, row: dict[str, Any], evaluated: dict[str, Any]) -> None:
        losses = ((row.get("stages", {}).get("train") or {}).get("outputs") or {}).get("losses")
        title = f"{row['archetype']} {evaluated.get('version', '')}: training report".strip()
        try:
            image = await render(loss_figure, title, losses or [], evaluated)
            assert self.transport is not None
            await self.transport.send_photo(row["chat_id"], image, caption=title)
        except Exception:  # the text report stands without its picture
            logger.opt(exception=True).warning("training chart of pipeline {} failed", row["id"])

    async def _flush_later(self, row: dict[str, Any], delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            reply = self._pending.pop(row["id"], None)
            if reply is not None:
                await self._edit(row, reply)
        finally:
            self._flushers.pop(row["id"], None)

    async def _edit(self, row: dict[str, Any], reply: Reply) -> None:
        pid = row["id"]
        self._pending.pop(pid, None)
        self._last_edit[pid] = self.clock()
        if reply.text == self._shown.get(pid):
            return
        self._shown[pid] = reply.text
        if self.transport is None:
            return
        try:
            await self.transport.edit(SentMessage(row["chat_id"], row["message_id"]), reply)
        except Exception:  # progress is decoration: the pipeline goes on
            logger.opt(exception=True).warning(
                "could not edit the progress message of pipeline {}", pid
            )

    async def on_pipeline_button(
        self, press: ButtonPress, payload: str, transport: Transport
    ) -> str:
        verified = self.signer.verify("tp", payload, press.chat_id)
        if (
            verified is None
            or len(verified) < 2
            or verified[0] not in "cpxr"
            or not verified[1:].isdigit()
        ):
            return "This button isn't valid here."
        if not press.sender.is_admin:
            return "Only admins can do that."
        if self.pipeline is None:
            return "Training is not available in this daemon."
        self.transport = transport
        action, pid = verified[0], int(verified[1:])
        pipeline = self.pipeline
        try:
            row = await self.db.run(self.store.get, pid)
            if action == "c":
                if row["state"] not in ("running", "waiting"):
                    return f"That pipeline has already {row['state']}."
                await self.db.run(pipeline.cancel, pid)
                notice = "Cancelled."
            elif action == "p":
                version = await self.db.run(pipeline.approve, pid)
                notice = f"{version.archetype} {version.version} promoted."
            elif action == "x":
                notice = f"{row['archetype']} {await self.db.run(pipeline.reject, pid)} rejected."
            else:
                await self.db.run(pipeline.retry, pid)
                self.poke()
                notice = "Retrying…"
        except FamiliarError as exc:
            return str(exc)[:190]
        row = await self.db.run(self.store.get, pid)
        if row.get("message_id") is not None and row.get("chat_id") is not None:
            await self._edit(row, self.render(row))  # an admin's action shows at once, unthrottled
        return notice

    # -- /adapters ---------------------------------------------------------------------------
    async def adapters(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        self.transport = transport
        return await asyncio.to_thread(self._listing, msg.chat_id)

    def _listing(self, chat_id: int) -> Reply:
        lines: list[str] = []
        buttons: list[list[Button]] = []
        for archetype in self.registry.archetypes():
            versions = self.registry.versions(archetype)
            if not versions:
                continue
            promoted = next((v.version for v in versions if v.promoted), None)
            lines.append(f"{archetype} (served: {promoted or 'base model'})")
            lines += [f"  {evaluation_line(v)}" for v in versions[-5:]]
            tag = archetype_tag(archetype)
            row = [
                self._button("ad", f"p{v.number}_{tag}", chat_id, f"⬆ {archetype} {v.version}")
                for v in versions[-3:]
                if not v.promoted
            ]
            if promoted:
                row.append(self._button("ad", f"b0_{tag}", chat_id, f"↩ {archetype}: roll back"))
            if row:
                buttons.append(row)
        if not lines:
            return Reply("No adapters yet. /train NAME DESCRIPTION trains one.", markdown=False)
        return Reply("\n".join(lines), buttons=buttons, markdown=False)

    async def on_adapter_button(
        self, press: ButtonPress, payload: str, transport: Transport
    ) -> str:
        verified = self.signer.verify("ad", payload, press.chat_id)
        head, _, tag = (verified or "").partition("_")
        if verified is None or len(head) < 2 or head[0] not in "pb" or not head[1:].isdigit():
            return "This button isn't valid here."
        if not press.sender.is_admin:
            return "Only admins can do that."
        self.transport = transport

        def act() -> str:
            archetype = next(
                (a for a in self.registry.archetypes() if archetype_tag(a) == tag), None
            )
            if archetype is None:
                return "That archetype is no longer in the registry."
            if head[0] == "p":
                return f"{archetype} {self.registry.promote(archetype, f'v{head[1:]}').version} promoted."
            previous = self.registry.rollback(archetype)
            return (
                f"{archetype} rolled back to {previous.version if previous else 'the base model'}."
            )

        try:
            notice = await asyncio.to_thread(act)
        except FamiliarError as exc:
            return str(exc)[:190]
        if press.message_id is not None:
            listing = await asyncio.to_thread(self._listing, press.chat_id)
            try:
                await transport.edit(SentMessage(press.chat_id, press.message_id), listing)
            except Exception:
                logger.opt(exception=True).warning("could not refresh the /adapters message")
        return notice
