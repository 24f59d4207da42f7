"""Splitting a document's text into chunks for memory: along headings, then paragraphs.

A heading (a Markdown ``#`` line, as markitdown writes them) always starts a new chunk; paragraphs
are packed into a chunk until the next would pass ``size`` characters. A paragraph longer than
``size`` is cut at sentence ends (or, failing those, at spaces). When a chunk ends because it
was full rather than at a heading, the next one starts with the last ``overlap`` characters of
it (from a word start), and with the heading of the section it is in, so a chunk read alone
still says where it belongs. Hand-written because the splitters that do this come with large
frameworks (LangChain, LlamaIndex); this is the whole of what we need of them.
"""

from __future__ import annotations

import re

from memory.text import SENTENCE_END

HEADING = re.compile(r"^#{1,6}\s+\S")


def split_text(text: str, size: int = 1500, overlap: int = 200) -> list[str]:
    """Chunks of at most about ``size`` characters (plus the carried overlap and heading)."""
    if size < 50:
        raise ValueError("chunk size must be at least 50 characters")
    overlap = max(0, min(overlap, size // 2))
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    carried = 0  # how many of ``current``'s items were carried over (not new text)
    heading = ""

    def flush(full: bool) -> None:
        nonlocal current, length, carried
        body = "\n\n".join(current).strip()
        if body and len(current) > carried:
            chunks.append(body)
        current, length, carried = [], 0, 0
        if full and body and overlap:
            tail = _tail(body, overlap)
            start = [heading] if heading and not tail.startswith(heading) else []
            current = start + ([tail] if tail else [])
            length = sum(len(p) + 2 for p in current)
            carried = len(current)

    for block in _blocks(text):
        if HEADING.match(block):
            flush(full=False)
            heading = block.splitlines()[0].strip()
        for piece in _pieces(block, size):
            if len(current) > carried and length + len(piece) > size:
                flush(full=True)
            current.append(piece)
            length += len(piece) + 2
            if piece is block and HEADING.match(block):
                carried = len(current)  # a heading alone is not a chunk: it goes with what follows
    flush(full=False)
    return chunks


def _blocks(text: str) -> list[str]:
    """Paragraphs (blank-line separated), with each heading line a block of its own."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines: list[str] = []
        for line in para.split("\n"):
            if HEADING.match(line):
                if lines:
                    out.append("\n".join(lines).strip())
                    lines = []
                out.append(line.strip())
            else:
                lines.append(line)
        if lines and "\n".join(lines).strip():
            out.append("\n".join(lines).strip())
    return [b for b in out if b]


def _pieces(block: str, size: int) -> list[str]:
    if len(block) <= size:
        return [block]
    out: list[str] = []
    current = ""
    for sentence in SENTENCE_END.split(block):
        while len(sentence) > size:  # no sentence end in reach: cut at the last space
            cut = sentence.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            head, sentence = sentence[:cut].strip(), sentence[cut:].strip()
            if current:
                out.append(current)
                current = ""
            out.append(head)
        if current and len(current) + 1 + len(sentence) > size:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        out.append(current)
    return out


def _tail(text: str, n: int) -> str:
    """The last ``n`` characters of ``text``, starting at a word."""
    if len(text) <= n:
        return text
    tail = text[-n:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < n // 2 else tail
