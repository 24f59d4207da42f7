"""Model output (Markdown) to Telegram HTML, and splitting long text into messages.

Hand-written because Telegram's HTML is a small fixed subset (b, i, s, code, pre, a, blockquote)
and the libraries that render Markdown produce full HTML (p, ul, h1) that Telegram rejects. The
converter only emits a tag for a complete pair of markers, so its output is always balanced;
when Telegram still rejects it, the transport resends the text plain.

Splitting works on the Markdown source: paragraphs are packed into messages of at most
``limit`` characters; a fenced code block that does not fit is cut on line boundaries and each
piece is closed and reopened with the same fence, so no message holds half a code block.
"""

from __future__ import annotations

import html
import re

TELEGRAM_LIMIT = 4096
# Room for the fences a split adds and for Markdown markers that become tags.
SPLIT_LIMIT = 4000

_FENCE_BLOCK = re.compile(r"^```([\w+#.-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)<>\"]+)\)")
# Marker content never holds "<", ">" (a tag made by an earlier step) nor a link hole, so every
# tag emitted here is closed inside the element it opened in.
_BOLD = re.compile(r"\*\*([^*\n<>\x01]+?)\*\*|__([^_\n<>\x01]+?)__")
_ITALIC = re.compile(
    r"(?<![\w*])\*([^*\s<>\x01](?:[^*\n<>\x01]*[^*\s<>\x01])?)\*(?![\w*])"
    r"|(?<!\w)_([^_\s<>\x01](?:[^_\n<>\x01]*[^_\s<>\x01])?)_(?!\w)"
)
_STRIKE = re.compile(r"~~([^~\n<>\x01]+)~~")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", re.M)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.M)
_HOLE = "\x00"  # a finished fragment (code): may sit inside bold or italic
_LINK_HOLE = "\x01"  # a link's opening or closing tag: nothing may span it


def markdown_to_html(text: str) -> str:
    """Telegram HTML for Markdown ``text``; every ``<``, ``>`` and ``&`` of the text is escaped."""
    text = text.replace(_HOLE, "").replace(_LINK_HOLE, "")
    holes: list[str] = []

    def keep(fragment: str, mark: str = _HOLE) -> str:
        holes.append(fragment)
        return f"{mark}{len(holes) - 1}{mark}"

    def fence(m: re.Match[str]) -> str:
        lang, body = m.group(1), m.group(2).rstrip("\n")
        cls = f' class="language-{html.escape(lang)}"' if lang else ""
        return keep(f"<pre><code{cls}>{html.escape(body, quote=False)}</code></pre>")

    text = _FENCE_BLOCK.sub(fence, text)
    text = _INLINE_CODE.sub(
        lambda m: keep(f"<code>{html.escape(m.group(1), quote=False)}</code>"), text
    )
    text = html.escape(text, quote=False)
    text = _LINK.sub(
        lambda m: (
            keep(f'<a href="{html.escape(html.unescape(m.group(2)))}">', _LINK_HOLE)
            + m.group(1)
            + keep("</a>", _LINK_HOLE)
        ),
        text,
    )
    text = _HEADING.sub(lambda m: f"<b>{m.group(1)}</b>", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = _BOLD.sub(lambda m: f"<b>{m.group(1) or m.group(2)}</b>", text)
    text = _ITALIC.sub(lambda m: f"<i>{m.group(1) or m.group(2)}</i>", text)
    text = _STRIKE.sub(lambda m: f"<s>{m.group(1)}</s>", text)
    text = _quote_blocks(text)
    return re.sub("[\x00\x01](\\d+)[\x00\x01]", lambda m: holes[int(m.group(1))], text)


def _quote_blocks(text: str) -> str:
    """Consecutive ``> `` lines (already escaped to ``&gt; ``) become one blockquote."""
    out: list[str] = []
    quote: list[str] = []
    for line in text.split("\n"):
        if line.startswith("&gt; ") or line == "&gt;":
            quote.append(line[5:])
            continue
        if quote:
            out.append("<blockquote>" + "\n".join(quote) + "</blockquote>")
            quote = []
        out.append(line)
    if quote:
        out.append("<blockquote>" + "\n".join(quote) + "</blockquote>")
    return "\n".join(out)


def _blocks(text: str) -> list[tuple[str, str | None]]:
    """Paragraphs and whole fenced code blocks: ``(text, fence opener or None)``."""
    blocks: list[tuple[str, str | None]] = []
    para: list[str] = []
    code: list[str] | None = None
    opener = ""
    for line in text.split("\n"):
        if code is not None:
            code.append(line)
            if line.strip().startswith("```"):
                blocks.append(("\n".join(code), opener))
                code = None
            continue
        if line.strip().startswith("```"):
            if para:
                blocks.append(("\n".join(para), None))
                para = []
            code, opener = [line], line.strip()
            continue
        if not line.strip():
            if para:
                blocks.append(("\n".join(para), None))
                para = []
            continue
        para.append(line)
    if code is not None:  # an unclosed fence: close it so every piece renders as code
        code.append("```")
        blocks.append(("\n".join(code), opener))
    if para:
        blocks.append(("\n".join(para), None))
    return blocks


def _hard_split(line: str, limit: int) -> list[str]:
    pieces = []
    while len(line) > limit:
        cut = line.rfind(" ", limit // 2, limit)
        cut = cut if cut > 0 else limit
        pieces.append(line[:cut])
        line = line[cut:].lstrip(" ")
    return pieces + [line]


def _split_block(block: str, opener: str | None, limit: int) -> list[str]:
    """Cut one oversized block on line boundaries; code pieces keep their fences."""
    lines = block.split("\n")
    if opener is not None:
        lines = lines[1:-1]
        head, tail = opener, "```"
        room = limit - len(head) - len(tail) - 2
    else:
        head = tail = ""
        room = limit
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        for part in _hard_split(line, room):
            if current and size + len(part) + 1 > room:
                pieces.append("\n".join(current))
                current, size = [], 0
            current.append(part)
            size += len(part) + 1
    if current or not pieces:
        pieces.append("\n".join(current))
    if opener is None:
        return pieces
    return [f"{head}\n{piece}\n{tail}" for piece in pieces]


def split_markdown(text: str, limit: int = SPLIT_LIMIT) -> list[str]:
    """Messages of at most ``limit`` characters, cut between paragraphs, then lines."""
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    current = ""
    for block, opener in _blocks(text):
        parts = [block] if len(block) <= limit else _split_block(block, opener, limit)
        for part in parts:
            if current and len(current) + 2 + len(part) > limit:
                chunks.append(current)
                current = ""
            current = f"{current}\n\n{part}" if current else part
    if current:
        chunks.append(current)
    return chunks or [text[:limit]]
