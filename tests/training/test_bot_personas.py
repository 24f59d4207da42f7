"""The bot's training parts without a full pipeline: vLLM persona routing, opt-in 👍 data,
the progress throttle, and the daemon's training service stopping its worker cleanly."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from agents.chat import ChatAgent
from agents.llm import LLM
from agents.providers import build_provider
from agents.settings import LLMSettings
from agents.training.jobs import JobQueue
from agents.training.registry import AdapterRegistry
from bot.config import load_settings
from bot.core.assistant import Assistant
from bot.core.feedback import FeedbackStore
from bot.core.personas import ChatPersonas, PersonaCommands, PersonaRouter
from bot.core.signing import ButtonSigner
from bot.core.train_commands import TrainCommands, TrainingPrefs
from bot.core.transport import RecordingTransport
from bot.core.types import Incoming, Reply, Sender, SentMessage
from bot.daemon.run import all_migrations
from bot.daemon.training import build_training
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.health import HealthRegistry
from memory.service import Memory
from memory.settings import MemorySettings
from tests.stubs.anthropic_stub import llm_stub

from .conftest import write_jsonl
from .test_trainer import config

ADMIN = Sender(1, "Ann", is_admin=True)


@pytest.fixture
def db(data_dir: Path):
    data_dir.mkdir(parents=True, exist_ok=True)
    database = Database.open(data_dir / "familiar.db", all_migrations())
    yield database
    database.close()


def fake_adapter(registry: AdapterRegistry, tmp_path: Path, archetype: str) -> str:
    """A registry entry as the pipeline leaves it (the weights' bytes do not matter to vLLM's name)."""
    source = tmp_path / f"{archetype}-adapter"
    source.mkdir()
    (source / "adapter_model.safetensors").write_bytes(os.urandom(64))
    (source / "adapter_config.json").write_text("{}")
    return registry.add(archetype, source).version


def test_a_persona_chat_asks_vllm_for_the_adapter_by_name(
    db: Database, data_dir: Path, tmp_path: Path
) -> None:
    registry = AdapterRegistry(data_dir / "adapters")
    registry.promote("pirate", fake_adapter(registry, tmp_path, "pirate"))
    assistant = Assistant(HealthRegistry())
    transport = RecordingTransport()
    with llm_stub() as stub:
        settings = LLMSettings(
            provider="openai",
            openai_base_url=stub.openai_url,
            model="base-model",
            fact_extraction_every=0,
        )
        provider = build_provider(settings)
        router = PersonaRouter(ChatPersonas(db), registry, provider, settings)
        PersonaCommands(router, settings.persona, "openai").register(assistant)
        memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
        agent = ChatAgent(memory, LLM(provider), settings, route=router)

        async def scenario() -> None:
            for hostile in ("../pirate", "pir\u0430te"):  # the second has a Cyrillic a
                await assistant.handle(Incoming(3, Sender(3), f"/persona {hostile}"), transport)
            await assistant.handle(Incoming(3, Sender(3), "/persona pirate"), transport)
            await agent.answer(3, 3, "Ahoy?")
            await agent.answer(4, 4, "Hello?")
            registry.rollback("pirate")  # nothing promoted: the chat falls back to the base model
            await agent.answer(3, 3, "Still there?")
            await memory.stop()
            await provider.aclose()

        asyncio.run(scenario())
        models = [b["model"] for b in stub.bodies("/v1/chat/completions")]
    assert transport.texts[0].startswith(
        "There is no trained persona called '../pirate'. Trained personas: pirate"
    )
    assert transport.texts[1].startswith("There is no trained persona called 'pir\u0430te'.")
    assert (
        transport.texts[2]
        == "From now on pirate answers in this chat (adapter pirate-v1). /persona default goes back."
    )
    assert models == ["pirate-v1", "base-model", "base-model"]


def test_opted_in_thumbs_up_answers_become_training_conversations(
    db: Database, data_dir: Path
) -> None:
    feedback, prefs = FeedbackStore(db), TrainingPrefs(db)
    commands = TrainCommands(
        db,
        None,
        AdapterRegistry(data_dir / "adapters"),
        ButtonSigner(b"k" * 32),
        prefs,
        base_model_set=False,
    )
    assistant = Assistant(HealthRegistry())
    commands.register(assistant)
    transport = RecordingTransport()
    bob, carol = Sender(10, "Bob"), Sender(11, "Carol")

    async def say(chat: int, sender: Sender, text: str) -> str:
        await assistant.handle(Incoming(chat, sender, text, is_group=chat != sender.id), transport)
        return transport.texts[-1]

    async def scenario() -> None:
        assert (await say(10, bob, "/train optin on")).startswith(
            "This chat's 👍-rated answers may now become"
        )
        assert (
            await say(-50, carol, "/train optin on") == "In a group only an admin can change this."
        )
        assert (await say(-50, ADMIN, "/train optin on")).startswith(
            "This chat's 👍-rated answers may now"
        )
        assert (
            await say(-50, ADMIN, "/train optin off")
        ) == "This chat's answers are no longer offered as training data."
        assert (await say(10, bob, "/train optin")).startswith(
            "This chat offers its 👍-rated answers"
        )
        assert (await say(10, bob, "/train status")).startswith("Only admins can train personas")
        assert (
            await say(10, ADMIN, "/train pirate A pirate.")
            == "Training needs a language model: set FAMILIAR_LLM__PROVIDER."
        )

    asyncio.run(scenario())
    liked = feedback.add_answer("telegram", 10, 10, "Where is Rome?", "Rome is in Italy.")
    disputed = feedback.add_answer("telegram", 10, 10, "Where is Paris?", "Paris is in Spain.")
    command = feedback.add_answer("telegram", 10, 10, "/think Where is Oslo?", "Norway.")
    elsewhere = feedback.add_answer("telegram", 11, 11, "Where is Bern?", "Switzerland.")
    for answer, votes in (
        (liked, [(10, 1)]),
        (disputed, [(10, 1), (12, -1)]),
        (command, [(10, 1)]),
        (elsewhere, [(11, 1)]),
    ):
        for user, rating in votes:
            feedback.vote(answer, user, 10, rating)
    assert prefs.liked_answers() == [
        [
            {"role": "user", "content": "Where is Rome?"},
            {"role": "assistant", "content": "Rome is in Italy."},
        ]
    ]


def test_progress_edits_are_throttled_and_the_latest_text_wins(
    db: Database, data_dir: Path
) -> None:
    commands = TrainCommands(
        db,
        None,
        AdapterRegistry(data_dir / "adapters"),
        ButtonSigner(b"k" * 32),
        TrainingPrefs(db),
        base_model_set=True,
        edit_interval_s=0.3,
    )
    transport = RecordingTransport()
    commands.transport = transport
    row = {
        "id": 1,
        "archetype": "pirate",
        "stage": "spec",
        "state": "running",
        "error": None,
        "stages": {},
        "chat_id": 5,
        "message_id": 9,
    }

    async def scenario() -> None:
        for stage in ("spec", "data", "inspect", "train"):
            await commands.on_update({**row, "stage": stage})
        await commands.on_update({**row, "stage": "train"})  # no change: no edit
        await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert [m for m, _ in transport.edits] == [SentMessage(5, 9)] * 2
    first, last = (r.text.splitlines()[0] for _, r in transport.edits)
    assert (
        first == "⏳ pirate: stage 1/6 spec (running)"
        and last == "⏳ pirate: stage 4/6 train (running)"
    )
    assert [b.label for b in transport.edits[-1][1].buttons[0]] == ["⛔ Cancel"]
    assert isinstance(transport.edits[-1][1], Reply)


def test_stopping_the_daemon_stops_the_worker_and_requeues_its_job(
    db: Database, data_dir: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    settings = load_settings(daemon={"shutdown_timeout_s": 20})
    training = build_training(
        settings,
        db,
        llm=None,
        review=None,
        registry=AdapterRegistry(data_dir / "adapters"),
        embed=None,
        assistant=Assistant(HealthRegistry()),
        signer=ButtonSigner(b"k" * 32),
        poll_s=0.2,
    )
    queue = JobQueue(db)
    data = write_jsonl(
        tmp_path / "more.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                ]
            }
        ]
        * 4,
    )
    job_id = queue.enqueue(
        config(tiny_model, data, tmp_path / "out", steps=100_000, checkpoint_every=5).to_dict()
    )

    async def scenario() -> int:
        await training.loop.start()
        deadline = time.monotonic() + 60
        while not (queue.get(job_id).progress or {}).get("step"):
            assert time.monotonic() < deadline, "the worker never reported a step"
            await asyncio.sleep(0.1)
        pid = training.service.runner.current[1].pid  # type: ignore[index]
        began = time.monotonic()
        await asyncio.wait_for(training.loop.stop(), 20)
        assert time.monotonic() - began < 10
        return pid

    pid = asyncio.run(scenario())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    job = queue.get(job_id)
    assert job.state == "queued" and not job.cancel_requested  # resumes at the next start
    assert (tmp_path / "out").is_dir() and training.service.runner.current is None
