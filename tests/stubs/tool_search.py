"""Anthropic's tool search, as the stub (``anthropic_stub``) simulates it.

What the API documents, and the stub does:

- a tool with ``defer_loading: true`` is not in the prompt: it is neither billed nor part of the
  cached prefix, and the model cannot call it until a search has found it;
- the search is a server tool (``tool_search_tool_bm25_20251119`` or ``..._regex_...``), never
  deferred itself; deferred tools without one are refused (400), as is a ``tool_reference`` to a
  tool the request does not define;
- the model searches within its answer: the response holds a ``server_tool_use`` block (the
  query) and a ``tool_search_tool_result`` block whose ``tool_search_tool_search_result`` lists
  ``tool_reference`` blocks, then the rest of the answer, which may call a tool it found;
- models without tool search refuse it (400): reported for Claude Haiku 4.5 ("does not support
  tool_reference blocks. This feature is only available on Claude Sonnet 4+, Opus 4+, and newer
  models."); the stub takes model names with "haiku" or "claude-3" for such models;
- a reference expands to the tool's full definition inline, where it stands in the
  conversation, after the cached prefix: the definitions found are billed there, in every later
  request that carries the turn back, and the cached prefix stays as it was.

What the stub assumes where the documentation is silent: the answer that searches is sampled
twice within the one response (before the search and after it), and its usage is the sum of both
passes; the second pass reads the first pass's cached prefix and pays the rest (the query and the
expanded definitions included) as uncached input. A plain term-overlap ranking of names,
descriptions and argument names stands in for BM25 (the five best matches, as the API returns a
handful). A scripted call of a deferred tool no search has found is answered 400: the real model
could not make it, so a test that scripts one has a mistake in it.
"""

from __future__ import annotations

import json
import re
from typing import Any

SEARCH_TYPES = {
    "tool_search_tool_bm25_20251119": "tool_search_tool_bm25",
    "tool_search_tool_bm25": "tool_search_tool_bm25",
    "tool_search_tool_regex_20251119": "tool_search_tool_regex",
    "tool_search_tool_regex": "tool_search_tool_regex",
}
MAX_RESULTS = 5
NO_SEARCH_MODELS = ("haiku", "claude-3")
_WORD = re.compile(r"[a-z0-9]+")


def search_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    return next((t for t in body.get("tools") or [] if t.get("type") in SEARCH_TYPES), None)


def deferred(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The request's deferred definitions by name."""
    return {t["name"]: t for t in body.get("tools") or [] if t.get("defer_loading")}


def in_prompt(tool: dict[str, Any]) -> bool:
    """Whether a definition is part of the prompt (and of its cached prefix)."""
    return not tool.get("defer_loading")


def references(block: dict[str, Any]) -> list[str]:
    """The tool names a ``tool_search_tool_result`` block refers to."""
    content = block.get("content") or {}
    return [r.get("tool_name", "") for r in content.get("tool_references") or []]


def loaded(body: dict[str, Any]) -> set[str]:
    """Deferred tools found by searches earlier in the conversation (still expanded there)."""
    names: set[str] = set()
    for m in body.get("messages", []):
        if isinstance(m.get("content"), list):
            for b in m["content"]:
                if b.get("type") == "tool_search_tool_result":
                    names.update(references(b))
    return names


def expanded_text(block: dict[str, Any], tools: dict[str, dict[str, Any]]) -> str:
    """What a ``tool_search_tool_result`` weighs: itself and the definitions it expands to."""
    plain = {k: v for k, v in block.items() if k != "cache_control"}
    found = [
        json.dumps({k: v for k, v in tools[n].items() if k != "defer_loading"}, sort_keys=True)
        for n in references(block)
        if n in tools
    ]
    return "tool_search_tool_result:" + json.dumps(plain, sort_keys=True) + "".join(found)


def problem(body: dict[str, Any]) -> str | None:
    """Why the API would refuse the request (400), or None."""
    tools = body.get("tools") or []
    search = search_tool(body)
    model = str(body.get("model", ""))
    if (search is not None or loaded(body)) and any(m in model for m in NO_SEARCH_MODELS):
        return (
            f"'{model}' does not support tool_reference blocks. This feature is only available "
            "on Claude Sonnet 4+, Opus 4+, and newer models."
        )
    if search is not None and search.get("defer_loading"):
        return "the tool search tool cannot be deferred"
    if deferred(body) and search is None:
        return "tools with defer_loading need a tool search tool in tools"
    names = {t.get("name") for t in tools}
    unknown = sorted(n for n in loaded(body) if n not in names)
    if unknown:
        return f"tool_reference to a tool not in tools: {', '.join(unknown)}"
    return None


def script_problem(
    body: dict[str, Any], calls: list[dict[str, Any]], query: str | None
) -> str | None:
    """Why the scripted answer could not come from the model, or None."""
    if query is not None and search_tool(body) is None:
        return "the script searches for tools, but the request has no tool search tool"
    hidden = deferred(body)
    found = loaded(body) | (set(rank(body, query)) if query is not None else set())
    for call in calls:
        if call["name"] in hidden and call["name"] not in found:
            return f"the script calls {call['name']}, deferred and not found by a search"
    return None


def _words(text: str) -> set[str]:
    return {w[:6] for w in _WORD.findall(text.lower().replace("_", " ")) if len(w) > 2}


def rank(body: dict[str, Any], query: str) -> list[str]:
    """The deferred tools matching the query best (term overlap on name, description and
    argument names), at most ``MAX_RESULTS``."""
    wanted = _words(query)
    scored = []
    for name, tool in deferred(body).items():
        props = (tool.get("input_schema") or {}).get("properties") or {}
        text = " ".join([name, tool.get("description", ""), *props])
        score = len(wanted & _words(text))
        if score:
            scored.append((-score, name))
    return [name for _, name in sorted(scored)[:MAX_RESULTS]]


def search_blocks(body: dict[str, Any], serial: int, query: str) -> list[dict[str, Any]]:
    """The two blocks of a search the model runs within its answer."""
    search = search_tool(body)
    assert search is not None
    use_id = f"srvtoolu_stub_{serial}"
    return [
        {
            "type": "server_tool_use",
            "id": use_id,
            "name": search.get("name", SEARCH_TYPES[search["type"]]),
            "input": {"query": query},
        },
        {
            "type": "tool_search_tool_result",
            "tool_use_id": use_id,
            "content": {
                "type": "tool_search_tool_search_result",
                "tool_references": [
                    {"type": "tool_reference", "tool_name": n} for n in rank(body, query)
                ],
            },
        },
    ]
