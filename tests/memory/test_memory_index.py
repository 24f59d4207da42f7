"""The FAISS index as derived state: atomic saves, rebuild and catch-up from SQLite, deletes."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest

from memory.embedder import HashingEmbedder
from memory.index import MANIFEST, VectorIndex
from memory.types import Scope

from .conftest import run

TEXTS = [
    "Anna adopted a grey kitten named Pixel last spring",
    "The quarterly tax return is due at the end of April",
    "Our team switched the build system from make to bazel",
    "Grandfather's apple pie recipe needs cinnamon and nutmeg",
    "The heating engineer comes on Tuesday morning",
]


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_rebuilt_from_sqlite_after_the_index_file_is_deleted(make_memory, minilm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory(minilm)
    for i, t in enumerate(TEXTS):
        run(memory.add_memory(t, Scope(1), ref=f"r{i}"))
    memory.save_index()
    for f in (tmp_path / "index").iterdir():
        f.unlink()
    again = make_memory(minilm)
    assert again.index.ntotal == len(TEXTS)
    hits = run(again.search("a pet cat", Scope(1), k=1))  # no shared word: dense only
    assert hits[0].ref == "r0" and hits[0].provenance["dense"]


def test_changing_the_model_reembeds_and_rebuilds(make_memory, minilm, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = make_memory(HashingEmbedder())
    for t in TEXTS:
        run(first.add_memory(t, Scope(1)))
    first.save_index()
    assert json.loads((tmp_path / "index" / MANIFEST).read_text())["model"] == "hashing-256"
    second = make_memory(minilm)
    assert second.index.model == minilm.model_name and second.index.ntotal == len(TEXTS)
    assert second.stats_sync()["by_embedding_model"] == {minilm.model_name: len(TEXTS)}
    assert "tax" in run(second.search("paying the government", Scope(1), k=1))[0].text
    second.save_index()
    assert json.loads((tmp_path / "index" / MANIFEST).read_text())["model"] == minilm.model_name


def test_stale_index_catches_up_and_drops_deleted_rows(make_memory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    ids = [run(memory.add_memory(t, Scope(1))) for t in TEXTS[:3]]
    memory.save_index()
    # Written after the save, as if the process died before saving again.
    run(memory.add_memory(TEXTS[3], Scope(1)))
    from memory import store

    store.delete_memory(memory.db, ids[0], Scope(1))  # behind the index's back
    again = make_memory()
    assert sorted(again.index.ids().tolist()) == sorted(ids[1:] + [ids[-1] + 1])


def test_a_corrupt_or_half_written_index_is_never_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    index = VectorIndex(8, "m")
    index.add(np.arange(1, 11), _unit(10, 8), np.zeros(10))
    manifest = index.save(tmp_path)
    # a killed save leaves a .tmp behind: ignored, the manifest still describes the last good one
    (tmp_path / "vectors-999.faiss.tmp").write_bytes(b"partial")
    loaded, why = VectorIndex.load(tmp_path, dim=8, model="m")
    assert loaded is not None and loaded.ntotal == 10, why
    with open(tmp_path / manifest.index_file, "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff\xff\xff")
    loaded, why = VectorIndex.load(tmp_path, dim=8, model="m")
    assert loaded is None and "checksum" in why
    # Saved with other keys (``VectorIndex.keys``: how the rows were keyed): rebuilt, not loaded.
    index.keys = "turn_context_weight=1"
    index.save(tmp_path)
    loaded, why = VectorIndex.load(tmp_path, dim=8, model="m", keys="turn_context_weight=0")
    assert loaded is None and why == "keyed turn_context_weight=1, now turn_context_weight=0"
    loaded, why = VectorIndex.load(tmp_path, dim=8, model="m", keys="turn_context_weight=1")
    assert loaded is not None and loaded.keys == "turn_context_weight=1", why
    (tmp_path / MANIFEST).write_text("{not json")
    assert VectorIndex.load(tmp_path, dim=8, model="m")[0] is None
    assert VectorIndex.load(tmp_path / "nowhere", dim=8, model="m") == (None, "no saved index")


def test_approximate_index_keeps_chats_apart_and_deletes_at_once() -> None:
    vectors = _unit(3000, 16, seed=1)
    chats = np.arange(3000) % 3
    index = VectorIndex(16, "m", exact_max=1000, nprobe=8)
    index.add(np.arange(1, 3001), vectors, chats)
    assert index.kind == "ivf"
    found = index.search(vectors[4], 20, chat_id=1)  # id 5 is row 4, chat 1
    assert found[0][0] == 5 and all(chats[i - 1] == 1 for i, _ in found)
    assert index.remove([5]) == 1
    assert 5 not in [i for i, _ in index.search(vectors[4], 20, chat_id=1)]
    assert 5 not in [i for i, _ in index.search(vectors[4], 20)]


def test_approximate_recall_against_exact() -> None:
    rng = np.random.default_rng(2)
    centres = _unit(50, 32, seed=3)
    data = centres[rng.integers(0, 50, 6000)] + 0.15 * rng.standard_normal((6000, 32)).astype(
        np.float32
    )
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    exact = VectorIndex(32, "m", exact_max=10**9)
    approx = VectorIndex(32, "m", exact_max=1000)  # the default nprobe
    for ix in (exact, approx):
        ix.add(np.arange(1, 6001), data, np.zeros(6000))
    recall = np.mean(
        [
            len({i for i, _ in approx.search(q, 10)} & {i for i, _ in exact.search(q, 10)}) / 10
            for q in data[:100]
        ]
    )
    assert recall >= 0.95


def test_a_save_on_a_full_disk_leaves_the_last_index_and_no_partial_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Found stopping the daemon while its disk was full (bench/faults.py --scenario disk_full):
    the index save failed half-way, its partial file stayed behind holding the last free
    bytes, and the stop failed ("memory failed while stopping", exit 1)."""
    from memory.db import Database
    from memory.schema import migrations
    from memory.service import Memory
    from memory.settings import MemorySettings
    from tests.mounts import fill_up, small_tmpfs

    with small_tmpfs(tmp_path / "mnt", size_mb=4) as mnt:
        db = Database.open(tmp_path / "familiar.db", [migrations])  # off the full disk
        memory = Memory(db, HashingEmbedder(), MemorySettings(), mnt / "index")
        try:
            memory.warm_sync()
            for t in TEXTS[:2]:
                run(memory.add_memory(t, Scope(1)))
            memory.save_index()
            saved = sorted(p.name for p in (mnt / "index").iterdir())
            for t in TEXTS[2:]:
                run(memory.add_memory(t, Scope(1)))
            filler = fill_up(mnt)
            filler.write_bytes(b"\0" * (filler.stat().st_size - 2048))  # room for a part only
            run(memory.stop())  # a warning, not a failed stop
            assert sorted(p.name for p in (mnt / "index").iterdir()) == saved
            loaded, why = VectorIndex.load(
                mnt / "index", dim=256, model="hashing-256", keys="turn_context_weight=0"
            )
            assert loaded is not None and loaded.ntotal == 2, why
        finally:
            db.close()


def test_a_warm_up_tried_again_leaves_no_unretrieved_error_behind(make_memory) -> None:  # type: ignore[no-untyped-def]
    """Found restarting the daemon while its disk was full: each retry of a failed warm-up
    dropped the failed one's future unseen, and asyncio logged "Future exception was never
    retrieved" with the whole traceback again, once per retry."""
    import gc
    import sqlite3

    class FullDiskOnce(HashingEmbedder):
        failures = 1

        def load(self) -> None:
            if self.failures:
                self.failures -= 1
                raise sqlite3.OperationalError("database or disk is full")

    memory = make_memory(FullDiskOnce(), warm=False)
    reported: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
        await memory.start()
        for _ in range(1000):  # the warm-up runs on a thread of its own
            if memory.warm_error is not None:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the failed future is settled on the loop
        assert await memory.retry_warm()
        await memory.wait_ready()
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert memory.index is not None and memory.warm_error is None
    assert reported == []


def test_a_search_among_given_ids_is_exact_over_them_alone() -> None:
    vectors = _unit(3000, 16, seed=4)
    index = VectorIndex(16, "m", exact_max=1000, nprobe=1)  # one list probed: IVF misses a lot
    index.add(np.arange(1, 3001), vectors, np.zeros(3000))
    among = [7, 1500, 2999, 123_456]  # the last is not in the index
    found = index.search(vectors[0], 10, among=among)
    expected = sorted(among[:3], key=lambda i: -float(vectors[i - 1] @ vectors[0]))
    assert [i for i, _ in found] == expected
    assert [s for _, s in found] == pytest.approx(
        [float(vectors[i - 1] @ vectors[0]) for i in expected]
    )
    assert index.search(vectors[0], 10, among=[]) == []


class HeldLoad(HashingEmbedder):
    """An embedder whose load takes until ``release`` is set (5 s at most), as torch's import
    takes seconds."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def load(self) -> None:
        self.release.wait(5)


def test_a_stop_while_the_model_loads_does_not_wait_and_the_load_then_does_no_more(
    make_memory,
) -> None:  # type: ignore[no-untyped-def]
    """A stop during the model's load returns at once (the import of torch cannot be
    interrupted); the load, once done, sees the stop and neither opens the index nor embeds
    what is pending, and ``still_loading`` says so meanwhile (the CLI then exits without
    finalising: a thread in torch when the interpreter finalises aborts the process)."""
    from memory.service import still_loading

    release = threading.Event()
    memory = make_memory(HeldLoad(release), warm=False)

    async def main() -> None:
        await memory.start()
        await memory.stop()

    asyncio.run(main())
    thread = memory._warm_thread
    assert thread is not None and thread.is_alive()  # the stop did not wait
    assert still_loading()  # (another test's load may be running too: only this is checked)
    release.set()
    thread.join(5)
    assert not thread.is_alive()
    assert memory.index is None
