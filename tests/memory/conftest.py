"""Memory test fixtures: a real SQLite store in tmp_path, the hashing embedder for speed, and the
real bundled model loaded once per session for the tests that need true semantics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memory.db import Database
from memory.embedder import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from memory.schema import migrations
from memory.service import Memory
from memory.settings import MemorySettings


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """The bundled all-MiniLM-L6-v2, loaded once for the whole session (offline)."""
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    return embedder


MakeMemory = Callable[..., Memory]


@pytest.fixture
def make_memory(tmp_path: Path) -> Iterator[MakeMemory]:
    """Build a warmed-up Memory on a database in tmp_path; closed at the end."""
    opened: list[Database] = []

    def make(
        embedder: Embedder | None = None,
        *,
        path: Path | None = None,
        warm: bool = True,
        **settings: object,
    ) -> Memory:
        where = path or tmp_path
        db = Database.open(where / "familiar.db", [migrations])
        opened.append(db)
        memory = Memory(
            db, embedder or HashingEmbedder(), MemorySettings(**settings), where / "index"
        )
        if warm:
            memory.warm_sync()
        return memory

    yield make
    for db in opened:
        db.close()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)
