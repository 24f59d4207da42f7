"""Text hygiene and hostile input: nothing a user types may crash storage or FTS5."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory import store
from memory.store import Filters
from memory.text import MemoryInputError, checked, chunks, clean, content_hash, fts_query
from memory.types import Scope

HOSTILE = [
    '"',
    '""',
    "'",
    "*",
    "-",
    "-foo",
    "foo*",
    "NEAR",
    "NEAR(a b)",
    "AND",
    "a AND",
    "OR OR",
    "NOT x",
    "(((",
    ")",
    "a) OR (b",
    "text:foo",
    "^start",
    "{col}: x",
    "?!...;",
    "\x00",
    "café -*",
]


def test_clean_removes_nul_control_and_lone_surrogates() -> None:
    assert clean("a\x00b\ud800c\x07\n") == "ab?c"
    assert clean(b"caf\xc3\xa9 \xff") == "café \ufffd"


def test_checked_refuses_empty_and_oversized_text_with_a_fix() -> None:
    with pytest.raises(MemoryInputError) as empty:
        checked(" \x00\t ", 1000)
    assert empty.value.fix
    with pytest.raises(MemoryInputError, match="over the limit"):
        checked("x" * 2001, 2000)


def test_content_hash_ignores_whitespace_runs_only() -> None:
    assert content_hash("a  b\n") == content_hash("a b")
    assert content_hash("a b") != content_hash("A b")


def test_chunks_cover_the_text_at_word_boundaries() -> None:
    text = " ".join(f"word{i}" for i in range(500))
    parts = chunks(text, 300)
    assert all(len(p) <= 300 for p in parts)
    assert " ".join(parts).split() == text.split()


def test_fts_query_quotes_every_token() -> None:
    assert fts_query("NEAR(cats AND dogs)") == '"near" OR "cats" OR "dogs"'
    assert fts_query("?!...") is None
    assert fts_query("the a") == '"the" OR "a"'  # only stopwords: keep them


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_are_read_as_plain_words(make_memory, query: str) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    memory.add_sync([memory.new("foo and cats near the text column", Scope(1), "note")])
    memory.add_sync([memory.new("rain is forecast for the weekend", Scope(1), "note")])
    hits = memory.search_sync(query, Scope(1), k=5)
    plain = " ".join(re.findall(r"\w+", query))
    if not plain:  # nothing but operators and punctuation: nothing is recalled
        assert hits == []
        return
    # The user gets what the same words typed without any syntax get.
    assert [h.id for h in hits] == [h.id for h in memory.search_sync(plain, Scope(1), k=5)]
    if "foo" in query:
        assert hits[0].text.startswith("foo")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_a_valid_fts_query(tmp_path_factory, text: str) -> None:  # type: ignore[no-untyped-def]
    from memory.db import Database
    from memory.schema import migrations

    global _FUZZ_DB
    if _FUZZ_DB is None:
        _FUZZ_DB = Database.open(tmp_path_factory.mktemp("fuzz") / "f.db", [migrations])
        store.insert_memories(
            _FUZZ_DB, [store.NewMemory(1, None, "note", "some words here", "h", 0.0)]
        )
    match = fts_query(text)
    if match is not None:
        store.fts_search(_FUZZ_DB, match, Filters(Scope(1)), 5)


_FUZZ_DB = None


def test_sentences_are_cut_at_their_ends_and_grouped_past_the_limit() -> None:
    from memory.text import sentences

    assert sentences("One thing. Two things!  Three?\n\nA new paragraph") == [
        "One thing.",
        "Two things!",
        "Three?",
        "A new paragraph",
    ]
    assert sentences("Fine. Ok. It is. Yes") == ["Fine.", "It is."]  # 3 characters or fewer go
    many = " ".join(f"Sentence number {n}." for n in range(10))
    assert len(sentences(many)) == 4  # a short text: four at most, neighbours run together
    assert sentences(many, limit=5)[0] == "Sentence number 0. Sentence number 1."
    long = " ".join(f"This is a rather longer sentence, number {n}." for n in range(60))
    assert len(long) // 300 < len(sentences(long)) <= len(long) // 150  # about one per 150
    assert sentences("no end mark at all") == ["no end mark at all"]
