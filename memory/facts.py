"""Memory cards ("facts"): the extractor interface and the dedupe/supersede decision.

A new fact is compared with the scope's current facts: the same content hash, or a cosine
similarity of at least ``fact_duplicate_cosine``, makes it a duplicate (the known card is
refreshed, never copied); a similarity of at least ``fact_supersede_cosine`` makes it a newer
version of the same statement ("lives in Berlin" -> "lives in Paris"), which replaces the old card
while the old one stays as history (``superseded_by``). Anything else is added. Nothing is
dropped: every call ends in exactly one of the three outcomes and says which.
"""

from __future__ import annotations

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

    _CUES = ("remember that ", "i am ", "i'm ", "my ", "i live", "i work", "i like", "i love", "i hate", "i have ")

    async def extract(self, turns: list[Message]) -> list[str]:
        out: list[str] = []
        for turn in turns:
            if turn.role != "user":
                continue
            for sentence in _sentences(turn.text):
                low = sentence.lower()
                if any(low.startswith(c) for c in self._CUES) and 3 <= len(sentence.split()) <= 40:
                    fact = sentence[len("remember that ") :] if low.startswith("remember that ") else sentence
                    out.append(fact[0].upper() + fact[1:])
        return list(dict.fromkeys(out))


def _sentences(text: str) -> list[str]:
    import re

    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


@dataclass(frozen=True)
class Decision:
    action: str  # "added" | "duplicate" | "superseded"
    existing_id: int | None = None
    similarity: float = 0.0


def decide(
    new_hash: str,
    new_vector: np.ndarray | None,
    known: list[tuple[int, str, np.ndarray | None]],
    *,
    duplicate_cosine: float,
    supersede_cosine: float,
) -> Decision:
    """Compare a new fact with the scope's current facts ``(id, hash, vector)``."""
    for fid, h, _ in known:
        if h == new_hash:
            return Decision("duplicate", fid, 1.0)
    if new_vector is None:
        return Decision("added")
    best_id, best = None, -1.0
    for fid, _, vector in known:
        if vector is None:
            continue
        sim = float(np.dot(vector, new_vector))
        if sim > best:
            best_id, best = fid, sim
    if best_id is not None and best >= duplicate_cosine:
        return Decision("duplicate", best_id, best)
    if best_id is not None and best >= supersede_cosine:
        return Decision("superseded", best_id, best)
    return Decision("added", None, max(best, 0.0))
