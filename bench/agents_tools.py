"""What tools cost: tokens per answer with and without tool definitions, and the loop's overhead.

Part 1 runs the real chat agent, memory (SQLite, FAISS, the hashing embedder) and the real
Anthropic provider (real SDK, HTTP on 127.0.0.1) against the stub, which simulates prompt caching
(tools before the system prompt in the cache prefix, block boundaries, breakpoints, the 1024-token
minimum; tokens = characters / 4) and Anthropic's tool search (deferred definitions are not in
the prompt; a search within the answer expands the definitions it finds inline, billed there, and
costs a second sampling pass over the prompt: tests/stubs/tool_search.py), over a fixed script of
20 messages that need tools ("remind me tomorrow at 9 to call mum", "what did I say about the
lease?"), in one warm chat (the persona, pinned facts and earlier turns of the agents_cost bench,
plus twelve more turns so that the prompt is past the cache's 1024-token minimum without tools
too; every answer stored and shown to the next as history); no_tools, all_loaded and
tools_defined again in longer chats (40 and 100 more turns). Each run against a fresh stub, all
in one process, side by side:

- no_tools: no tool definitions; the model answers directly (one call);
- all_loaded: every built-in tool defined in full in every prompt (``tools.tool_search`` off, as
  before 2026-12-01, and as the OpenAI-compatible and local providers still send them),
  registered as the daemon registers them (memory, clock, web, reminders, tasks, to-dos: 13); the
  model answers directly;
- tools_defined: the product's default: the four ``tools.always_loaded`` tools in every prompt,
  the other nine deferred behind the tool search tool; the model answers directly. The
  difference to no_tools is what the definitions themselves cost (the target);
- tools_used: as tools_defined, but the model calls the tool the message needs, then answers (two
  calls); where that tool is deferred it first searches for it within the same response (the
  search step: a second sampling pass over the prompt, plus the definitions found, expanded in
  the conversation and read again by the answer's second call). The always-loaded core is the
  four tools 16 of the 20 messages need; 4 need a search (list_reminders twice,
  create_recurring_reminder, schedule_task);
- tools_used_all_loaded: tools_used with every definition loaded, no search: what deferral
  changes for an answer that uses tools.

tools_used costs more than tools_defined mostly through the second call, which reads the cached
prompt again, through the searches, and through the three ``remember`` calls: a new fact changes
the system prefix, so the next answer writes the whole prompt to the cache again (the right price
for a fact that should be there).

"Effective input" prices cache reads at 0.1 and writes at 1.25 of ordinary input; "steady" is the
mean over answers 2-20, once the definitions are cached (the first answer writes them). Target:
the tool definitions add at most 10 % of effective input once cached (tools_defined vs no_tools).

Where the cost comes from: the definitions in the prompt sit in the cached prefix (tools before
the system prompt, sorted by name, the search tool last, the system prefix's breakpoint after
them), so a warm answer reads them from the cache, at 0.1 x their tokens per call. Against a small
warm chat, whose own effective input is mostly cheap reads too, that weighs more than against a
long one, hence the longer chats. With all 13 loaded they added 21.8 % in the small chat, over
twice the target; shorter descriptions and schemas cut the definitions from 1,112 to 722 tokens,
and even empty descriptions would have left 7.7 %, so the product now sends fewer definitions
instead (``agents.tools.registry``, ``agents.providers.anthropic``). Not modelled by default: the
tool-use system prompt Anthropic adds to every request with tools (346 tokens with automatic tool
choice on current models), nor whatever the service expands the search tool to (its own
description and schema, not sent by the client): both are cached with the definitions and add
their size x 0.1 (--tool-prompt-tokens N bills N of them). Counted, the 346 weigh more than the
definitions themselves: on 2026-12-01, +18.1 % once cached in the small chat (all loaded +32.3 %),
+10.4 % and +5.5 % in the longer ones; no split gets the small chat under 10 % then (none
loaded: 11.1 %).

Part 2 measures the loop's own time per tool step, model and tool time excluded: a scripted
in-process provider (no HTTP) asks for one ``current_time`` call and then answers, through
``ToolLoop`` on a real SQLite file; the provider's and the tool's time are measured around them
and subtracted. Median of --steps runs. Target: under 5 ms for built-in tools.

The default split was chosen with --always-loaded: each tool moved into the core costs its
definition's size x 0.1 on every call; each left out costs a search (a second pass over the
prompt, and its definitions found) on the messages that need it. Measured so (2.2k-token chat,
once cached; then searches among the 20 messages, and tools_used's effective input against
tools_used_all_loaded): none loaded 0.6 %, 20, 1.39x; search_memory alone 3.1 %, 14, 1.25x; the
default four 7.7 %, 4, 1.00x; with list_reminders too 8.7 %, 2, 0.93x; all 13 21.8 %, 0, 1x. Most
messages call no tool, so the definitions' share decides; the four keep room under the target
for what the service adds unseen (its tool-use prompt, the search tool's own definition).

    .venv/bin/python bench/agents_tools.py [--steps 300] [--tool-prompt-tokens 0]
        [--always-loaded a,b,c] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.chat import ChatAgent  # noqa: E402
from agents.llm import LLM  # noqa: E402
from agents.loop import ToolLoop  # noqa: E402
from agents.providers.anthropic import AnthropicProvider  # noqa: E402
from agents.providers.base import Completion, LLMRequest, ToolUseBlock, Usage  # noqa: E402
from agents.providers.fake import FakeProvider  # noqa: E402
from agents.schema import migrations as agent_migrations  # noqa: E402
from agents.settings import LLMSettings, ToolLoopSettings  # noqa: E402
from agents.tools import builtin_sources  # noqa: E402
from agents.tools.base import Tool, ToolContext, ToolResult  # noqa: E402
from agents.tools.catalog import build_tool_sources  # noqa: E402
from agents.tools.clock import CurrentTime  # noqa: E402
from agents.tools.registry import StaticSource, ToolRegistry  # noqa: E402
from agents.tools.settings import ToolsSettings  # noqa: E402
from agents.usage import CallContext  # noqa: E402
from bench.agents_cost import FACTS, HISTORY, NOTES, PERSONA, effective  # noqa: E402
from jobs.agent_tasks import AgentTasks  # noqa: E402
from jobs.reminder_tools import reminder_tools  # noqa: E402
from jobs.reminders import Reminders  # noqa: E402
from jobs.scheduler import StandaloneBackend  # noqa: E402
from jobs.schema import migrations as jobs_migrations  # noqa: E402
from jobs.settings import JobsSettings  # noqa: E402
from jobs.task_tools import task_tools  # noqa: E402
from memory.db import Database  # noqa: E402
from memory.embedder import HashingEmbedder  # noqa: E402
from memory.schema import migrations as memory_migrations  # noqa: E402
from memory.service import Memory  # noqa: E402
from memory.settings import MemorySettings  # noqa: E402
from memory.types import Scope  # noqa: E402
from tests.stubs.anthropic_stub import LLMStub, Reply, tokens  # noqa: E402

# (message, the tool it needs, its arguments)
SCRIPT: list[tuple[str, str, dict[str, Any]]] = [
    (
        "Remind me tomorrow at 9 to call mum.",
        "create_reminder",
        {"when": "tomorrow 9:00", "text": "call mum"},
    ),
    ("What did I tell you about the laptop budget?", "search_memory", {"query": "laptop budget"}),
    ("What time is it now?", "current_time", {}),
    ("Which reminders do I have?", "list_reminders", {}),
    (
        "Remember that my dentist is Dr. Silva.",
        "remember",
        {"fact": "The user's dentist is Dr. Silva."},
    ),
    (
        "Every weekday at 8 remind me to stretch.",
        "create_recurring_reminder",
        {"cron": "0 8 * * 1-5", "text": "stretch"},
    ),
    ("Did I mention my sister's name?", "search_memory", {"query": "sister name"}),
    (
        "Remind me in 20 minutes to take the bread out.",
        "create_reminder",
        {"when": "in 20m", "text": "take the bread out"},
    ),
    ("What day of the week is it?", "current_time", {}),
    (
        "Every Monday at 7, tell me which reminders are due this week.",
        "schedule_task",
        {"cron": "0 7 * * 1", "prompt": "which reminders are due this week?"},
    ),
    ("What do you know about my cat?", "search_memory", {"query": "cat"}),
    ("Remember that I moved to Porto.", "remember", {"fact": "The user moved to Porto."}),
    (
        "Remind me on friday at 18:00 to water the balcony.",
        "create_reminder",
        {"when": "friday 18:00", "text": "water the balcony"},
    ),
    (
        "Anything about Portuguese lessons in my notes?",
        "search_memory",
        {"query": "Portuguese lessons"},
    ),
    ("Show me my reminders again.", "list_reminders", {}),
    ("Is it late already?", "current_time", {}),
    ("What did I say about running?", "search_memory", {"query": "running"}),
    (
        "Remind me in 2 hours to call the landlord.",
        "create_reminder",
        {"when": "in 2h", "text": "call the landlord"},
    ),
    (
        "Remember that I prefer tea over coffee.",
        "remember",
        {"fact": "The user prefers tea over coffee."},
    ),
    ("What do you remember about my work shifts?", "search_memory", {"query": "work shifts"}),
]
RUNS = ("no_tools", "all_loaded", "tools_defined", "tools_used", "tools_used_all_loaded")
SEARCHING = ("tools_defined", "tools_used")  # runs with the default split (deferred tools)
LONGER_CHATS = (40, 100)  # earlier turns added to the small chat's twelve


# More earlier turns than agents_cost has, so that the chat's prompt is past the 1024-token
# minimum of the cache without tools too: otherwise the definitions would look cheaper than
# nothing (they alone would lift the prefix over the minimum and make it cacheable).
def more_history(turns: int) -> list[dict[str, str]]:
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": (
                f"Earlier exchange {i}: "
                + ("a question about the week's plans, the shopping and the garden. " * 5)
            ),
        }
        for i in range(turns)
    ]


class Script:
    """The stub's replies: the tool call a message needs (tools_used), found first by a search
    where the tool is deferred, then a short answer."""

    def __init__(self, use_tools: bool) -> None:
        self.use_tools = use_tools
        self.index = 0
        self.searches = 0
        self.searched_at: set[int] = set()  # the messages whose answer searched

    def __call__(self, path: str, body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]["content"]
        after_tool = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        message, tool, args = SCRIPT[self.index]
        if self.use_tools and not after_tool:
            deferred = any(t.get("name") == tool and t.get("defer_loading") for t in body["tools"])
            if deferred:
                self.searches += 1
                self.searched_at.add(self.index)
                return Reply.searched(tool, **args)
            return Reply(tool_calls=[{"name": tool, "input": args}])
        return Reply(f"Done: {message.lower()} " + "Here is the short answer. " * 6)


async def run(
    kind: str,
    extra_turns: int = 12,
    tool_prompt_tokens: int = 0,
    always_loaded: list[str] | None = None,
) -> dict[str, Any]:
    stub = LLMStub(tool_prompt_tokens=tool_prompt_tokens).start()
    script = Script(use_tools=kind.startswith("tools_used"))
    stub.responder = script
    settings = LLMSettings(persona=PERSONA, fact_extraction_every=0)
    provider = AnthropicProvider("claude-sonnet-4-6", api_key="b", base_url=stub.url, max_retries=0)
    llm = LLM(provider)
    tmp = tempfile.TemporaryDirectory()
    root = Path(tmp.name)
    db = Database.open(root / "familiar.db", [memory_migrations, agent_migrations, jobs_migrations])
    memory = Memory(db, HashingEmbedder(), MemorySettings(), root / "index")
    loop = None
    if kind != "no_tools":
        backend = StandaloneBackend(ZoneInfo("UTC"))  # never started: nothing fires
        js = JobsSettings(timezone="UTC")

        async def nothing(*_: Any) -> None:
            return None

        # Every built-in tool, as the daemon registers them (bot/daemon/agent_tools.py and
        # services.py): the families of agents/tools, the jobs package's reminder and task tools,
        # and the catalog's sources (the to-do tools; no MCP server is configured).
        tools_settings = ToolsSettings()
        split = tools_settings.always_loaded if always_loaded is None else always_loaded
        core = split if kind in SEARCHING else None
        registry = ToolRegistry(builtin_sources(memory, tools_settings), always_loaded=core)
        registry.add(reminder_tools(Reminders(db, backend, js, nothing)))
        registry.add(task_tools(AgentTasks(db, backend, js, nothing)))
        for source in build_tool_sources(tools_settings, db):
            registry.add(source)
        loop = ToolLoop(registry, tools_settings, db)
    agent = ChatAgent(memory, llm, settings, db=db, tools=loop)
    total, calls, tool_calls, tool_tokens, tool_count, in_prompt = Usage(), 0, 0, 0, 0, 0
    steady = Usage()  # answers 2..n: the tool definitions already cached
    per_answer: list[float] = []  # effective input of each answer
    try:
        await memory.start()
        await memory.wait_ready()
        scope = Scope(1, 1)
        for fact in FACTS:
            await memory.add_fact(fact, scope, pinned=True)
        for note in NOTES:
            await memory.add_memory(note, scope, "note")
        for turn in [*more_history(extra_turns), *HISTORY]:
            await memory.add_message(
                1, 1 if turn["role"] == "user" else None, turn["role"], turn["content"]
            )
        for i, (message, _, _) in enumerate(SCRIPT):
            script.index = i
            answer = await agent.answer(1, 1, message)
            if answer.error:
                raise RuntimeError(f"answer {i} failed: {answer.error}: {answer.text}")
            total, calls = total + answer.usage, calls + answer.calls
            per_answer.append(effective(answer.usage))
            if i > 0:
                steady = steady + answer.usage
            tool_calls += answer.tool_calls
        if stub.bodies() and "tools" in stub.bodies()[0]:
            # What the stub bills of them in every prompt: deferred definitions are not there.
            shown = [t for t in stub.bodies()[0]["tools"] if not t.get("defer_loading")]
            tool_tokens = sum(
                tokens("tool:" + json.dumps(_plain(t), sort_keys=True)) for t in shown
            )
            tool_count = sum(1 for t in stub.bodies()[0]["tools"] if "input_schema" in t)
            in_prompt = sum(1 for t in shown if "input_schema" in t)
    finally:
        await memory.stop()
        db.close()
        tmp.cleanup()
        await provider.aclose()
        stub.stop()
    n = len(SCRIPT)
    return {
        "run": kind,
        "extra_turns": extra_turns,
        "calls_per_answer": calls / n,
        "tool_calls_per_answer": tool_calls / n,
        "input_per_answer": total.total_input / n,
        "uncached_per_answer": total.input_tokens / n,
        "cache_read_per_answer": total.cache_read_tokens / n,
        "cache_write_per_answer": total.cache_write_tokens / n,
        "effective_input_per_answer": effective(total) / n,
        "steady_effective_per_answer": effective(steady) / (n - 1),
        "tool_definition_tokens": tool_tokens,  # in every prompt, as the stub counts them
        "tools_defined": tool_count,
        "tools_in_prompt": in_prompt,  # not deferred (the search tool not counted)
        "searches": script.searches,  # messages whose tool had to be found first
        "searched_at": sorted(script.searched_at),
        "effective_per_message": per_answer,
    }


def _plain(tool: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tool.items() if k != "cache_control"}


# -- part 2: the loop's own time per step ---------------------------------------------------------
class Timed(FakeProvider):
    """One tool call, then an answer; the time spent in here is the model's, not the loop's."""

    def __init__(self) -> None:
        super().__init__()
        self.spent = 0.0

    async def complete(self, request: LLMRequest) -> Completion:
        started = time.perf_counter()
        asked = any(isinstance(m["content"], list) for m in request.messages)
        result = (
            Completion("It is late.", Usage(10, 5), "fake", "end_turn")
            if asked
            else Completion(
                "", Usage(10, 5), "fake", "tool_use", 0, [ToolUseBlock("c1", "current_time", {})]
            )
        )
        self.spent += time.perf_counter() - started
        return result


class TimedTool(Tool):
    def __init__(self, inner: Tool) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.spent = 0.0

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        started = time.perf_counter()
        try:
            return await self.inner.call(args, ctx)
        finally:
            self.spent += time.perf_counter() - started


async def overhead(steps: int) -> dict[str, float]:
    tmp = tempfile.TemporaryDirectory()
    db = Database.open(Path(tmp.name) / "familiar.db", [agent_migrations])
    tool = TimedTool(CurrentTime())
    registry = ToolRegistry([StaticSource("clock", [tool])])
    loop = ToolLoop(registry, ToolLoopSettings(), db)
    provider = Timed()
    llm = LLM(provider)
    ctx = CallContext(1, 1, "chat")
    samples: list[float] = []
    try:
        for i in range(steps + 20):
            provider.spent = tool.spent = 0.0
            started = time.perf_counter()
            result = await loop.start(
                llm,
                ctx,
                system_prefix="",
                system="",
                messages=[{"role": "user", "content": "what time is it?"}],
                cache_turns=0,
                max_tokens=100,
            )
            wall = time.perf_counter() - started
            assert result.text == "It is late." and result.tool_calls == 1
            if i >= 20:  # warm-up left out
                samples.append((wall - provider.spent - tool.spent) * 1000)
    finally:
        db.close()
        tmp.cleanup()
    samples.sort()
    return {
        "steps": steps,
        "median_ms": statistics.median(samples),
        "p90_ms": samples[int(0.9 * len(samples))],
        "min_ms": samples[0],
    }


async def main_async(
    steps: int, tool_prompt: int = 0, always_loaded: list[str] | None = None
) -> dict[str, Any]:
    rows = [await run(kind, 12, tool_prompt, always_loaded) for kind in RUNS]
    base = rows[0]["effective_input_per_answer"]
    steady = rows[0]["steady_effective_per_answer"]
    for r in rows:
        r["effective_vs_no_tools"] = r["effective_input_per_answer"] / base
        r["steady_vs_no_tools"] = r["steady_effective_per_answer"] / steady
    # The same in longer chats (the definitions weigh less against a bigger cached prompt).
    longer = []
    for turns in LONGER_CHATS:
        trio = [await run(kind, turns, tool_prompt, always_loaded) for kind in RUNS[:3]]
        for r in trio[1:]:
            r["steady_vs_no_tools"] = (
                r["steady_effective_per_answer"] / trio[0]["steady_effective_per_answer"]
            )
        longer.append(trio)
    return {"tokens": rows, "longer_chats": longer, "loop_overhead": await overhead(steps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--tool-prompt-tokens",
        type=int,
        default=0,
        help="the tool-use system prompt the service adds to requests with tools (default 0)",
    )
    parser.add_argument(
        "--always-loaded",
        help="another split to measure: the tools in every prompt, comma-separated (default: "
        "tools.always_loaded's default; '' defers all)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    core = None
    if args.always_loaded is not None:
        core = [n.strip() for n in args.always_loaded.split(",") if n.strip()]
    results = asyncio.run(main_async(args.steps, args.tool_prompt_tokens, core))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    extra = f"; the service's tool prompt: {args.tool_prompt_tokens} tokens"
    print(f"warm chat, 20 messages that need tools{extra if args.tool_prompt_tokens else ''}")
    print(
        f"{'run':<22}{'calls':>6}{'tools':>6}{'search':>7}{'input':>7}{'uncached':>9}"
        f"{'c.read':>8}{'c.write':>8}{'effective':>10}{'x none':>8}{'steady':>8}{'x none':>8}"
    )
    for r in results["tokens"]:
        print(
            f"{r['run']:<22}{r['calls_per_answer']:>6.2f}{r['tool_calls_per_answer']:>6.2f}"
            f"{r['searches']:>7}{r['input_per_answer']:>7.0f}{r['uncached_per_answer']:>9.0f}"
            f"{r['cache_read_per_answer']:>8.0f}{r['cache_write_per_answer']:>8.0f}"
            f"{r['effective_input_per_answer']:>10.0f}{r['effective_vs_no_tools']:>8.3f}"
            f"{r['steady_effective_per_answer']:>8.0f}{r['steady_vs_no_tools']:>8.3f}"
        )
    by = {r["run"]: r for r in results["tokens"]}
    every, defined = by["all_loaded"], by["tools_defined"]
    with_prompt = (
        f" (+ {args.tool_prompt_tokens} of the tool prompt)" if args.tool_prompt_tokens else ""
    )
    once = defined["steady_vs_no_tools"] - 1
    print(
        f"tool definitions in every prompt: {defined['tools_in_prompt']} of "
        f"{defined['tools_defined']} tools and the search tool, "
        f"{defined['tool_definition_tokens']} tokens{with_prompt} (all {every['tools_defined']} "
        f"loaded: {every['tool_definition_tokens']}); once cached (answers 2-20) they add "
        f"{100 * once:.1f} % of effective input (target <= 10 %: "
        f"{'met' if once <= 0.10 else 'NOT met'}); all loaded: "
        f"{100 * (every['steady_vs_no_tools'] - 1):.1f} %; over the 20 answers, their first "
        f"write included: {100 * (defined['effective_vs_no_tools'] - 1):.1f} % "
        f"(all loaded: {100 * (every['effective_vs_no_tools'] - 1):.1f} %)"
    )
    for small, all_loaded, core in results["longer_chats"]:
        print(
            f"in a longer chat ({small['input_per_answer']:.0f} input tokens per answer without "
            f"tools): the definitions add {100 * (core['steady_vs_no_tools'] - 1):.1f} % once "
            f"cached (all loaded: {100 * (all_loaded['steady_vs_no_tools'] - 1):.1f} %)"
        )
    used, used_all = by["tools_used"], by["tools_used_all_loaded"]
    print(
        f"answers that use tools: {used['searches']} of 20 messages needed a search (their "
        f"tool deferred); {used['calls_per_answer']:.2f} calls per answer, effective input "
        f"{used['effective_input_per_answer']:.0f} per answer, "
        f"{used['effective_input_per_answer'] / used_all['effective_input_per_answer']:.3f}x "
        f"the same answers with every definition loaded "
        f"({used_all['effective_input_per_answer']:.0f}), "
        f"{used['effective_vs_no_tools']:.1f}x a plain answer"
    )
    searched = used["searched_at"]
    others = [i for i in range(len(SCRIPT)) if i not in searched]

    def mean(row: dict[str, Any], at: list[int]) -> float:
        return statistics.mean(row["effective_per_message"][i] for i in at)

    if searched:
        print(
            f"  the {len(searched)} answers that searched (each search a second sampling pass "
            f"within the same request, its definitions found read again by the next call): "
            f"{mean(used, searched):.0f} effective input each, {mean(used_all, searched):.0f} "
            f"with every definition loaded; the {len(others)} others: {mean(used, others):.0f} "
            f"and {mean(used_all, others):.0f}"
        )
    o = results["loop_overhead"]
    print(
        f"loop overhead per tool step (model and tool time excluded), {o['steps']} runs: "
        f"median {o['median_ms']:.2f} ms, p90 {o['p90_ms']:.2f} ms (target < 5 ms: "
        f"{'met' if o['median_ms'] < 5 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
