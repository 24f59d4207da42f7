"""Text hygiene for everything entering memory: cleaning, hashing, chunking, token estimates,
and turning user text into an FTS5 query that can never be a syntax error.

FTS5 has its own query language (quotes, ``*``, ``-``, ``NEAR``, ``AND``/``OR``/``NOT``, column
filters, parentheses). Rather than escape it piecemeal, user text is cut into word tokens and each
token is passed as a double-quoted string, so every operator is reduced to a plain word.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata

from memory.errors import FamiliarError


class MemoryInputError(FamiliarError):
    """Text that cannot be stored: empty after cleaning, or over the configured size."""


_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WORD = re.compile(r"\w+", re.UNICODE)

# Words that carry no retrieval signal; removing them from the OR-query keeps FTS5 from ranking
# every row that contains "what" or "the". Kept when a query has nothing else.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these they
    this those through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself yourselves s t don ve ll re d m""".split()
)


def clean(text: str | bytes) -> str:
    """Decode bytes as UTF-8 (bad bytes become U+FFFD), replace lone surrogates, drop NULs and
    other control characters except newlines and tabs, normalise to NFC, strip the ends."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    # A lone surrogate cannot be encoded as UTF-8 and would make SQLite or the tokenizer fail.
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("", text)
    return unicodedata.normalize("NFC", text).strip()


# Characters that show nothing on their own: controls, format characters (zero-width space and
# joiners, word joiner, BOM, bidi marks), separators, marks with no base (variation selectors),
# and the blank "letters" (Hangul fillers, the blank Braille pattern) used to fake an empty message.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def has_visible(text: str) -> bool:
    """Whether ``text`` has anything a person could see: False for an empty message, whitespace,
    or only zero-width and control characters (treated as empty everywhere)."""
    return any(
        ch not in _BLANK_LETTERS and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
        for ch in text
    )


def checked(text: str | bytes, max_bytes: int) -> str:
    """``clean`` and refuse what cannot be remembered, saying why."""
    cleaned = clean(text)
    if not has_visible(cleaned):
        raise MemoryInputError("the text is empty", "send some words to remember")
    size = len(cleaned.encode("utf-8"))
    if size > max_bytes:
        raise MemoryInputError(
            f"the text is {size:,} bytes, over the limit of {max_bytes:,}",
            "split it into smaller pieces, or raise memory.max_text_bytes",
        )
    return cleaned


SPEAKER_MAX = 32  # characters of a group member's name kept as the label of their turns


def speaker_label(name: str) -> str:
    """A group member's name as it labels their turns for the model ("Ann: ..."): one line of
    visible characters (control and format characters, which could hide or reorder text, are
    dropped; a colon or bracket, which could fake another label, becomes a space), at most
    ``SPEAKER_MAX`` characters; "" when nothing visible is left."""
    kept = "".join(
        " " if ch in ":[]" or ch.isspace() else ch
        for ch in name
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    return _WS.sub(" ", kept).strip()[:SPEAKER_MAX].strip()


def content_hash(text: str) -> str:
    """Hash of the text with whitespace runs collapsed: the key for dedupe and embedding reuse."""
    return hashlib.sha256(_WS.sub(" ", text).strip().encode("utf-8")).hexdigest()


def chunks(text: str, size: int) -> list[str]:
    """Split long text for embedding at whitespace near ``size`` characters."""
    if len(text) <= size:
        return [text]
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut if cut > start else end
        out.append(text[start:end])
        start = end
    return [c for c in (c.strip() for c in out) if c]


SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n\s*\n")  # after . ! ? …, and at blank lines


def sentences(text: str, limit: int | None = None) -> list[str]:
    """The sentences of ``text`` (cut after . ! ? … and at blank lines; pieces of three
    characters or fewer dropped), at most ``limit``: past that, runs of neighbours together.
    By default four, or one per 150 characters up to 32: each is encoded on its own, and a
    long text of many short sentences would cost the encoder more than the text whole."""
    if limit is None:
        limit = max(4, min(32, len(text) // 150))
    parts = [p for p in (q.strip() for q in SENTENCE_END.split(text)) if len(p) > 3]
    if len(parts) <= limit:
        return parts
    size = -(-len(parts) // limit)
    return [" ".join(parts[i : i + size]) for i in range(0, len(parts), size)]


def estimate_tokens(text: str) -> int:
    """A model-independent token estimate (about 4 characters a token for English, and never
    fewer than the word count); close enough to budget context without a tokenizer."""
    if not text:
        return 0
    return max(math.ceil(len(text) / 4), len(text.split()))


def words(text: str) -> list[str]:
    return _WORD.findall(clean(text).lower())


def query_words(text: str, *, keep_stopwords: bool = False) -> list[str]:
    """The distinct words of ``text`` to search for: stopwords left out unless nothing else is."""
    tokens = words(text)
    content = [t for t in tokens if t not in STOPWORDS] if not keep_stopwords else tokens
    chosen = content or tokens
    unique = list(dict.fromkeys(t.replace('"', "") for t in chosen))
    return [t for t in unique if t][:64]


def match_of(terms: list[str]) -> str | None:
    """An FTS5 MATCH expression OR-ing ``terms``, each quoted so that no input can be read as
    syntax; ``None`` when there is nothing to match."""
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


def fts_query(text: str, *, keep_stopwords: bool = False) -> str | None:
    """An FTS5 MATCH expression for the words of ``text``; ``None`` when it has none (only
    punctuation, empty)."""
    return match_of(query_words(text, keep_stopwords=keep_stopwords))
