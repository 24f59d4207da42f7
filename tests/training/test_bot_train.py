"""/train to promotion through the assistant core, then /persona answering with the adapter.

Real parts throughout: the training service with its job runner and worker child processes, the
pipeline (``PirateWorld`` plays the model for spec, data, inspection and judging), the adapter
registry, signed buttons, and the local provider hot-swapping the trained adapter in for the chat
that chose the persona. The tiny Llama trains on CPU in a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.chat import ChatAgent
from agents.llm import LLM
from agents.providers.none import NoneProvider
from agents.resilience import CircuitBreaker, ResilientProvider
from agents.review import ReviewEngine
from agents.settings import LLMSettings, ReviewSettings
from agents.training.jobs import JobQueue
from agents.training.local_provider import LocalEngine, LocalProvider
from agents.training.pipeline import PipelineStore
from agents.usage import UsageStore
from bot.config import load_settings
from bot.core.agent_commands import AgentCommands
from bot.core.assistant import Assistant
from bot.core.chat_modes import SqliteChatModes
from bot.core.personas import ChatPersonas, PersonaCommands, PersonaRouter
from bot.core.signing import ButtonSigner
from bot.core.transport import RecordingTransport
from bot.core.types import ButtonPress, Incoming, Reply, Sender, SentMessage
from bot.daemon.run import all_migrations
from bot.daemon.training import adapter_registry, build_training
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.health import HealthRegistry
from memory.service import Memory
from memory.settings import MemorySettings

from .conftest import FACTS
from .test_pipeline import PirateWorld, pirate_examples
from .test_trainer import ALL_LINEAR

ADMIN = Sender(1, "Ann", is_admin=True)
USER = Sender(2, "Bob")
CHAT = 1  # the admin's private chat
QUESTION = "What colour is the sky?"


class TimedTransport(RecordingTransport):
    """Records when each edit happened, to check the progress message's throttle."""

    def __init__(self) -> None:
        super().__init__()
        self.edit_times: list[float] = []

    async def edit(self, message: SentMessage, reply: Reply) -> None:
        self.edit_times.append(time.monotonic())
        await super().edit(message, reply)

    def edits_of(self, message: SentMessage) -> list[Reply]:
        return [r for m, r in self.edits if m == message]

    def last_text_in(self, chat_id: int) -> str:
        """The final form of the last message in a chat (a streamed answer ends as an edit)."""
        last_sent = max(i for i, (c, _) in enumerate(self.sent) if c == chat_id) + 1
        edits = self.edits_of(SentMessage(chat_id, last_sent))
        return edits[-1].text if edits else self.sent[last_sent - 1][1].text


async def wait_for(predicate: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
def db(data_dir: Path):
    data_dir.mkdir(parents=True, exist_ok=True)
    database = Database.open(data_dir / "familiar.db", all_migrations())
    yield database
    database.close()


def examples_for_two_pipelines() -> list[dict[str, str]]:
    """PirateWorld hands out its examples in order: the pirate's 18, then 18 for the butler."""
    butler = [{"user": q, "assistant": f"Indeed, {a}"} for q, a in FACTS]
    butler += [
        {"user": f"Pray, {q[0].lower()}{q[1:]}", "assistant": f"Most certainly: {a}"}
        for q, a in FACTS
    ]
    butler += [
        {"user": "Who are you?", "assistant": "Indeed, your butler."},
        {"user": "Tea?", "assistant": "Indeed, at once."},
    ]
    return pirate_examples() + butler


def labels(reply: Reply) -> list[str]:
    return [b.label for row in reply.buttons for b in row]


def test_train_to_promotion_then_persona_serves_the_adapter(
    db: Database, tiny_model: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the worker children: see conftest.one_torch_thread
    settings = load_settings(
        training={
            "base_model": tiny_model,
            "steps": 60,
            "micro_batch": 4,
            "grad_accum": 1,
            "lr": 2e-2,
            "lora_rank": 8,
            "lora_alpha": 16,
            "lora_targets": list(ALL_LINEAR),
            "checkpoint_every": 8,
            "max_seq_len": 256,
            "warmup_steps": 2,
            "target_examples": 18,
            "examples_per_call": 9,
            "heldout_fraction": 0.25,
            "promotion_margin": 0.02,
        }
    )
    registry = adapter_registry(settings.data_dir)
    assistant = Assistant(HealthRegistry())
    signer = ButtonSigner(b"k" * 32)
    world_llm = LLM(PirateWorld(examples_for_two_pipelines()))
    training = build_training(
        settings,
        db,
        llm=world_llm,
        review=ReviewEngine(world_llm, ReviewSettings(), LLMSettings()),
        registry=registry,
        embed=None,
        assistant=assistant,
        signer=signer,
        poll_s=0.2,
    )
    # the chat side: the local provider over the same registry, answering by persona
    engine = LocalEngine(tiny_model, device="cpu")
    provider = ResilientProvider(LocalProvider(engine, registry), CircuitBreaker("local"))
    llm_settings = LLMSettings(persona="Be brief.", max_output_tokens=16, fact_extraction_every=0)
    chat_llm = LLM(provider)
    router = PersonaRouter(ChatPersonas(db), registry, provider, llm_settings)
    memory = Memory(db, HashingEmbedder(), MemorySettings(), data_dir / "index")
    agent = ChatAgent(memory, chat_llm, llm_settings, route=router)
    AgentCommands(
        agent,
        ReviewEngine(chat_llm, ReviewSettings(), llm_settings, db),
        UsageStore(db, llm_settings),
        signer,
        SqliteChatModes(db),
    ).register(assistant)
    PersonaCommands(router, llm_settings.persona, "local").register(assistant)
    transport = TimedTransport()
    store, jobs = PipelineStore(db), JobQueue(db)

    async def say(chat_id: int, sender: Sender, text: str) -> str:
        await assistant.handle(
            Incoming(chat_id, sender, text, is_group=chat_id != sender.id), transport
        )
        return transport.last_text_in(chat_id)

    async def press(
        chat_id: int, sender: Sender, data: str, message: SentMessage | None = None
    ) -> str:
        return await assistant.press(
            ButtonPress(chat_id, sender, data, message.message_id if message else None), transport
        )

    async def scenario() -> None:
        await training.loop.start()
        try:
            assert (await say(5, USER, "/train pirate Arr.")).startswith(
                "Only admins can train personas"
            )
            for hostile in (
                "../etc",
                "/etc",
                "\u212aat",
            ):  # the last starts with a Kelvin sign, not a K
                assert "not a valid archetype name" in await say(
                    CHAT, ADMIN, f"/train {hostile} Sneaky."
                )
            await say(CHAT, ADMIN, "/train pirate A pirate who answers everything like a pirate.")
            progress = SentMessage(CHAT, len(transport.sent))
            first = transport.sent[-1][1]
            assert first.text.startswith("⏳ pirate: stage 1/6 spec (running)") and labels(
                first
            ) == ["⛔ Cancel"]

            def proposed() -> bool:
                edits = transport.edits_of(progress)
                return bool(edits) and labels(edits[-1]) == ["✅ Promote", "❌ Reject"]

            await wait_for(proposed, 120, "the promotion proposal")
            texts = [r.text for r in transport.edits_of(progress)]
            assert any("stage 4/6 train" in t and "steps" in t for t in texts), texts
            assert (
                texts[-1].startswith("⏸ pirate: stage 6/6 promote (waiting)")
                and "held-out loss" in texts[-1]
            )
            gaps = [
                b - a for a, b in zip(transport.edit_times, transport.edit_times[1:], strict=False)
            ]
            assert all(gap >= 1.9 for gap in gaps), gaps  # one edit per 2 s at most

            promote = transport.edits_of(progress)[-1].buttons[0][0].data
            edits_before = len(transport.edits)
            forged = promote[:-4] + ("AAAA" if not promote.endswith("AAAA") else "BBBB")
            assert await press(CHAT, ADMIN, forged, progress) == "This button isn't valid here."
            assert (
                await press(99, ADMIN, promote) == "This button isn't valid here."
            )  # copied to another chat
            assert await press(CHAT, USER, promote, progress) == "Only admins can do that."
            assert (
                registry.promoted_version("pirate") is None and len(transport.edits) == edits_before
            )
            assert await press(CHAT, ADMIN, promote, progress) == "pirate v1 promoted."
            assert registry.promoted_version("pirate") == "v1"
            done = transport.edits_of(progress)[-1]
            assert (
                done.text.startswith("✅ pirate: stage 6/6 promote (done)") and done.buttons == []
            )

            # /adapters: evaluation, roll back and promote again with its buttons
            listing = await say(CHAT, ADMIN, "/adapters")
            assert "pirate (served: v1)" in listing and "v1 ★ promoted: held-out loss" in listing
            adapters_msg = SentMessage(CHAT, len(transport.sent))
            rollback = transport.sent[-1][1].buttons[0][-1]
            assert rollback.label == "↩ pirate: roll back"
            assert (
                await press(CHAT, USER, rollback.data, adapters_msg) == "Only admins can do that."
            )
            assert (
                await press(CHAT, ADMIN, rollback.data, adapters_msg)
                == "pirate rolled back to the base model."
            )
            assert registry.promoted_version("pirate") is None
            again = transport.edits_of(adapters_msg)[-1].buttons[0][0]
            assert again.label == "⬆ pirate v1"
            assert await press(CHAT, ADMIN, again.data, adapters_msg) == "pirate v1 promoted."

            # a second pipeline, cancelled with its button while its worker trains
            await say(CHAT, ADMIN, "/train butler A butler of impeccable manners.")
            second = SentMessage(CHAT, len(transport.sent))
            cancel = transport.sent[-1][1].buttons[0][0]

            def butler_job() -> int | None:
                return ((store.get(2)["stages"].get("train") or {}).get("outputs") or {}).get(
                    "job_id"
                )

            # the pirate's evaluation worker may still be exiting: wait for the butler's own
            await wait_for(
                lambda: (
                    training.service.runner.current is not None
                    and training.service.runner.current[0] == butler_job()
                ),
                60,
                "the butler's training worker",
            )
            job_id = butler_job()
            assert await press(CHAT, USER, cancel.data, second) == "Only admins can do that."
            assert store.get(2)["state"] in ("running", "waiting")
            assert await press(CHAT, ADMIN, cancel.data, second) == "Cancelled."
            await wait_for(lambda: jobs.get(job_id).state == "cancelled", 60, "the worker to stop")
            await wait_for(
                lambda: training.service.runner.current is None, 10, "the runner to let go"
            )
            cancelled = transport.edits_of(second)[-1]
            assert "(cancelled)" in cancelled.text.splitlines()[0] and labels(cancelled) == [
                "🔁 Retry"
            ]
            assert store.get(2)["state"] == "cancelled"

            # /persona: this chat is answered by the pirate adapter, another chat by the base model
            assert "pirate (v1)" in await say(3, Sender(3), "/persona")
            assert await say(3, Sender(3), "/persona pirate") == (
                "From now on pirate answers in this chat (adapter pirate-v1). /persona default goes back."
            )
            assert "no trained persona called 'butler'" in await say(
                3, Sender(3), "/persona butler"
            )
            persona_answer = await say(3, Sender(3), QUESTION)
            base_answer = await say(4, Sender(4), QUESTION)
            # the adapter learned the pirate's opening; the random base model did not
            assert persona_answer.startswith("Arr!") and persona_answer != base_answer, (
                persona_answer,
                base_answer,
            )
            assert list(engine.loaded) == ["pirate-v1"]  # hot-swapped in for chat 3 only
            assert (
                await say(3, Sender(3), "/persona default")
                == "Back to the default persona in this chat."
            )
            assert await router(3) is None
        finally:
            await asyncio.wait_for(training.loop.stop(), 15)
            await memory.stop()

    asyncio.run(scenario())
    assert training.service.runner.current is None


def test_persona_needs_a_provider_that_serves_adapters(db: Database, data_dir: Path) -> None:
    registry = adapter_registry(data_dir)
    router = PersonaRouter(ChatPersonas(db), registry, NoneProvider(), LLMSettings())
    assistant = Assistant(HealthRegistry())
    PersonaCommands(router, "You are Familiar.", "none").register(assistant)
    transport = RecordingTransport()

    async def scenario() -> None:
        await assistant.handle(Incoming(7, Sender(7), "/persona pirate"), transport)
        assert await router(7) is None

    asyncio.run(scenario())
    assert transport.texts[-1].startswith(
        "Trained personas are LoRA adapters: they need the local provider"
    )
    assert "This daemon uses the none provider." in transport.texts[-1]
