"""Calls and tokens per answer in single, three-pass and review modes, against the stub server.

SIMULATED: no real model is called. The model, its replies, its token counts and its prompt
cache are all simulated by the project's own stub (``tests/stubs/anthropic_stub.py``); the figures
show how Familiar lays out its prompts for a cache that behaves as the stub models Anthropic's,
not what Anthropic's API would bill.

Runs the real chat agent, memory and review engine with the real Anthropic provider (real SDK,
HTTP on 127.0.0.1) over a fixed set of 20 prompts in one chat: a persona with standing
instructions, 16 pinned facts, notes that recall brings back, four earlier turns, and every answer
stored and shown to the next as history (fact extraction off, so only answers are counted). The stub simulates prompt caching (block
boundaries, breakpoints, 1024-token minimum, the output schema part of the cache key; tokens =
characters / 4) and scripted replies: drafts of ~200 words, and critiques/reviews that are clean
for half of the prompts and ask for changes (once) for the other half. Each mode runs against a
fresh stub, prompts in order as in one chat, under two cache conditions:

- per answer: every answer starts with an expired cache (messages more than 5 minutes apart), so
  an answer only reads what its own earlier calls wrote. This isolates what the extra passes cost.
- warm chat: one chat in quick succession, so every answer also reads the persona and pinned facts
  that the previous answer cached.

"three_pass" is the default (on Anthropic the self-critique's schema goes in the prompt);
"3p_enforced" sends it as ``output_config.format`` (``critique_schema = "enforced"``), which the
cache is keyed on. "Effective input" prices cached tokens relative to ordinary input: reads at
0.1, writes at 1.25 (Anthropic's ratios); "w@1" prices writes at 1.0 instead. Target: three-pass
effective input <= 2.2 x single.

    .venv/bin/python bench/agents_cost.py [--prompts 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.chat import ChatAgent  # noqa: E402
from agents.llm import LLM  # noqa: E402
from agents.providers.anthropic import AnthropicProvider  # noqa: E402
from agents.providers.base import Usage  # noqa: E402
from agents.review import JSON_INSTRUCTIONS, ReviewEngine  # noqa: E402
from agents.schema import migrations as agent_migrations  # noqa: E402
from agents.settings import LLMSettings, ReviewSettings  # noqa: E402
from memory.db import Database  # noqa: E402
from memory.embedder import HashingEmbedder  # noqa: E402
from memory.schema import migrations as memory_migrations  # noqa: E402
from memory.service import Memory  # noqa: E402
from memory.settings import MemorySettings  # noqa: E402
from memory.types import Scope  # noqa: E402
from tests.stubs.anthropic_stub import LLMStub, Reply  # noqa: E402

SIMULATED = (
    "SIMULATED: the model, its token counts and its prompt cache are the project's stub "
    "(tests/stubs/anthropic_stub.py), not a real model or Anthropic's cache."
)
TOPICS = [
    "how to descale a kettle",
    "a packing list for a weekend hike",
    "the difference between TCP and UDP",
    "a birthday message for my sister",
    "how compound interest works",
    "tips to sleep better",
    "a vegetarian dinner for four",
    "how to ask for a raise",
    "what a Roth IRA is",
    "how to fix a dripping tap",
    "a short poem about autumn",
    "how vaccines train the immune system",
    "planning a three-day trip to Porto",
    "how to start running at 40",
    "explaining recursion to a child",
    "a polite complaint to my landlord",
    "how to choose a laptop for programming",
    "why the sky is blue",
    "how to keep basil alive indoors",
    "a 20-minute home workout",
]
PERSONA = (
    "You are Familiar, a helpful personal assistant living in Telegram. Answer concisely, "
    "in the user's language, with concrete steps where they help. "
    + " ".join(
        f"Standing instruction {i}: {rule}."
        for i, rule in enumerate(
            [
                "never invent appointments",
                "say when you are unsure",
                "prefer metric units",
                "use the user's name sparingly",
                "keep lists short",
                "ask before booking anything",
                "no medical dosage without a caveat",
                "summarise long texts first",
            ]
            * 3
        )
    )
)
FACTS = [
    f"The user {t}."
    for t in [
        "lives in Lisbon",
        "is vegetarian",
        "has a sister called Ana",
        "works as a nurse on night shifts",
        "prefers metric units",
        "is learning Portuguese",
        "has a cat called Miso",
        "runs twice a week",
        "dislikes long answers",
        "uses Linux",
        "has a budget for a laptop of 1200 euros",
        "is allergic to penicillin",
        "speaks English and German",
        "has a balcony garden",
        "wakes at 14:00 on work days",
        "saves for a flat",
    ]
]
NOTES = [
    f"An earlier remark about {topic}: the user asked about it once before."
    for topic in TOPICS[:12]
]
HISTORY = [
    {"role": "user", "content": "Good morning! Anything on my calendar today?"},
    {
        "role": "assistant",
        "content": "Good morning. Nothing scheduled today; your dentist visit is on Friday at 10.",
    },
    {"role": "user", "content": "Thanks. Remind me what I said about the laptop budget?"},
    {
        "role": "assistant",
        "content": "You said you can spend up to 1200 euros and want something light for Linux.",
    },
]


def draft_text(seed: int, words: int = 200) -> str:
    vocab = (
        "the a step then check water heat mix slowly next your it keep small add time "
        "until clean dry warm cool use try plan day week note"
    ).split()
    return " ".join(vocab[(seed * 7 + i * 3) % len(vocab)] for i in range(words)) + "."


def review_json(clean: bool) -> dict[str, Any]:
    if clean:
        return {"score": 9, "verdict": "approve", "issues": [], "summary": "Accurate and concise."}
    return {
        "score": 5,
        "verdict": "revise",
        "issues": [
            {"severity": "major", "text": "Step 2 is wrong: it should come after step 3."},
            {"severity": "minor", "text": "Too long for this user."},
        ],
        "summary": "Fix the order of steps; shorten.",
    }


class Script:
    """Replies by request: drafts and revisions are text; reviews are clean for even prompts,
    and for odd prompts ask for changes the first time and approve after a revision."""

    def __init__(self, first_round_reviews: int) -> None:
        self.first_round_reviews = first_round_reviews
        self.prompt = 0
        self.reviews_seen = 0

    def next_prompt(self, i: int) -> None:
        self.prompt, self.reviews_seen = i, 0

    def __call__(self, path: str, body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]["content"]
        last = last if isinstance(last, str) else " ".join(b.get("text", "") for b in last)
        wants_json = "format" in (body.get("output_config") or {}) or JSON_INSTRUCTIONS in last
        if not wants_json:
            return Reply(draft_text(self.prompt + len(body["messages"])))
        self.reviews_seen += 1
        later_round = self.reviews_seen > self.first_round_reviews
        return Reply(json=review_json(self.prompt % 2 == 0 or later_round))


MODES = ("single", "three_pass", "3p_enforced", "panel")


def effective(u: Usage, write: float = 1.25) -> float:
    return u.input_tokens + 0.1 * u.cache_read_tokens + write * u.cache_write_tokens


async def run_mode(mode: str, prompts: int, cold: bool) -> dict[str, Any]:
    """One chat through the real chat agent and memory (SQLite, FAISS, the hashing embedder) in a
    temporary directory: the persona and pinned facts, notes to recall, four earlier turns, then
    the prompts in order, each answer stored and shown to the next as history."""
    stub = LLMStub().start()
    script = Script(first_round_reviews=len(ReviewSettings().reviewers) if mode == "panel" else 1)
    stub.responder = script
    settings = LLMSettings(
        critique_schema="enforced" if mode == "3p_enforced" else "auto",
        persona=PERSONA,
        fact_extraction_every=0,
    )
    provider = AnthropicProvider(
        "claude-sonnet-4-6", api_key="bench", base_url=stub.url, max_retries=0
    )
    llm = LLM(provider)
    tmp = tempfile.TemporaryDirectory()
    db = Database.open(Path(tmp.name) / "familiar.db", [memory_migrations, agent_migrations])
    memory = Memory(db, HashingEmbedder(), MemorySettings(), Path(tmp.name) / "index")
    agent = ChatAgent(
        memory, llm, settings, ReviewEngine(llm, ReviewSettings(max_rounds=3), settings, db), db=db
    )
    agent_mode = {
        "single": "single",
        "three_pass": "think",
        "3p_enforced": "think",
        "panel": "review",
    }[mode]
    total, calls, outcomes = Usage(), 0, []
    try:
        await memory.start()
        await memory.wait_ready()
        scope = Scope(1, 1)
        for fact in FACTS:
            await memory.add_fact(fact, scope, pinned=True)
        for note in NOTES:
            await memory.add_memory(note, scope, "note")
        for turn in HISTORY:
            await memory.add_message(
                1, 1 if turn["role"] == "user" else None, turn["role"], turn["content"]
            )
        for i in range(prompts):
            script.next_prompt(i)
            if cold:  # every answer starts with an expired cache (messages > 5 minutes apart)
                stub.cache.clear()
            answer = await agent.answer(
                1, 1, f"Can you help me with {TOPICS[i % len(TOPICS)]}?", mode=agent_mode
            )
            if answer.error:
                raise RuntimeError(f"answer {i} failed: {answer.error}: {answer.text}")
            total, calls = total + answer.usage, calls + answer.calls
            outcomes.append(
                answer.review.outcome + (f"@{len(answer.review.rounds)}" if mode == "panel" else "")
                if answer.review
                else "single"
            )
    finally:
        await memory.stop()
        db.close()
        tmp.cleanup()
        await provider.aclose()
        stub.stop()
    n = prompts
    return {
        "mode": mode,
        "prompts": n,
        "calls_per_answer": calls / n,
        "input_per_answer": total.total_input / n,
        "uncached_input_per_answer": total.input_tokens / n,
        "cache_read_per_answer": total.cache_read_tokens / n,
        "cache_write_per_answer": total.cache_write_tokens / n,
        "output_per_answer": total.output_tokens / n,
        "effective_input_per_answer": effective(total) / n,
        "effective_w1_per_answer": effective(total, 1.0) / n,
        "cached_prefix_share": total.cache_read_tokens / max(1, total.total_input),
        "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
    }


def lower_bound(single: dict[str, Any], three: dict[str, Any]) -> float:
    """The least effective input any three-pass can cost, from the measured single answer: the draft
    call costs what a single answer does; the critique reads that prompt at 0.1 and pays 1.0 for the
    draft it has never been sent; the refine call (in the measured share of answers) reads all of
    that at 0.1 and pays 1.0 for the critique. No instructions, no cache-write premiums."""
    prompt, draft = single["input_per_answer"], single["output_per_answer"]
    refined = three["outcomes"].get("refined", 0) / three["prompts"]
    critique = max(
        0.0, three["output_per_answer"] - draft * (1 + refined)
    )  # output of one critique
    return (
        single["effective_input_per_answer"]
        + 0.1 * prompt
        + draft
        + refined * (0.1 * (prompt + draft) + critique)
    )


async def main_async(prompts: int) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for condition, cold in (("per_answer", True), ("warm_chat", False)):
        rows = [await run_mode(m, prompts, cold) for m in MODES]
        single = rows[0]
        for r in rows:
            r["effective_input_vs_single"] = (
                r["effective_input_per_answer"] / single["effective_input_per_answer"]
            )
            r["effective_w1_vs_single"] = (
                r["effective_w1_per_answer"] / single["effective_w1_per_answer"]
            )
            r["raw_input_vs_single"] = r["input_per_answer"] / single["input_per_answer"]
        out[condition] = rows
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(main_async(args.prompts))
    if args.json:
        print(json.dumps({"simulated": SIMULATED, **results}, indent=2))
        return 0
    print(SIMULATED)
    for condition, rows in results.items():
        print(
            f"\n{condition} ({'each answer starts with an expired cache' if condition == 'per_answer' else 'one chat, cache kept warm'})"
        )
        print(
            f"{'mode':<12}{'calls':>6}{'input':>7}{'uncached':>9}{'c.read':>8}{'c.write':>8}"
            f"{'output':>7}{'effective':>10}{'x single':>9}{'w@1 x':>7}{'raw x':>7}{'cached%':>8}  outcomes"
        )
        for r in rows:
            print(
                f"{r['mode']:<12}{r['calls_per_answer']:>6.2f}{r['input_per_answer']:>7.0f}"
                f"{r['uncached_input_per_answer']:>9.0f}{r['cache_read_per_answer']:>8.0f}"
                f"{r['cache_write_per_answer']:>8.0f}{r['output_per_answer']:>7.0f}"
                f"{r['effective_input_per_answer']:>10.0f}{r['effective_input_vs_single']:>9.2f}"
                f"{r['effective_w1_vs_single']:>7.2f}{r['raw_input_vs_single']:>7.2f}"
                f"{100 * r['cached_prefix_share']:>7.1f}%  {r['outcomes']}"
            )
        ratio = rows[1]["effective_input_vs_single"]
        print(
            f"target three-pass <= 2.2 x single (effective input), {condition}: "
            f"{ratio:.2f} {'met' if ratio <= 2.2 else 'NOT met'}"
        )
        floor = lower_bound(rows[0], rows[1])
        print(
            f"lower bound for any draft-critique-refine over the same context: {floor:.0f} "
            f"effective = {floor / rows[0]['effective_input_per_answer']:.2f} x single"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
