"""The daemon's whole service graph (the real command registry) without a channel, for tests
that send commands through a recording transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.config import Settings, load_settings
from bot.core.transport import RecordingTransport
from bot.core.types import Incoming, Reply, Sender
from bot.daemon.lifecycle import Lifecycle
from bot.daemon.run import all_migrations, build_health
from bot.daemon.services import Services, build_services
from memory.db import Database


class Graph:
    def __init__(self, services: Services, db: Database, settings: Settings) -> None:
        self.services, self.db, self.settings = services, db, settings
        self.transport = RecordingTransport()

    async def say(self, text: str, sender: Sender, chat: int | None = None) -> Reply:
        """Send ``text`` as ``sender`` (in their private chat by default); the last reply."""
        before = len(self.transport.sent)
        msg = Incoming(sender.id if chat is None else chat, sender, text, channel="test")
        await self.services.assistant.handle(msg, self.transport)
        assert len(self.transport.sent) > before, f"no reply to {text!r}"
        return self.transport.shown()


def _open(data_dir: Path, overrides: dict[str, object]) -> tuple[Settings, Database]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return load_settings(**overrides), Database.open(data_dir / "familiar.db", all_migrations())


@asynccontextmanager
async def core_graph(data_dir: Path, **overrides: object) -> AsyncIterator[Graph]:
    settings, db = _open(data_dir, overrides)
    lifecycle = Lifecycle()
    services = build_services(settings, db, build_health(settings, db), lifecycle, started_at=0.0)
    await lifecycle.start_all()
    try:
        yield Graph(services, db, settings)
    finally:
        await lifecycle.stop_all(30.0)
        db.close()
