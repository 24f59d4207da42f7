"""Rows another process writes (``familiar memory add`` beside the running daemon) reach the
daemon's FAISS index: two ``Memory`` instances on one database file, each with its own SQLite
connection as two processes would have. Real SQLite, real FAISS."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memory.health import Status
from memory.service import Memory
from memory.types import Scope

from .conftest import MakeMemory, run

CHAT = Scope(1)


def index_check(memory: Memory):  # type: ignore[no-untyped-def]
    return memory.health_checks()["memory_index"]()


def test_a_row_the_cli_adds_is_in_the_daemons_index_at_the_next_health_tick(
    make_memory: MakeMemory, tmp_path: Path
) -> None:
    daemon = make_memory()
    daemon.add_sync([daemon.new("the daemon's own note", CHAT, "note")])
    cli = make_memory()  # the CLI: its own connection, index loaded from SQLite
    (added,) = cli.add_sync([cli.new("the spare key is under the blue pot", CHAT, "note")])
    assert daemon.index is not None and added not in daemon.index.ids()  # not yet

    check = index_check(daemon)
    assert check.status is Status.HEALTHY, check.detail
    assert added in daemon.index.ids() and daemon.index.ntotal == 2


def test_a_search_catches_up_from_the_highest_indexed_id_first(
    make_memory: MakeMemory,
) -> None:
    daemon = make_memory()
    cli = make_memory()
    ids = cli.add_sync([cli.new(f"note {i} about the garden shed", CHAT, "note") for i in range(3)])
    hits = run(daemon.search("garden shed", CHAT, k=5))
    assert daemon.index is not None
    assert sorted(daemon.index.ids().tolist()) == ids
    assert {h.id for h in hits} == set(ids)
    # each hit was found by the vector side too, not by full-text search alone
    assert all(h.provenance["dense"] for h in hits)


def test_a_row_another_process_deletes_leaves_the_index_at_the_next_health_tick(
    make_memory: MakeMemory,
) -> None:
    daemon = make_memory()
    kept, gone = daemon.add_sync(
        [daemon.new("keep me", CHAT, "note"), daemon.new("forget me", CHAT, "note")]
    )
    cli = make_memory()
    assert cli.forget_sync(gone, CHAT)
    check = index_check(daemon)
    assert check.status is Status.HEALTHY, check.detail
    assert daemon.index is not None and daemon.index.ids().tolist() == [kept]


def test_nothing_changed_elsewhere_costs_no_catch_up(make_memory: MakeMemory) -> None:
    daemon = make_memory()
    daemon.add_sync([daemon.new("mine", CHAT, "note")])
    assert daemon.catch_up_sync() == 0  # its own writes do not change SQLite's data_version
    assert daemon.index is not None
    # an index that lost a vector by a fault of its own is still reported: it is not news
    # from another process, and the fix is a reindex
    daemon.index.remove(np.array(daemon.index.ids()))
    check = index_check(daemon)
    assert check.status is Status.DEGRADED and "familiar memory reindex" in check.detail
