"""Documents into memory: conversion by type, chunking, refs, limits and bad files.

Every file is made in the test (fpdf2, python-docx, zipfile, plain bytes); memory is a real
SQLite store in tmp_path.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from memory.chunking import split_text
from memory.documents import DocumentError, DocumentTooLarge, ScannedDocument, convert
from memory.embedder import HashingEmbedder
from memory.ingest import ingest_file_sync
from memory.types import Scope
from tests.memory.conftest import MakeMemory
from tests.memory.docfiles import (
    PAGE3_SENTENCE,
    make_docx,
    make_encrypted_pdf,
    make_pdf,
    make_scanned_pdf,
)


def count_rows(memory, kind: str = "document") -> int:  # type: ignore[no-untyped-def]
    with memory.db.read() as conn:
        return int(
            conn.execute("SELECT count(*) FROM memories WHERE kind = ?", (kind,)).fetchone()[0]
        )


def test_a_pdf_is_read_page_by_page(tmp_path: Path) -> None:
    doc = convert(make_pdf(tmp_path / "lease.pdf"))
    assert doc.paged and doc.pages == 5
    pages_with_sentence = [s.page for s in doc.sections if "one small cat" in s.text]
    assert pages_with_sentence == [3]
    assert "[page 3]" in doc.text()


def test_a_pdf_is_stored_with_the_page_in_each_ref_and_found_by_its_content(
    tmp_path: Path, make_memory: MakeMemory
) -> None:
    memory = make_memory()
    result = ingest_file_sync(memory, make_pdf(tmp_path / "lease.pdf"), Scope(7, 1))
    assert result.chunks == 5 == count_rows(memory)
    hits = memory.search_sync("can I keep a cat", Scope(7, 1), k=3, kinds=["document"])
    assert hits[0].ref == "lease.pdf#page=3"
    assert PAGE3_SENTENCE in hits[0].text
    # Scoped like every memory: another chat does not see it.
    assert memory.search_sync("cat", Scope(8, 1), k=3) == []


def test_a_docx_keeps_its_headings_and_is_numbered_by_chunk(
    tmp_path: Path, make_memory: MakeMemory
) -> None:
    doc = convert(make_docx(tmp_path / "rules.docx"))
    assert not doc.paged
    text = doc.text()
    assert "# House rules" in text and "## Garden" in text
    memory = make_memory(document_chunk_chars=200, document_chunk_overlap=0)
    result = ingest_file_sync(memory, tmp_path / "rules.docx", Scope(7))
    with memory.db.read() as conn:
        rows = conn.execute("SELECT ref, text FROM memories ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [f"rules.docx#{n}" for n in range(1, result.chunks + 1)]
    # Split along the headings: the garden rule and the kitchen rule are in different chunks.
    garden = next(t for _, t in rows if "gate is locked" in t)
    assert "saucepans" not in garden and "## Garden" in garden


@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_text_and_markdown(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"notes{suffix}"
    path.write_text("# Plans\n\nVisit the dentist on Friday.\n", encoding="utf-8")
    assert "dentist on Friday" in convert(path).text()


def test_html_file_becomes_markdown(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><body><h1>Recipe</h1><p>Bake the bread for forty minutes.</p></body></html>",
        encoding="utf-8",
    )
    text = convert(path).text()
    assert "# Recipe" in text and "forty minutes" in text


def test_xlsx_through_markitdown(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["item", "price"])
    sheet.append(["umbrella", 12])
    book.save(tmp_path / "shopping.xlsx")
    text = convert(tmp_path / "shopping.xlsx").text()
    assert "umbrella" in text and "12" in text


def test_pptx_through_markitdown(tmp_path: Path) -> None:
    pptx = pytest.importorskip("pptx")
    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Quarterly plan"
    slide.placeholders[1].text = "Open the second bakery in Leeds by June."
    deck.save(str(tmp_path / "plan.pptx"))
    text = convert(tmp_path / "plan.pptx").text()
    assert "Quarterly plan" in text and "second bakery in Leeds" in text


# -- bad input: a clear answer, nothing stored --------------------------------------------------
def test_a_scanned_pdf_is_reported_as_such(tmp_path: Path, make_memory: MakeMemory) -> None:
    memory = make_memory()
    path = make_scanned_pdf(tmp_path / "scan.pdf", tmp_path / "page.png")
    with pytest.raises(ScannedDocument, match="no text layer"):
        ingest_file_sync(memory, path, Scope(7))
    assert count_rows(memory) == 0


def test_a_password_protected_pdf(tmp_path: Path, make_memory: MakeMemory) -> None:
    memory = make_memory()
    with pytest.raises(DocumentError, match="password-protected"):
        ingest_file_sync(memory, make_encrypted_pdf(tmp_path / "locked.pdf"), Scope(7))
    assert count_rows(memory) == 0


def test_a_corrupt_pdf(tmp_path: Path, make_memory: MakeMemory) -> None:
    memory = make_memory()
    good = make_pdf(tmp_path / "good.pdf").read_bytes()
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(good[: len(good) // 3])
    with pytest.raises(DocumentError, match="broken.pdf"):
        ingest_file_sync(memory, bad, Scope(7))
    assert count_rows(memory) == 0


def test_limits_are_named_in_the_refusal(tmp_path: Path, make_memory: MakeMemory) -> None:
    memory = make_memory(document_max_pages=4, document_max_bytes=1_000_000)
    with pytest.raises(DocumentTooLarge, match="5 pages, over the 4-page limit"):
        ingest_file_sync(memory, make_pdf(tmp_path / "lease.pdf"), Scope(7))
    big = tmp_path / "big.txt"
    big.write_bytes(b"word " * 300_000)
    with pytest.raises(DocumentTooLarge, match="over the 1 MB limit"):
        ingest_file_sync(memory, big, Scope(7))
    assert count_rows(memory) == 0


def test_a_zip_bomb_disguised_as_docx(tmp_path: Path, make_memory: MakeMemory) -> None:
    memory = make_memory(document_max_unpacked_bytes=1_000_000)
    bomb = tmp_path / "report.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * 50_000_000)
    assert bomb.stat().st_size < 200_000  # small on disk, 50 MB unpacked
    with pytest.raises(DocumentTooLarge, match="ZIP bomb"):
        ingest_file_sync(memory, bomb, Scope(7))
    assert count_rows(memory) == 0


def test_a_docx_that_is_not_a_zip(tmp_path: Path) -> None:
    fake = tmp_path / "letter.docx"
    fake.write_bytes(b"this is not an office file")
    with pytest.raises(DocumentError, match="not a valid DOCX"):
        convert(fake)


def test_text_that_is_not_utf8(tmp_path: Path, make_memory: MakeMemory) -> None:
    memory = make_memory()
    path = tmp_path / "old.txt"
    path.write_bytes("Café crème".encode("latin-1"))
    with pytest.raises(DocumentError, match=r"not UTF-8 text \(byte 0xE9 at position 3\)"):
        ingest_file_sync(memory, path, Scope(7))
    assert count_rows(memory) == 0


def test_an_unknown_type(tmp_path: Path) -> None:
    path = tmp_path / "program.exe"
    path.write_bytes(b"MZ")
    with pytest.raises(DocumentError, match=r"can't read \.exe files"):
        convert(path)


class FailingEmbedder(HashingEmbedder):
    """Embeds the first batch, then fails: as a model running out of memory part-way would."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def embed(self, texts):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls > 2:  # the first call is warm-up's (nothing pending); the second, batch 1
            raise RuntimeError("out of memory")
        return super().embed(texts)


def test_a_document_that_fails_part_way_stores_no_chunk(
    tmp_path: Path, make_memory: MakeMemory
) -> None:
    memory = make_memory(FailingEmbedder(), embedding_batch_size=1)  # batches of 4: 4 + 1
    with pytest.raises(RuntimeError, match="out of memory"):
        ingest_file_sync(memory, make_pdf(tmp_path / "lease.pdf"), Scope(7))
    assert count_rows(memory) == 0


# -- chunking -----------------------------------------------------------------------------------
def test_chunks_keep_to_the_size_and_overlap() -> None:
    sentences = " ".join(f"Sentence {i} ends here." for i in range(200))
    chunks = split_text("# Notes\n\n" + sentences, size=300, overlap=80)
    assert len(chunks) > 5
    assert all(len(c) <= 300 + 80 + len("# Notes") + 4 for c in chunks)
    # Every sentence is somewhere, in order, and consecutive chunks share text.
    joined = " ".join(chunks)
    assert all(f"Sentence {i} ends" in joined for i in range(200))
    for a, b in zip(chunks, chunks[1:], strict=False):
        body = b.removeprefix("# Notes").strip()
        assert body[:20] in a
    # Each chunk says which section it is in.
    assert all(c.startswith("# Notes") for c in chunks)


def test_a_heading_starts_a_new_chunk() -> None:
    chunks = split_text("# A\n\nalpha text.\n\n# B\n\nbeta text.", size=1000, overlap=100)
    assert chunks == ["# A\n\nalpha text.", "# B\n\nbeta text."]


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_add_file_then_search_returns_the_page(
    data_dir: Path, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from bot.cli.memory import app

    monkeypatch.setattr(
        "memory.embedder.make_embedder", lambda model, batch_size=64: HashingEmbedder()
    )
    cli = CliRunner()
    added = cli.invoke(app, ["add-file", str(make_pdf(tmp_path / "lease.pdf")), "--chat", "5"])
    assert added.exit_code == 0, added.output
    assert added.output.startswith("5 chunks from 5 pages stored from lease.pdf")
    again = cli.invoke(app, ["add-file", str(tmp_path / "lease.pdf"), "--chat", "5"])
    assert again.output.startswith("5 chunks from 5 pages of lease.pdf were in memory already")
    found = cli.invoke(app, ["search", "small cat dogs allowed", "--chat", "5", "--json"])
    hits = json.loads(found.stdout)
    assert hits[0]["kind"] == "document" and hits[0]["ref"] == "lease.pdf#page=3"
    plain = cli.invoke(app, ["search", "small cat dogs allowed", "--chat", "5"])
    assert "ref=lease.pdf#page=3" in plain.output.splitlines()[0]
    bad = tmp_path / "latin.txt"
    bad.write_bytes("naïve".encode("latin-1"))
    refused = cli.invoke(app, ["add-file", str(bad)])
    assert refused.exit_code == 2 and "not UTF-8" in refused.output
