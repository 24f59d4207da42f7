"""Memory cards ("facts"): the extractor interface and the dedupe/supersede decision.

A new fact is compared with the scope's current facts: the same content hash, or a cosine
similarity of at least ``fact_duplicate_cosine``, makes it a duplicate (the known card is
refreshed, never copied); a similarity of at least ``fact_supersede_cosine`` makes it a newer
version of the same statement, which replaces the old card while the old one stays as history
(``superseded_by``). Similarity alone cannot tell "my wife is Anna" from "my sister is Anna"
(cosine 0.88 with MiniLM), so a supersede also needs the same frame: both facts start with the
same words ("my favourite colour is ..." -> blue/green; "I live in ..." -> Berlin/Paris, where a
long shared frame lowers the similarity needed to 0.5). Anything else is added. Nothing is
dropped: every call ends in exactly one of the three outcomes and says which.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from memory.types import Message


class FactExtractor(ABC):
    """Turns conversation turns into short standalone facts (the agents package plugs in an LLM)."""

    @abstractmethod
    async def extract(self, turns: list[Message]) -> list[str]:
        """Facts stated in ``turns``, each a short sentence that makes sense on its own."""


class PatternFactExtractor(FactExtractor):
    """The no-LLM extractor: user sentences that state something about the user ("I am...",
    "my ... is ...", "remember that ..."). Conservative by design; an LLM extractor does better."""

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
            if turn.role != "user":
                continue
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


@dataclass(frozen=True)
class Decision:
    action: str  # "added" | "duplicate" | "superseded"
    existing_id: int | None = None
    similarity: float = 0.0


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
) -> Decision:
    """Compare a new fact with the scope's current facts ``(id, text, hash, vector)``."""
    for fid, _, h, _ in known:
        if h == new_hash:
            return Decision("duplicate", fid, 1.0)
    if new_vector is None:
        return Decision("added")
    scored = sorted(
        ((float(np.dot(v, new_vector)), fid, text) for fid, text, _, v in known if v is not None),
        reverse=True,
    )
    if scored and scored[0][0] >= duplicate_cosine:
        return Decision("duplicate", scored[0][1], scored[0][0])
    for sim, fid, text in scored:
        if sim < LONG_FRAME_COSINE:
            break
        frame, shorter = shared_frame(new_text, text)
        if frame >= shorter:  # one is a prefix of the other: an extension, not a contradiction
            continue
        if (sim >= supersede_cosine and frame >= 2) or (frame >= 3 and frame * 2 >= shorter):
            return Decision("superseded", fid, sim)
    return Decision("added", None, max(scored[0][0], 0.0) if scored else 0.0)
