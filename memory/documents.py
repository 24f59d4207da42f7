"""Files memory can ingest, turned into text: one function, ``convert``, path in, sections out.

The converter is chosen by the file's suffix in one place (``CONVERTERS``). Every one is a
maintained library: pypdf for PDF (page by page, so each chunk can say which page it came from),
markitdown for DOCX, XLSX, PPTX and HTML (Markdown out, headings kept), and Python's own strict
UTF-8 decoder for plain text and Markdown. Nothing here parses a format by hand.

Bad input is refused with a ``DocumentError`` that names the problem and the limit: a file over
``max_bytes``, a PDF over ``max_pages``, an encrypted or corrupt PDF, a scanned PDF without a
text layer, an Office file that is not a ZIP or would unpack past ``max_unpacked_bytes`` (a ZIP
bomb), a text file that is not UTF-8.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from memory.errors import FamiliarError

PAGED = (".pdf",)
OFFICE = (".docx", ".xlsx", ".pptx")
TEXT = (".txt", ".md", ".markdown")
HTML = (".html", ".htm")


class DocumentError(FamiliarError):
    """A file that cannot be taken into memory; ``str()`` says why, for the person who sent it."""


class UnsupportedDocument(DocumentError):
    pass


class DocumentTooLarge(DocumentError):
    pass


class ScannedDocument(DocumentError):
    """A PDF whose pages carry images but no text layer."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20_000_000
    max_pages: int = 500
    max_unpacked_bytes: int = 100_000_000
    max_chars: int = 5_000_000


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based, for paged formats


@dataclass(frozen=True)
class Converted:
    name: str  # the file's name, as refs show it
    kind: str  # "pdf", "docx", "txt", ...
    sections: list[Section]

    @property
    def paged(self) -> bool:
        return any(s.page is not None for s in self.sections)

    @property
    def pages(self) -> int:
        return max((s.page or 0 for s in self.sections), default=0)

    def text(self) -> str:
        """The whole text, with a ``[page n]`` marker before each page of a paged format."""
        if not self.paged:
            return "\n\n".join(s.text for s in self.sections)
        return "\n\n".join(f"[page {s.page}]\n{s.text}" for s in self.sections if s.text)


def supported_suffixes() -> list[str]:
    return sorted(CONVERTERS)


def convert(path: Path, limits: Limits = Limits(), name: str | None = None) -> Converted:
    """Read ``path`` as text, by its suffix (or ``name``'s, when the file was saved under another)."""
    path = Path(path)
    name = Path(name or path.name).name
    suffix = Path(name).suffix.lower()
    converter = CONVERTERS.get(suffix)
    if converter is None:
        raise UnsupportedDocument(
            f"I can't read {suffix or 'files without an extension'} files",
            f"send one of: {', '.join(supported_suffixes())}",
        )
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise DocumentTooLarge(
            f"{name} is {size / 1e6:.1f} MB, over the {limits.max_bytes / 1e6:g} MB limit for documents",
            "send a smaller file or split it",
        )
    sections = converter(path, name, limits)
    total = sum(len(s.text) for s in sections)
    if total > limits.max_chars:
        raise DocumentTooLarge(
            f"{name} holds {total:,} characters of text, over the {limits.max_chars:,} limit",
            "split it into smaller files",
        )
    if not any(s.text.strip() for s in sections):
        raise DocumentError(f"{name} contains no text", "send a file with text in it")
    return Converted(name, suffix.lstrip("."), sections)


# -- converters -------------------------------------------------------------------------------
def _pdf(path: Path, name: str, limits: Limits) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:  # an owner password only (printing/copying limits) opens with the empty one
                opened = bool(reader.decrypt(""))
            except (PyPdfError, NotImplementedError):
                opened = False
            if not opened:
                raise DocumentError(
                    f"{name} is password-protected", "remove the password and send it again"
                )
        count = len(reader.pages)
        if count > limits.max_pages:
            raise DocumentTooLarge(
                f"{name} has {count} pages, over the {limits.max_pages}-page limit",
                "send the part you need as a smaller PDF",
            )
        sections: list[Section] = []
        images = 0
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").strip()
            if not text:
                images += _has_images(page)
            sections.append(Section(text, number))
    except DocumentError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError(
            f"{name} is not a readable PDF ({type(exc).__name__}: {str(exc)[:120]})",
            "check that the file is complete and not damaged",
        ) from exc
    if count and not any(s.text for s in sections):
        raise ScannedDocument(
            f"{name} has no text layer: it looks like a scan"
            + (f" ({images} of its {count} pages are images)" if images else ""),
            "run it through OCR first, or send the text",
        )
    return sections


def _has_images(page: object) -> int:
    try:
        return 1 if list(page.images) else 0  # type: ignore[attr-defined]
    except Exception:  # images are only for the message; a page that fails them counts none
        return 0


def _check_zip(path: Path, name: str, limits: Limits) -> None:
    """An Office file is a ZIP: refuse one that is not, or that would unpack past the limit."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise DocumentError(
            f"{name} is not a valid {Path(name).suffix.lstrip('.').upper()} file (not a ZIP archive)",
            "save it again from the program that made it",
        ) from exc
    if unpacked > limits.max_unpacked_bytes:
        raise DocumentTooLarge(
            f"{name} would unpack to {unpacked / 1e6:,.0f} MB, over the "
            f"{limits.max_unpacked_bytes / 1e6:g} MB limit (a ZIP bomb?)",
            "send the document's text another way",
        )


def _markitdown(path: Path, name: str) -> str:
    from markitdown import MarkItDown

    try:
        result = MarkItDown(enable_plugins=False).convert_local(str(path))
    except Exception as exc:  # markitdown wraps every converter's failure in its own types
        raise DocumentError(
            f"{name} could not be read ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
            "check that the file opens, or save it in another format",
        ) from exc
    return (result.text_content or "").strip()


def _office(path: Path, name: str, limits: Limits) -> list[Section]:
    _check_zip(path, name, limits)
    return [Section(_markitdown(path, name))]


def _html(path: Path, name: str, limits: Limits) -> list[Section]:
    _utf8(path.read_bytes(), name)  # the same encoding rule as text files
    return [Section(_markitdown(path, name))]


def _utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02X} at position {exc.start})",
            "save it as UTF-8 and send it again",
        ) from exc


def _text(path: Path, name: str, limits: Limits) -> list[Section]:
    text = _utf8(path.read_bytes(), name)
    if "\x00" in text:
        raise DocumentError(f"{name} is binary, not text", "send a text file")
    return [Section(text.replace("\r\n", "\n").strip())]


CONVERTERS: dict[str, Callable[[Path, str, Limits], list[Section]]] = {
    ".pdf": _pdf,
    **{s: _office for s in OFFICE},
    **{s: _text for s in TEXT},
    **{s: _html for s in HTML},
}
