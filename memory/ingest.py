"""A document or a web page into memory: converted, split into chunks, stored in one transaction.

Each chunk is a memory row of kind ``document`` whose ``ref`` says where it came from:
``<file name>#page=<n>`` for paged formats, ``<file name>#<chunk n>`` otherwise, and the page's
URL for a web page. The chunk's text starts with that origin in words ("lease.pdf, page 3:"),
so a recalled chunk read on its own (by the model, or in /recall) says what it is from. All of a
document's chunks are written together or not at all; a document whose every chunk the chat
holds already (sent twice) is not stored again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from memory import store
from memory.chunking import split_text
from memory.documents import Converted, Limits, convert
from memory.service import Memory
from memory.settings import MemorySettings
from memory.store import NewMemory
from memory.types import Scope

KIND = "document"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Piece:
    text: str
    ref: str


@dataclass
class Ingested:
    name: str
    kind: str
    pages: int
    chunks: int
    text: str  # the whole text, with page markers for paged formats
    ids: list[int] = field(default_factory=list)
    pieces: list[Piece] = field(default_factory=list)
    already: bool = False  # the same text was in this chat's memory already: nothing was added


def limits_of(settings: MemorySettings) -> Limits:
    return Limits(
        max_bytes=settings.document_max_bytes,
        max_pages=settings.document_max_pages,
        max_unpacked_bytes=settings.document_max_unpacked_bytes,
    )


def pieces_of(doc: Converted, settings: MemorySettings, origin: str | None = None) -> list[Piece]:
    """The chunks and their refs; ``origin`` (a URL) stands for the file name in refs."""
    size, overlap = settings.document_chunk_chars, settings.document_chunk_overlap
    base = origin or doc.name
    out: list[Piece] = []
    if doc.paged:
        for section in doc.sections:
            for chunk in split_text(section.text, size, overlap):
                out.append(
                    Piece(
                        f"{doc.name}, page {section.page}:\n{chunk}", f"{base}#page={section.page}"
                    )
                )
        return out
    chunks = split_text(doc.text(), size, overlap)
    return [
        Piece(f"{doc.name}, part {n} of {len(chunks)}:\n{chunk}", f"{base}#{n}")
        for n, chunk in enumerate(chunks, start=1)
    ]


def web_pieces(url: str, title: str, text: str, settings: MemorySettings) -> list[Piece]:
    head = f"{title} ({url})" if title else url
    chunks = split_text(text, settings.document_chunk_chars, settings.document_chunk_overlap)
    return [Piece(f"{head}:\n{chunk}", url) for chunk in chunks]


def known_ids(memory: Memory, items: list[NewMemory], scope: Scope) -> list[int] | None:
    """The ids of the same chunks (same refs, same text) already stored in the chat, when every
    one of them is: a document sent twice is kept once."""
    known = store.document_rows(memory.db, scope.chat_id, [m.ref or "" for m in items])
    ids = [known.get((m.ref or "", m.content_hash)) for m in items]
    return [i for i in ids if i is not None] if items and None not in ids else None


def store_pieces_sync(
    memory: Memory,
    pieces: list[Piece],
    scope: Scope,
    *,
    source: str,
    progress: Progress | None = None,
) -> tuple[list[int], bool]:
    """All or none: the rows go in one transaction (vectors computed first, in batches).
    Returns the ids, and whether they were all stored already (then nothing is added)."""
    items = [memory.new(p.text, scope, KIND, ref=p.ref, source=source) for p in pieces]
    known = known_ids(memory, items, scope)
    if known is not None:
        return known, True
    return memory.add_all_sync(items, progress), False


def ingest_file_sync(
    memory: Memory,
    path: Path,
    scope: Scope,
    *,
    name: str | None = None,
    progress: Progress | None = None,
) -> Ingested:
    """Convert ``path`` (raising ``DocumentError`` for what cannot be read) and store its chunks."""
    doc = convert(path, limits_of(memory.settings), name)
    pieces = pieces_of(doc, memory.settings)
    ids, already = store_pieces_sync(
        memory, pieces, scope, source=f"file:{doc.kind}", progress=progress
    )
    return Ingested(doc.name, doc.kind, doc.pages, len(ids), doc.text(), ids, pieces, already)


async def ingest_file(
    memory: Memory,
    path: Path,
    scope: Scope,
    *,
    name: str | None = None,
    progress: Progress | None = None,
    origin: str | None = None,
) -> Ingested:
    """``ingest_file_sync`` off the event loop: conversion on a thread, storing on memory's
    worker (where writes keep their order). ``progress`` is called from that worker. ``origin``
    (the URL a PDF came from) replaces the file name in refs."""
    doc = await asyncio.to_thread(convert, path, limits_of(memory.settings), name)
    pieces = await asyncio.to_thread(pieces_of, doc, memory.settings, origin)
    items = [memory.new(p.text, scope, KIND, ref=p.ref, source=f"file:{doc.kind}") for p in pieces]
    known = await memory.db.run(known_ids, memory, items, scope)
    if known is not None:
        return Ingested(doc.name, doc.kind, doc.pages, len(known), doc.text(), known, pieces, True)
    ids = await memory.add_all(items, progress)
    return Ingested(doc.name, doc.kind, doc.pages, len(ids), doc.text(), ids, pieces)


async def ingest_page(memory: Memory, url: str, title: str, text: str, scope: Scope) -> Ingested:
    """A fetched web page's text, stored as chunks whose ref is its URL."""
    pieces = web_pieces(url, title, text, memory.settings)
    items = [memory.new(p.text, scope, KIND, ref=p.ref, source="web") for p in pieces]
    known = await memory.db.run(known_ids, memory, items, scope)
    if known is not None:
        return Ingested(title or url, "web", 0, len(known), text, known, pieces, True)
    ids = await memory.add_all(items)
    return Ingested(title or url, "web", 0, len(ids), text, ids, pieces)
