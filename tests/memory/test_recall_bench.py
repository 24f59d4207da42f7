"""``bench/memory_locomo.py`` end to end on a small conversation set made here (the real LoCoMo
is never read by tests): it imports through the project's importer, asks in each conversation's
scope, and prints both halves, the fusion chosen on the tuning half and its held-out figure."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOPICS = [
    ("pottery", "I finally glazed the blue vase in my pottery class", "What did they glaze?"),
    ("marathon", "I ran the Lisbon marathon in four hours", "Which race did they run?"),
    ("violin", "My new violin teacher is called Mrs Oduya", "Who teaches them the violin?"),
    ("garden", "The tomatoes in the allotment got blight", "What happened to the tomatoes?"),
]
FILLER = [
    "How was your week?",
    "Pretty busy, work has been a lot.",
    "Same here, I barely slept.",
    "Let's catch up properly soon.",
]


def conversation(n: int) -> dict:
    turns, qa = [], []
    for t, (_word, fact, question) in enumerate(TOPICS):
        for f, text in enumerate(FILLER):
            turns.append({"speaker": "Ana" if f % 2 else "Ben", "text": text})
        turns.append({"speaker": "Ana", "text": f"{fact} (conversation {n}, part {t})."})
        qa.append({"question": question, "evidence": [f"D1:{len(turns)}"], "category": 4})
    qa.append({"question": "When did they run the marathon?", "evidence": ["D1:10"], "category": 2})
    for i, turn in enumerate(turns, 1):
        turn["dia_id"] = f"D1:{i}"
    return {
        "conversation": {
            "speaker_a": "Ana",
            "speaker_b": "Ben",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": turns,
        },
        "qa": qa,
    }


def test_the_locomo_bench_prints_the_tuning_and_the_held_out_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "conversations.json"
    data.write_text(json.dumps([conversation(n) for n in range(7)]))
    # In this process (the model's libraries are loaded once for the whole suite), as run by
    # ``python bench/memory_locomo.py DATASET --db DIR``.
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("memory_locomo", ROOT / "bench/memory_locomo.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", ["memory_locomo.py", str(data), "--db", str(tmp_path / "db")])
    bench.main()
    out = capsys.readouterr().out
    for kind in ("messages", "notes"):
        assert f"{kind}, tune half (25 questions)" in out  # conversations 1-5
        assert f"{kind}, held-out half (10 questions)" in out  # 6 and 7
        best = re.search(
            rf"{kind}: best fusion on the tuning half: (\S+); held-out R@5 ([\d.]+)", out
        )
        assert best is not None, out
    held = out.split("messages, held-out half")[1].split("notes, tune half")[0]
    assert re.search(r"ranking\s+R@5\s+R@10\s+any@5\s+all@10$", held, re.M), held
    rows = {
        m.group(1): [float(x) for x in m.group(2).split()]
        for m in re.finditer(r"^\s+(\S+)((?:\s+[\d.]+){2,4})$", held, re.M)
    }
    figures = {name: (row[0], row[1]) for name, row in rows.items()}
    assert {"bm25", "dense", "rrf", "ours", "ours+ctx"} <= set(figures)
    assert all(0.0 <= a <= b <= 1.0 for a, b in figures.values())
    # any@5 is at least the share in the top 5, all@10 at most the share in the top 10; the
    # turns attached to hits are counted by R@k only.
    assert len(rows["ours+ctx"]) == 2 and all(len(rows[v]) == 4 for v in ("bm25", "rrf", "ours"))
    assert all(r5 <= any5 and all10 <= r10 for r5, r10, any5, all10 in (rows["bm25"], rows["ours"]))
    # Each question shares a word with its evidence turn alone: the search finds it.
    assert figures["ours"][1] == 1.0
    assert re.search(r"temporal questions \(category 2, messages, 7; 0 name a time\)", out), out
    for group in ("tune", "held-out"):
        line = re.search(
            rf"messages, {group} half: (\d+) questions with no evidence in the top 5; in (\d+)", out
        )
        assert line is not None and int(line.group(2)) <= int(line.group(1)), out
    # The store was imported with two sides: it is not reused as if every turn were the user's.
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--one-side"])
    with pytest.raises(SystemExit, match="was imported without --one-side"):
        bench.main()


def test_one_side_imports_every_turn_as_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("memory_locomo", ROOT / "bench/memory_locomo.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = [conversation(0)]
    roles = {r["role"] for _, r in bench.records(data) if r["kind"] == "message"}
    assert roles == {"user", "assistant"}  # Ben's turns are the other side
    one = [r for _, r in bench.records(data, one_side=True)]
    assert {r["role"] for r in one if r["kind"] == "message"} == {"user"}
    assert {r["role"] for r in one if r["kind"] == "note"} == {None}


def test_misses_beside_an_evidence_turn_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A question whose evidence id is one off (the turn before the answer) is counted apart;
    one whose hits are elsewhere is not, nor one of another half."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("memory_locomo", ROOT / "bench/memory_locomo.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from memory.types import Scope

    hits = {"a": ["D2:5", "D1:1"], "b": ["D2:9"], "c": ["D3:1"], "d": ["D2:4"]}

    class Found:
        def __init__(self, ref: str) -> None:
            self.ref = ref

    class Searcher:
        def search_sync(self, text, scope, k, now):  # type: ignore[no-untyped-def]
            return [Found(r) for r in hits[text]][:k]

    qs = [
        bench.Question(Scope(1), "a", frozenset({"D2:4"}), "held-out"),  # D2:5 is beside it
        bench.Question(Scope(1), "b", frozenset({"D2:4"}), "held-out"),  # D2:9 is not
        bench.Question(Scope(1), "c", frozenset({"D1:1"}), "tune"),  # another half
        bench.Question(Scope(1), "d", frozenset({"D2:4"}), "held-out"),  # found: no miss
    ]
    assert bench.misses_line(Searcher(), qs, "held-out").startswith(
        "held-out half: 2 questions with no evidence in the top 5; in 1 of them"
    )
    assert bench.beside("D3:1") == {"D3:0", "D3:2"} and bench.beside("x") == set()


def test_recall_is_measured_as_a_share_and_as_any_and_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from recall_eval import measure

    got = ["a", None, "x", "y", "z", "b", "q", "r", "s", "t", "c"]
    assert measure(frozenset({"a", "b", "c"}), got) == {
        5: 1 / 3,
        10: 2 / 3,
        "any@5": 1.0,
        "all@10": 0.0,
    }
    assert measure(frozenset({"b"}), got) == {5: 0.0, 10: 1.0, "any@5": 0.0, "all@10": 1.0}


def test_the_benches_embed_a_query_as_the_daemon_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CachedEmbedder.embed_query`` asks the inner embedder's ``embed_query`` (the daemon's
    int8 copy), remembers it apart from ``embed``'s vector of the same text, and between runs;
    ``daemons_embedder`` is set as the daemon's settings say."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import numpy as np
    from recall_eval import CachedEmbedder, daemons_embedder

    from memory.embedder import HashingEmbedder
    from memory.settings import MemorySettings

    class Asked(HashingEmbedder):
        def embed_query(self, texts):  # type: ignore[no-untyped-def]
            return -self.embed(texts)

    inner = Asked()
    cached = CachedEmbedder(inner, tmp_path / "vectors.npz")
    text = "what did I say about the boiler?"
    as_query, as_text = cached.embed_query([text]), cached.embed([text])
    assert np.allclose(as_query, -as_text) and not np.allclose(as_query, as_text)
    calls = inner.calls
    cached.embed_query([text])
    assert inner.calls == calls  # remembered
    cached.save()
    again = CachedEmbedder(Asked(), tmp_path / "vectors.npz")
    assert np.allclose(again.embed_query([text]), as_query) and again.inner.calls == 0  # type: ignore[attr-defined]
    daemon = daemons_embedder(MemorySettings())
    assert daemon.trace and daemon.query_int8
    assert not daemons_embedder(MemorySettings(embedding_query_int8=False)).query_int8


def test_plain_dense_ranks_each_row_by_its_whole_texts_vector_within_the_chat(
    make_memory, minilm, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The baseline is plain MiniLM: a row's vector of its whole text, not the mean of its
    sentences that the project's index keeps, and only the question's chat."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import asyncio

    import numpy as np
    from recall_eval import PlainDense

    from memory.types import Scope

    memory = make_memory(minilm)
    long = (
        "We spent the weekend at the coast with the kids. The fish and chips were great. "
        "My flat is freezing since the heating broke down. We drove home late on Sunday."
    )
    short = "The train to Leeds was late again"
    ids = [asyncio.run(memory.add_memory(t, Scope(1), "note")) for t in (long, short)]
    other = asyncio.run(memory.add_memory(long, Scope(2), "note"))
    q = minilm.embed(["the radiator stopped working"])[0]
    got = PlainDense(memory).search(q, Scope(1), 10)
    assert set(got) == set(ids) and other not in got
    whole = minilm.embed([long])[0]
    with memory.db.read() as conn:
        (stored,) = conn.execute(
            "SELECT embedding FROM memories WHERE id = ?", (ids[0],)
        ).fetchone()
    mean = np.frombuffer(stored, dtype=np.float32)
    assert float(whole @ mean) < 0.99  # the premise: the index's vector is another
    assert got[ids[0]] == pytest.approx(float(q @ whole), abs=1e-5)
    assert list(PlainDense(memory).search(q, Scope(1), 1)) == [max(got, key=got.get)]
