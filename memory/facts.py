"""Memory cards ("facts"): the extractor interface and the dedupe/supersede decision.

A new fact is compared with the scope's current facts: the same content hash, or a cosine
similarity of at least ``fact_duplicate_cosine``, makes it a duplicate (the known card is
refreshed, never copied); a similarity of at least ``fact_supersede_cosine`` makes it a newer
version of the same statement, which replaces the old card while the old one stays as history
(``superseded_by``). A near-duplicate is a duplicate only when nothing that matters differs
(numbers, codes, times, dates, names, negation: ``what_differs``); "my phone number is 555-0142"
after "... 555-0199" is a correction, and supersedes. Similarity alone cannot tell "my wife is Anna" from "my sister is Anna"
(cosine 0.88 with MiniLM), so a supersede also needs the same frame: both facts start with the
same words ("my favourite colour is ..." -> blue/green; "I live in ..." -> Berlin/Paris, where a
long shared frame lowers the similarity needed to 0.5). Anything else is added. Nothing is
dropped: every call ends in exactly one of the three outcomes and says which. Pairs that are
very similar but fit no rule are "unclear"; a ``FactJudge`` (a model) decides those when one is
configured.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from memory.text import STOPWORDS
from memory.types import Message


class FactExtractor(ABC):
    """Turns conversation turns into short standalone facts (the agents package plugs in an LLM)."""

    @abstractmethod
    async def extract(self, turns: list[Message]) -> list[str]:
        """Facts stated in ``turns``, each a short sentence that makes sense on its own."""


class PatternFactExtractor(FactExtractor):
    """The no-LLM extractor: user sentences that state something about the user ("I am...",
    "my ... is ...", "remember that ..."), never from a message they forwarded. Conservative by
    design; an LLM extractor does better."""

    _CUES = (
        "remember that ",
        "i am ",
        "i'm ",
        "my ",
        "i live",
        "i work",
        "i like",
        "i love",
        "i hate",
        "i have ",
    )

    async def extract(self, turns: list[Message]) -> list[str]:
        out: list[str] = []
        for turn in turns:
            if turn.role != "user" or turn.meta.get("forwarded_from"):
                continue  # a forwarded "I am ..." is its author's, not the user's
            for sentence in _sentences(turn.text):
                low = sentence.lower()
                if any(low.startswith(c) for c in self._CUES) and 3 <= len(sentence.split()) <= 40:
                    fact = (
                        sentence[len("remember that ") :]
                        if low.startswith("remember that ")
                        else sentence
                    )
                    out.append(fact[0].upper() + fact[1:])
        return list(dict.fromkeys(out))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


_WORD = re.compile(r"\w+")
LONG_FRAME_COSINE = 0.5

# What makes two near-identical sentences different facts: a number or a code, a time or a
# date, a name, a negation. Embeddings barely see these ("my phone number is 555-0199" and
# "... 555-0142" are 0.98 apart with MiniLM), so they are compared as tokens.
_TOKEN = re.compile(r"\w+(?:[-:./,']\w+)*")
_NEGATIONS = frozenset(
    "not no never none nobody nothing nowhere neither nor without cannot cant dont doesnt didnt"
    " isnt arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt longer".split()
)
_TIME_WORDS = frozenset(
    """january february march april june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday
    saturday sunday today tomorrow yesterday tonight morning afternoon evening noon midnight
    week weekend month year daily weekly monthly yearly""".split()
)
_NUMBER_WORDS = frozenset(
    """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
    fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty
    ninety hundred thousand million billion first second third fourth fifth sixth seventh eighth
    ninth tenth once twice half double""".split()
)


@dataclass(frozen=True)
class Salient:
    """The tokens of a sentence that change its meaning when they change."""

    tokens: frozenset[str]  # numbers, codes, times, dates, names (lower-cased)
    negated: bool
    words: frozenset[str]  # every token, lower-cased


def salient(text: str) -> Salient:
    raw = _TOKEN.findall(text)
    words = [w.lower().strip(".,") for w in raw]
    negated = False
    picked: set[str] = set()
    for i, (w, low) in enumerate(zip(raw, words, strict=True)):
        bare = low.replace("'", "")
        if bare in _NEGATIONS or bare.endswith("nt") and bare[:-2] + "n't" in low:
            negated = True
        if any(ch.isdigit() for ch in low) or low in _TIME_WORDS or low in _NUMBER_WORDS:
            picked.add(low)
        elif low in ("am", "pm") and i > 0 and words[i - 1][:1].isdigit():  # "10 am", not "I am"
            picked.add(low)
        # A capitalised word inside the sentence is a name ("Anna", "Dr Moss"); the first word
        # and "I" are capitalised anyway.
        elif i > 0 and w[:1].isupper() and low != "i" and not low.startswith("i'"):
            picked.add(low)
    return Salient(frozenset(picked), negated, frozenset(words))


def content_words(text: str) -> frozenset[str]:
    """The words of ``text`` less stopwords, lower-cased, a plural "s" dropped."""
    out = set()
    for w in _TOKEN.findall(text.lower()):
        w = w.strip(".,'")
        if w and w not in STOPWORDS:
            out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return frozenset(out)


def what_differs(a: str, b: str) -> list[str]:
    """The things that matter and differ between ``a`` and ``b`` (empty: the same statement)."""
    sa, sb = salient(a), salient(b)
    out = sorted((sa.tokens - sb.words) | (sb.tokens - sa.words))
    if sa.negated != sb.negated:
        out.append("negation")
    return out


@dataclass(frozen=True)
class Decision:
    # "added" | "duplicate" | "superseded", or "unclear": very similar but neither rule decides
    # (the caller asks a ``FactJudge`` if it has one, and adds the fact otherwise).
    action: str
    existing_id: int | None = None
    similarity: float = 0.0
    existing_text: str = ""


def shared_frame(a: str, b: str) -> tuple[int, int]:
    """(leading words in common, words in the shorter text), case-insensitive."""
    wa, wb = _WORD.findall(a.lower()), _WORD.findall(b.lower())
    n = 0
    for x, y in zip(wa, wb, strict=False):
        if x != y:
            break
        n += 1
    return n, min(len(wa), len(wb))


def decide(
    new_text: str,
    new_hash: str,
    new_vector: np.ndarray | None,
    known: list[tuple[int, str, str, np.ndarray | None]],
    *,
    duplicate_cosine: float,
    supersede_cosine: float,
    unclear_cosine: float = 1.0,
) -> Decision:
    """Compare a new fact with the scope's current facts ``(id, text, hash, vector)``.

    Duplicate: the same hash, the same content words with nothing that matters differing, or a
    similarity of at least ``duplicate_cosine`` with nothing that
    matters differing (``what_differs``). Superseded: similar and the same frame (see the module
    docstring), which is also where a near-duplicate with a changed number, time, name or
    negation goes. Unclear: at least ``unclear_cosine`` similar but neither rule applies."""
    words = content_words(new_text)
    for fid, text, h, _ in known:
        if h == new_hash:
            return Decision("duplicate", fid, 1.0, text)
    for fid, text, _, _ in known:  # the same words reordered or with other small words
        if content_words(text) == words and not what_differs(new_text, text):
            return Decision("duplicate", fid, 1.0, text)
    if new_vector is None:
        return Decision("added")
    scored = sorted(
        ((float(np.dot(v, new_vector)), fid, text) for fid, text, _, v in known if v is not None),
        reverse=True,
    )
    for sim, fid, text in scored:
        if sim < duplicate_cosine:
            break
        if not what_differs(new_text, text):
            return Decision("duplicate", fid, sim, text)
    for sim, fid, text in scored:
        if sim < LONG_FRAME_COSINE:
            break
        frame, shorter = shared_frame(new_text, text)
        if frame >= shorter:  # one is a prefix of the other: an extension, not a contradiction
            continue
        if (sim >= supersede_cosine and frame >= 2) or (frame >= 3 and frame * 2 >= shorter):
            return Decision("superseded", fid, sim, text)
    if scored and scored[0][0] >= unclear_cosine:
        return Decision("unclear", scored[0][1], scored[0][0], scored[0][2])
    return Decision("added", None, max(scored[0][0], 0.0) if scored else 0.0)


class FactJudge(ABC):
    """Decides the pairs ``decide`` cannot: is the new fact the known one said again, a
    correction of it, or another fact? The agents package plugs in a model (one cheap call for
    a whole batch); without one, unclear facts are added, so nothing is lost."""

    @abstractmethod
    async def judge(self, pairs: list[tuple[str, str]]) -> list[str | None]:
        """For each ``(known, new)``: "duplicate", "superseded", "added", or None (no verdict)."""
