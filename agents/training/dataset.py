"""Training data for an archetype: generated in validated batches, deduplicated, inspected, split.

The model writes examples against ``EXAMPLES_SCHEMA``; a batch that does not parse or validate is
asked for again (up to ``max_attempts``). Opted-in 👍 answers come from a callable the
composition root supplies. Duplicates go by hash of the normalised text and, when an embedding
function is given, by cosine similarity. Inspection applies rules (length, language, banned
words, anything that looks like a secret or personal data) and reports every rejection's reason.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.providers.base import LLMRequest, extract_json
from agents.training.data import Message, validate_messages
from agents.training.errors import DatasetError

Conversation = list[Message]
EmbedFn = Callable[[list[str]], Any]  # texts → array [n, d] of unit vectors

EXAMPLES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "examples": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"user": {"type": "string"}, "assistant": {"type": "string"}},
                "required": ["user", "assistant"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["examples"],
    "additionalProperties": False,
}

DATA_SYSTEM = (
    "You write training examples for a persona (an archetype) of a chat assistant. Each example is "
    "one user message and the persona's answer, in the persona's voice, following its do's and "
    "don'ts. Vary topics and lengths; no real people's personal data, no secrets. Answer with JSON "
    'only: {"examples": [{"user": "...", "assistant": "..."}, ...]}.'
)

CRITIQUE_NOTE = (
    "Reviewers rejected an earlier set of examples for this persona. Their critique, which the "
    "new examples must answer:"
)

SECRET_PATTERNS = {
    "an API key": re.compile(
        r"\b(sk-[A-Za-z0-9_-]{20,}|sk-ant-[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{30,}|xox[abpr]-[A-Za-z0-9-]{10,})"
    ),
    "an AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a Telegram bot token": re.compile(r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b"),
    "an e-mail address": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "a phone number": re.compile(r"(?<!\w)\+?\d[\d ().-]{8,}\d(?!\w)"),
    "a card number": re.compile(r"\b(?:\d[ -]?){13,16}\b"),
}


def parse_batch(text: str) -> list[Conversation]:
    """Conversations from one generation reply; ValueError says what is wrong."""
    data = extract_json(text)
    items = data.get("examples") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ValueError('expected {"examples": [...]} with at least one example')
    out = []
    for i, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or not str(item.get("user", "")).strip()
            or not str(item.get("assistant", "")).strip()
        ):
            raise ValueError(f"example {i} needs non-empty 'user' and 'assistant' strings")
        out.append(
            [
                {"role": "user", "content": str(item["user"]).strip()},
                {"role": "assistant", "content": str(item["assistant"]).strip()},
            ]
        )
    return out


async def generate(
    llm: Any,
    ctx: Any,
    spec: dict[str, Any],
    target: int,
    per_call: int,
    max_attempts: int = 3,
    max_tokens: int = 8000,
    critique: str = "",
) -> list[Conversation]:
    """Ask for batches of ``per_call`` examples until ``target``; malformed batches are retried.
    ``critique``: what the review panel found wrong with an earlier set, for the model to avoid."""
    got: list[Conversation] = []
    calls = 0
    spec_text = json.dumps(spec, ensure_ascii=False, sort_keys=True)
    while len(got) < target:
        want = min(per_call, target - len(got))
        prompt = f"Write {want} new examples (batch {calls + 1}; avoid repeating earlier ones)."
        # The spec goes in the system prompt, identical in every batch: cached after the first.
        request = LLMRequest(
            messages=[{"role": "user", "content": prompt}],
            system_prefix=f"{DATA_SYSTEM}\n\nThe archetype spec:\n{spec_text}"
            + (f"\n\n{CRITIQUE_NOTE}\n{critique}" if critique else ""),
            max_tokens=max_tokens,
            json_schema=EXAMPLES_SCHEMA,
        )
        for attempt in range(1, max_attempts + 1):
            completion = await llm.complete(request, ctx.for_("train:data"))
            try:
                batch = parse_batch(completion.text)
                break
            except ValueError as exc:
                if attempt == max_attempts:
                    raise DatasetError(
                        f"the model gave malformed examples {max_attempts} times in a row ({exc})",
                        "retry the pipeline, or use a stronger model for data generation",
                    ) from None
                request = request.with_(
                    messages=[
                        *request.messages,
                        {"role": "assistant", "content": completion.text},
                        {
                            "role": "user",
                            "content": f"That was not valid: {exc}. Answer with the JSON only.",
                        },
                    ]
                )
        got += batch
        calls += 1
        if calls > 4 * max(target // max(per_call, 1), 1) + 4:
            break  # the model keeps returning fewer than asked: stop with what there is
    return got


def normalised(conversation: Conversation) -> str:
    return "\n".join(f"{m['role']}:{' '.join(m['content'].lower().split())}" for m in conversation)


def dedupe(
    conversations: Sequence[Conversation], embed: EmbedFn | None = None, threshold: float = 0.95
) -> list[Conversation]:
    """Drop exact duplicates (hash of normalised text) and, with ``embed``, near-duplicates."""
    seen: set[str] = set()
    unique = []
    for c in conversations:
        digest = hashlib.sha256(normalised(c).encode()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(c)
    if embed is None or len(unique) < 2:
        return unique
    vectors = embed([normalised(c) for c in unique])
    kept: list[int] = []
    for i in range(len(unique)):
        if all(float(vectors[i] @ vectors[j]) < threshold for j in kept):
            kept.append(i)
    return [unique[i] for i in kept]


def split(
    conversations: Sequence[Conversation], heldout_fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(len(order) * heldout_fraction)) if len(order) > 1 else 0
    held = [conversations[i] for i in order[:n_held]]
    train = [conversations[i] for i in order[n_held:]]
    return train, held


@dataclass
class InspectionLimits:
    max_chars: int = 4000
    min_chars: int = 2
    banned: tuple[str, ...] = ()
    ascii_letters_min: float | None = None  # e.g. 0.8 for an English persona


@dataclass
class Inspection:
    kept: list[Conversation] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {r}" for r, n in self.rejected.most_common())
        return f"{len(self.kept)} kept" + (f"; rejected: {reasons}" if reasons else "")


def problems(conversation: Conversation, limits: InspectionLimits) -> list[str]:
    """Why this example must not be trained on (empty: it may)."""
    try:
        validate_messages(conversation, "example")
    except DatasetError:
        return ["malformed"]
    reasons = []
    for m in conversation:
        text = m["content"]
        if not limits.min_chars <= len(text) <= limits.max_chars:
            reasons.append("too long or too short")
        lowered = text.lower()
        if any(b.lower() in lowered for b in limits.banned):
            reasons.append("banned content")
        for what, pattern in SECRET_PATTERNS.items():
            if pattern.search(text):
                reasons.append(f"looks like {what}")
        letters = [ch for ch in text if ch.isalpha()]
        if limits.ascii_letters_min is not None and letters:
            if sum(ch.isascii() for ch in letters) / len(letters) < limits.ascii_letters_min:
                reasons.append("wrong language")
    return sorted(set(reasons))


def inspect(conversations: Sequence[Conversation], limits: InspectionLimits) -> Inspection:
    result = Inspection()
    for c in conversations:
        found = problems(c, limits)
        if found:
            result.rejected.update(found)
        else:
            result.kept.append(list(c))
    return result
