"""Chat-format JSONL to token ids, loss masks on assistant turns, and padding-free packed batches.

A line is ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``.
Conversations are rendered with the tokenizer's chat template when it has one (else a plain
``<|role|>`` format) and the loss covers only the assistant turns: their character spans are found
by rendering the conversation prefix by prefix, and mapped to tokens with the fast tokenizer's
offsets. A micro-batch is one row: examples concatenated, ``position_ids`` restarting at 0 for each,
no attention mask. transformers turns such position ids into a block-diagonal causal mask (its
``find_packed_sequence_indices``), so no token attends across examples and no compute goes to
padding. Targets are shifted here, per example, so no token is trained to predict the next example.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.training.errors import DatasetError

# torch is imported where tensors are made: the daemon imports this module at start (the
# pipeline validates data) and its readiness must not wait for torch.
if TYPE_CHECKING:
    import torch

IGNORE = -100
ROLES = ("system", "user", "assistant")
Message = dict[str, str]


@dataclass(frozen=True)
class Encoded:
    """One conversation: its token ids and, per position, the id it must predict (or IGNORE)."""

    input_ids: list[int]
    targets: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for t in self.targets if t != IGNORE)


def validate_messages(messages: Any, where: str) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise DatasetError(
            f"{where}: 'messages' must be a non-empty list", "see `familiar train fit --help`"
        )
    out: list[Message] = []
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise DatasetError(
                f"{where}: message {i} must be {{'role': system|user|assistant, 'content': text}}",
                "fix that line of the data file",
            )
        out.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" for m in out):
        raise DatasetError(
            f"{where}: no assistant message to learn from", "add the assistant's answer"
        )
    return out


def load_chat_jsonl(path: Path) -> list[list[Message]]:
    """Read and validate a chat JSONL file; any bad line fails the whole file with its number."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"cannot read the data file {path}: {exc}", "check the path and that it is UTF-8"
        ) from None
    conversations = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path}:{number}: not JSON ({exc.msg})", "one JSON object per line"
            ) from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}: not a JSON object", "one JSON object per line")
        conversations.append(validate_messages(row.get("messages"), f"{path}:{number}"))
    if not conversations:
        raise DatasetError(f"the data file {path} holds no conversations", "add at least one line")
    return conversations


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def render(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    """The text the model sees: the tokenizer's chat template, else a plain role-tagged format."""
    if getattr(tokenizer, "chat_template", None):
        return str(
            tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
            )
        )
    eos = tokenizer.eos_token or ""
    bos = tokenizer.bos_token or ""
    parts = [bos]
    for m in messages:
        end = eos if m["role"] == "assistant" else ""
        parts.append(f"<|{m['role']}|>\n{m['content']}{end}\n")
    if add_generation_prompt:
        parts.append("<|assistant|>\n")
    return "".join(parts)


def assistant_spans(
    tokenizer: Any, messages: Sequence[Message]
) -> tuple[str, list[tuple[int, int]]]:
    """The full text and the character spans of each assistant turn (content and end marker)."""
    full = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start_text = render(tokenizer, messages[:i], add_generation_prompt=True)
        end_text = render(tokenizer, messages[: i + 1])
        if full.startswith(start_text) and full.startswith(end_text):
            end = len(end_text)
            while (
                end > len(start_text) and full[end - 1].isspace()
            ):  # not the newline after the turn
                end -= 1
            spans.append((len(start_text), end))
        else:  # a template that is not prefix-stable: fall back to the content itself
            at = full.find(m["content"], spans[-1][1] if spans else 0)
            if at >= 0:
                spans.append((at, at + len(m["content"])))
    return full, spans


def encode(tokenizer: Any, messages: Sequence[Message], max_seq_len: int) -> Encoded:
    full, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])[:max_seq_len]
    offsets = list(enc["offset_mapping"])[: len(ids)]
    trained = [any(a <= s < b for a, b in spans) for s, _ in offsets]
    # position t predicts token t+1; it is trained when token t+1 belongs to an assistant turn
    targets = [ids[t + 1] if trained[t + 1] else IGNORE for t in range(len(ids) - 1)] + [IGNORE]
    return Encoded(ids, targets)


def encode_all(
    tokenizer: Any, conversations: Sequence[Sequence[Message]], max_seq_len: int
) -> list[Encoded]:
    """Encode every conversation; those left with nothing to train on (cut too short) are dropped."""
    encoded = [encode(tokenizer, c, max_seq_len) for c in conversations]
    kept = [e for e in encoded if e.trained_tokens > 0]
    if not kept:
        raise DatasetError(
            "no conversation has an assistant token left to train on",
            "raise max_seq_len or shorten the system and user turns",
        )
    return kept


@dataclass
class Packed:
    input_ids: torch.Tensor  # [rows, T]
    position_ids: torch.Tensor  # [rows, T]
    targets: torch.Tensor  # [rows, T]
    real_tokens: int  # tokens of examples (not the filler at row ends)

    @property
    def tokens(self) -> int:
        return self.real_tokens

    def to(self, device: torch.device | str) -> Packed:
        return Packed(
            self.input_ids.to(device),
            self.position_ids.to(device),
            self.targets.to(device),
            self.real_tokens,
        )


def pack(examples: Sequence[Encoded], row_len: int | None = None, pad_id: int = 0) -> Packed:
    """Concatenate examples into rows, ``position_ids`` restarting at 0 for each example.

    Without ``row_len`` everything goes in one row. With it, examples are placed first-fit by
    decreasing length into rows of at most ``row_len`` tokens (an example longer than that gets
    a row of its own), and the end of each row is filled with a filler segment that has its own
    positions and no targets: attention then costs rows × row_len² rather than (all tokens)²
    when the attention kernel cannot skip masked blocks.
    """
    if row_len is None:
        order: list[list[Encoded]] = [list(examples)]
    else:
        order = []
        room: list[int] = []
        for e in sorted(examples, key=lambda x: -len(x.input_ids)):
            n = len(e.input_ids)
            at = next((i for i, left in enumerate(room) if left >= n), None)
            if at is None:
                order.append([e])
                room.append(row_len - n)
            else:
                order[at].append(e)
                room[at] -= n
    width = max(sum(len(e.input_ids) for e in row) for row in order)
    ids_rows, pos_rows, tgt_rows = [], [], []
    for row in order:
        ids: list[int] = []
        pos: list[int] = []
        tgt: list[int] = []
        for e in row:
            ids += e.input_ids
            pos += range(len(e.input_ids))
            tgt += e.targets
        fill = width - len(ids)
        ids += [pad_id] * fill
        pos += range(fill)
        tgt += [IGNORE] * fill
        ids_rows.append(ids)
        pos_rows.append(pos)
        tgt_rows.append(tgt)
    import torch

    as_tensor = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    real = sum(len(e.input_ids) for e in examples)
    return Packed(as_tensor(ids_rows), as_tensor(pos_rows), as_tensor(tgt_rows), real)


def step_indices(n: int, batch: int, seed: int, step: int) -> list[int]:
    """Which examples optimizer step ``step`` uses: a pure function of (n, batch, seed, step).

    Each epoch is a seeded permutation; a resumed run therefore sees exactly the batches an
    uninterrupted one would, whatever the process's RNG state.
    """
    out = []
    for k in range(step * batch, (step + 1) * batch):
        epoch, at = divmod(k, n)
        out.append(_permutation(n, seed, epoch)[at])
    return out


@lru_cache(maxsize=8)
def _permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(int(i) for i in torch.randperm(n, generator=gen))


def split(indices: Sequence[int], micro_batch: int) -> list[list[int]]:
    return [list(indices[i : i + micro_batch]) for i in range(0, len(indices), micro_batch)]
