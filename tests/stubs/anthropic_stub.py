"""A stub model server on 127.0.0.1: Anthropic's Messages API and OpenAI's chat completions.

Tests point the real ``anthropic`` and ``openai`` SDKs at it, so what is exercised is the real
client code (retries, ``retry-after``, SSE parsing, error classes), not a patched one.

- ``POST /v1/messages``: non-streaming JSON or SSE (``"stream": true``), with simulated prompt
  caching: breakpoints are the blocks marked ``cache_control`` plus, with a top-level
  ``cache_control``, the last block; a later request whose prefix (at any block boundary) matches
  a written breakpoint reports those tokens as ``cache_read_input_tokens``; prefixes shorter than
  ``min_cache_tokens`` are not cached, as with the real API. Tokens are characters / 4. An
  ``output_config.format`` schema counts as a block before the system prompt (Claude receives the
  schema as an added system prompt), so it is part of every cache key: a request that adds or
  changes the schema misses what was cached without it, as reported for the real service. The
  ``output_config.effort`` level is part of the key of the message blocks (not of the system
  prompt's): Anthropic documents that changed thinking settings invalidate cached messages, and
  effort sets how much the model thinks, so the stub takes the cautious reading.
- ``POST /v1/chat/completions``: the OpenAI shape, streaming with ``stream_options.include_usage``.

Tool use: ``Reply(tool_calls=[{"name": ..., "input": {...}}])`` answers with those calls (Anthropic
``tool_use`` blocks with ``stop_reason`` "tool_use"; OpenAI ``tool_calls`` with ``finish_reason``
"tool_calls"), streamed as the real services stream them (``input_json_delta`` fragments; argument
fragments per call index). Tool definitions are part of the simulated cache key: they come before
the system prompt, as in Anthropic's cache prefix, and a ``cache_control`` on a tool marks a
breakpoint there; ``tool_prompt_tokens`` adds the tool-use system prompt the real service adds to
a request with tools, in the cached prefix after them (0 by default: tests count only what the
client sends). ``Reply.tool_calls`` with ``"raw_arguments"`` sends those characters as the
arguments verbatim (a model's malformed call). Tool search (``defer_loading``, the search server
tool, ``Reply(search="query")`` for an answer that searches before its calls) is simulated as
``tests/stubs/tool_search.py`` describes: deferred definitions are not billed in the prefix, the
ones a search finds are billed where they are expanded, and the search pass is billed too.

Replies are scripted (``stub.script(Reply(...), ...)``, consumed in order, by either endpoint);
when the script is empty a default answer is made (a schema-valid document when a JSON schema is
asked for, else an echo). Faults: any status with a retry-after (429, 529, 500, 401, ...), slow
replies, slow streams, malformed bodies, errors in the middle of a stream. Every request body is
recorded in ``stub.requests``.

In tests::

    with llm_stub() as stub:
        stub.script(Reply.error(429, retry_after=0.1), Reply("hello"))
        client = anthropic.AsyncAnthropic(base_url=stub.url, api_key="test")

As a process (for end-to-end tests of the daemon, with ``ANTHROPIC_BASE_URL`` set to its URL)::

    python -m tests.stubs.anthropic_stub --port 0 --script replies.json
    python -m tests.stubs.anthropic_stub --port 0 --reply "Fixed answer." --delay-s 0.2

prints ``LISTENING http://127.0.0.1:PORT`` on its first line and serves until terminated. The
script file holds a JSON list (or JSON lines) of reply objects with the fields of ``Reply``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.stubs import tool_search

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def tokens(text: str) -> int:
    return (len(text) + 3) // 4


@dataclass
class Reply:
    text: str = ""
    json: Any = None  # serialised as the text when given
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the response starts
    chunk_delay_s: float = 0.0  # between SSE chunks
    fault: str | None = None  # "malformed" | "stream_error" | "empty_stream" | "cut"
    stop_reason: str = "end_turn"  # "max_tokens", "refusal", ...
    error_message: str = "stub error"
    # [{"name": str, "input": dict, "id"?: str, "raw_arguments"?: str}]
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # Anthropic: the model searches its deferred tools with this query before its text and calls,
    # having said ``before_search`` first.
    search: str | None = None
    before_search: str = ""

    @classmethod
    def tool(cls, name: str, say: str = "", /, **arguments: Any) -> Reply:
        """A reply that says ``say`` and calls the tool ``name`` with ``arguments``."""
        return cls(say, tool_calls=[{"name": name, "input": arguments}])

    @classmethod
    def searched(cls, name: str, say: str = "", /, **arguments: Any) -> Reply:
        """``tool`` for a deferred tool: the model first searches for it by the words of its
        name (Anthropic's tool search), then says ``say`` and calls it."""
        query = name.replace("__", " ").replace("_", " ")
        return cls(say, tool_calls=[{"name": name, "input": arguments}], search=query)

    def calls(self, serial: int) -> list[dict[str, Any]]:
        """The tool calls with ids (``toolu_stub_<serial>_<n>`` unless given)."""
        return [
            {"id": c.get("id") or f"toolu_stub_{serial}_{i}", **c}
            for i, c in enumerate(self.tool_calls)
        ]

    def final_stop(self) -> str:
        return (
            "tool_use" if self.tool_calls and self.stop_reason == "end_turn" else self.stop_reason
        )

    @classmethod
    def error(
        cls, status: int, retry_after: float | None = None, message: str = "stub error"
    ) -> Reply:
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        return cls(status=status, headers=headers, error_message=message)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reply:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def body_text(self) -> str:
        return json.dumps(self.json) if self.json is not None else self.text


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any


def _example(schema: dict[str, Any]) -> Any:
    # Imported lazily so the stub runs as a process without the project on the path.
    from agents.providers.fake import example_for_schema

    return example_for_schema(schema)


class LLMStub:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        min_cache_tokens: int = 1024,
        tool_prompt_tokens: int = 0,
    ) -> None:
        self.min_cache_tokens = min_cache_tokens
        self.tool_prompt_tokens = tool_prompt_tokens
        self.requests: list[RecordedRequest] = []
        self.replies: deque[Reply] = deque()
        self.responder: Callable[[str, dict[str, Any]], Reply] | None = None
        self.cache: set[str] = set()
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                stub._handle(self)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> LLMStub:
        # A short poll interval makes stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, *replies: Reply | str) -> None:
        with self.lock:
            self.replies.extend(Reply(r) if isinstance(r, str) else r for r in replies)

    def bodies(self, path: str = "/v1/messages") -> list[Any]:
        return [r.body for r in self.requests if r.path == path]

    # -- request handling ------------------------------------------------------------------
    def _next_reply(self, path: str, body: dict[str, Any]) -> Reply:
        with self.lock:
            if self.replies:
                return self.replies.popleft()
        if self.responder is not None:
            return self.responder(path, body)
        return self._default(path, body)

    @staticmethod
    def _default(path: str, body: dict[str, Any]) -> Reply:
        schema = None
        if path.endswith("/messages"):
            schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
        else:
            schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        if schema is not None:
            return Reply(json=_example(schema))
        last = ""
        for m in reversed(body.get("messages", [])):
            if m.get("role") == "tool":  # OpenAI: the result of a tool call
                return Reply(f"stub answer with: {str(m.get('content'))[:200]}")
            if m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, str):
                    last = c
                    break
                results = [b for b in c if b.get("type") == "tool_result"]
                if results:
                    return Reply(f"stub answer with: {str(results[-1].get('content'))[:200]}")
                last = " ".join(b.get("text", "") for b in c)
                break
        return Reply(f"stub answer to: {last[:200]}")

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        path = h.path.split("?")[0]
        with self.lock:
            self.requests.append(RecordedRequest(path, dict(h.headers), body))
        if path not in ("/v1/messages", "/v1/chat/completions"):
            self._send_json(
                h,
                404,
                {
                    "type": "error",
                    "error": {"type": "not_found_error", "message": f"no route {path}"},
                },
            )
            return
        refused = tool_search.problem(body) if path == "/v1/messages" else None
        if refused is not None:  # refused before the model sees it: no scripted reply taken
            err = {"type": "invalid_request_error", "message": refused}
            self._send_json(h, 400, {"type": "error", "error": err})
            return
        reply = self._next_reply(path, body)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            err = {
                "type": "error",
                "error": {
                    "type": ERROR_TYPES.get(reply.status, "api_error"),
                    "message": reply.error_message,
                },
            }
            self._send_json(h, reply.status, err, reply.headers)
            return
        if path == "/v1/messages":
            self._messages(h, body, reply)
        else:
            self._chat_completions(h, body, reply)

    def _send_json(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.send_header("request-id", f"req_stub_{len(self.requests)}")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    # -- Anthropic -------------------------------------------------------------------------
    def _prompt_usage(
        self, body: dict[str, Any], after: list[dict[str, Any]] | None = None
    ) -> dict[str, int]:
        """Token counts of a request, with prompt caching simulated (see the module docstring);
        ``after``: assistant blocks sampled within the answer (a tool search), read as uncached
        input after the prompt."""
        blocks: list[tuple[str, bool]] = []  # (text, marked for caching)
        hidden = tool_search.deferred(body)
        for tool in body.get("tools") or []:
            if not tool_search.in_prompt(tool):
                continue
            plain = {k: v for k, v in tool.items() if k != "cache_control"}
            blocks.append(("tool:" + json.dumps(plain, sort_keys=True), "cache_control" in tool))
        if body.get("tools") and self.tool_prompt_tokens:
            blocks.append(("t" * (4 * self.tool_prompt_tokens), False))
        schema = (body.get("output_config") or {}).get("format")
        if schema:
            blocks.append(("format:" + json.dumps(schema, sort_keys=True), False))
        system = body.get("system")
        if isinstance(system, str):
            blocks.append((system, False))
        elif isinstance(system, list):
            blocks += [(b.get("text", ""), "cache_control" in b) for b in system]
        first_message = len(blocks)
        for m in body.get("messages", []):
            content = m.get("content")
            if isinstance(content, str):
                blocks.append((m.get("role", "") + ":" + content, False))
            else:
                blocks += [
                    (m.get("role", "") + ":" + _block_text(b, hidden), "cache_control" in b)
                    for b in content
                ]
        if body.get("cache_control") and blocks:
            blocks[-1] = (blocks[-1][0], True)
        blocks += [("assistant:" + _block_text(b, hidden), False) for b in after or []]
        digest = hashlib.sha256(str(body.get("model")).encode())
        cumulative, hashes = [], []
        total = 0
        effort = str((body.get("output_config") or {}).get("effort", ""))
        for i, (text, _) in enumerate(blocks):
            if i == first_message:  # from here on the key includes the effort level
                digest.update(b"\x01effort:" + effort.encode())
            digest.update(b"\x00" + text.encode())
            total += tokens(text)
            cumulative.append(total)
            hashes.append(digest.hexdigest())
        marks = [i for i, (_, marked) in enumerate(blocks) if marked]
        read = 0
        read_index = -1
        with self.lock:
            if marks:
                for i in range(marks[-1], -1, -1):
                    if hashes[i] in self.cache:
                        read, read_index = cumulative[i], i
                        break
            written = 0
            for i in marks:
                if i > read_index and cumulative[i] >= self.min_cache_tokens:
                    self.cache.add(hashes[i])
                    written = cumulative[i] - read
        return {
            "input_tokens": total - read - written,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        }

    def _messages(self, h: BaseHTTPRequestHandler, body: dict[str, Any], reply: Reply) -> None:
        calls = reply.calls(len(self.requests))
        refused = tool_search.script_problem(body, calls, reply.search)
        if refused is not None:
            err = {"type": "invalid_request_error", "message": refused}
            self._send_json(h, 400, {"type": "error", "error": err})
            return
        usage = self._prompt_usage(body)
        text = reply.body_text()
        out_tokens = tokens(text)
        model = body.get("model", "stub-model")
        msg_id = f"msg_stub_{len(self.requests)}"
        if reply.fault == "malformed" and not body.get("stream"):
            self._send_json(h, 200, None, raw=b'{"id": "msg_broken", "content": [ {"type": "te')
            return
        out_tokens += sum(tokens(json.dumps(c.get("input", {}))) for c in calls)
        searched: list[dict[str, Any]] = []
        if reply.search is not None:
            # Sampled twice: up to the search, then on from its result (see tool_search.py).
            searched = tool_search.search_blocks(body, len(self.requests), reply.search)
            if reply.before_search:
                searched.insert(0, {"type": "text", "text": reply.before_search})
            again = self._prompt_usage(body, searched)
            usage = {k: usage[k] + again[k] for k in usage}
            out_tokens += tokens(json.dumps(searched[:-1]))
        if not body.get("stream"):
            content: list[dict[str, Any]] = list(searched)
            content += [{"type": "text", "text": text}] if text else []
            content += [
                {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c.get("input", {})}
                for c in calls
            ]
            message = {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": reply.final_stop(),
                "stop_sequence": None,
                "usage": usage | {"output_tokens": out_tokens},
            }
            self._send_json(h, 200, message, reply.headers)
            return
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        for k, v in reply.headers.items():
            h.send_header(k, v)
        h.end_headers()

        def event(name: str, data: Any) -> None:
            payload = data if isinstance(data, str) else json.dumps(data)
            h.wfile.write(f"event: {name}\ndata: {payload}\n\n".encode())
            h.wfile.flush()

        event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage | {"output_tokens": 1},
                },
            },
        )
        if reply.fault == "empty_stream":
            return
        for n, block in enumerate(searched):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                event(
                    "content_block_start",
                    {"type": "content_block_start", "index": n, "content_block": start},
                )
                delta = {"type": "text_delta", "text": block["text"]}
                event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": n, "delta": delta},
                )
            elif block["type"] == "server_tool_use":
                start = block | {"input": {}}
                event(
                    "content_block_start",
                    {"type": "content_block_start", "index": n, "content_block": start},
                )
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
                event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": n, "delta": delta},
                )
            else:
                event(
                    "content_block_start",
                    {"type": "content_block_start", "index": n, "content_block": block},
                )
            event("content_block_stop", {"type": "content_block_stop", "index": n})
        at = len(searched)  # the text block's index
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": at,
                "content_block": {"type": "text", "text": ""},
            },
        )
        event("ping", {"type": "ping"})
        for i, chunk in enumerate(_chunks(text)):
            if reply.chunk_delay_s:
                time.sleep(reply.chunk_delay_s)
            if reply.fault == "malformed" and i == 1:
                h.wfile.write(b'event: content_block_delta\ndata: {"type": "content_bl\n\n')
                h.wfile.flush()
                return
            if reply.fault == "cut" and i == 1:
                return  # the connection ends part-way: no message_delta, no message_stop
            if reply.fault == "stream_error" and i == 1:
                event(
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                )
                return
            event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": at,
                    "delta": {"type": "text_delta", "text": chunk},
                },
            )
        event("content_block_stop", {"type": "content_block_stop", "index": at})
        for n, c in enumerate(calls, start=at + 1):
            event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": n,
                    "content_block": {
                        "type": "tool_use",
                        "id": c["id"],
                        "name": c["name"],
                        "input": {},
                    },
                },
            )
            arguments = c.get("raw_arguments") or json.dumps(c.get("input", {}))
            for i in range(0, len(arguments), 7):
                event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": n,
                        "delta": {"type": "input_json_delta", "partial_json": arguments[i : i + 7]},
                    },
                )
            event("content_block_stop", {"type": "content_block_stop", "index": n})
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.final_stop(), "stop_sequence": None},
                "usage": {"output_tokens": out_tokens},
            },
        )
        event("message_stop", {"type": "message_stop"})

    # -- OpenAI ----------------------------------------------------------------------------
    def _chat_completions(
        self, h: BaseHTTPRequestHandler, body: dict[str, Any], reply: Reply
    ) -> None:
        prompt = sum(tokens(json.dumps(m)) for m in body.get("messages", []))
        prompt += sum(tokens(json.dumps(t)) for t in body.get("tools") or [])
        text = reply.body_text()
        finish = {
            "end_turn": "stop",
            "max_tokens": "length",
            "refusal": "content_filter",
            "tool_use": "tool_calls",
        }.get(reply.final_stop(), "stop")
        calls = [
            {
                "id": c["id"],
                "type": "function",
                "function": {
                    "name": c["name"],
                    "arguments": c.get("raw_arguments") or json.dumps(c.get("input", {})),
                },
            }
            for c in reply.calls(len(self.requests))
        ]
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": tokens(text),
            "total_tokens": prompt + tokens(text),
        }
        base = {
            "id": f"chatcmpl-stub{len(self.requests)}",
            "created": int(time.time()),
            "model": body.get("model", "stub-model"),
        }
        if reply.fault == "malformed" and not body.get("stream"):
            self._send_json(h, 200, None, raw=b'{"id": "chatcmpl-broken", "choices": [')
            return
        if not body.get("stream"):
            self._send_json(
                h,
                200,
                base
                | {
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text or None}
                            | ({"tool_calls": calls} if calls else {}),
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                },
                reply.headers,
            )
            return
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.end_headers()

        def data(payload: Any) -> None:
            h.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            h.wfile.flush()

        chunk_base = base | {"object": "chat.completion.chunk"}
        for i, chunk in enumerate(_chunks(text)):
            if reply.chunk_delay_s:
                time.sleep(reply.chunk_delay_s)
            if reply.fault == "stream_error" and i == 1:
                # What OpenAI-compatible servers send when generation fails part-way.
                data({"error": {"message": reply.error_message, "type": "server_error"}})
                return
            if reply.fault == "cut" and i == 1:
                return  # the connection ends part-way: no finish_reason, no [DONE]
            delta = {"content": chunk} | ({"role": "assistant"} if i == 0 else {})
            data(chunk_base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        for n, c in enumerate(calls):
            args = c["function"]["arguments"]
            pieces = [args[i : i + 7] for i in range(0, len(args), 7)] or [""]
            for i, piece in enumerate(pieces):
                fragment: dict[str, Any] = {"index": n, "function": {"arguments": piece}}
                if i == 0:
                    fragment |= {"id": c["id"], "type": "function"}
                    fragment["function"]["name"] = c["function"]["name"]
                delta = {"tool_calls": [fragment]}
                data(
                    chunk_base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                )
        data(chunk_base | {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            data(chunk_base | {"choices": [], "usage": usage})
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()


def _block_text(b: dict[str, Any], deferred: dict[str, dict[str, Any]]) -> str:
    """What a message block weighs and how it is keyed in the simulated cache (a tool search's
    result with the ``deferred`` definitions it expands to)."""
    kind = b.get("type")
    if kind == "text":
        return str(b.get("text", ""))
    if kind == "tool_search_tool_result":
        return tool_search.expanded_text(b, deferred)
    plain = {k: v for k, v in b.items() if k != "cache_control"}
    return f"{kind}:" + json.dumps(plain, sort_keys=True)


def content_text(content: Any) -> str:
    """A request message's text: the string, or its blocks' texts joined by spaces."""
    if isinstance(content, str):
        return content
    return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))


def _chunks(text: str, size: int = 3) -> list[str]:
    """Text split into deltas of a few words each, spaces kept, so joining restores it."""
    words = text.split(" ")
    return (
        [
            " ".join(words[i : i + size]) + (" " if i + size < len(words) else "")
            for i in range(0, len(words), size)
        ]
        if text
        else []
    )


@contextmanager
def llm_stub(min_cache_tokens: int = 1024) -> Iterator[LLMStub]:
    """A running stub on a free port for the duration of the block."""
    stub = LLMStub(min_cache_tokens=min_cache_tokens).start()
    try:
        yield stub
    finally:
        stub.stop()


def load_script(path: Path) -> list[Reply]:
    text = path.read_text(encoding="utf-8").strip()
    items = (
        json.loads(text)
        if text.startswith("[")
        else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    return [Reply(i) if isinstance(i, str) else Reply.from_dict(i) for i in items]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stub Anthropic/OpenAI server for tests.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--script", type=Path, help="JSON list or JSON lines of replies")
    parser.add_argument("--min-cache-tokens", type=int, default=1024)
    parser.add_argument(
        "--reply", help="when the script is used up, answer every request with this text"
    )
    parser.add_argument(
        "--delay-s", type=float, default=0.0, help="with --reply: seconds before each answer"
    )
    args = parser.parse_args(argv)
    stub = LLMStub(port=args.port, min_cache_tokens=args.min_cache_tokens)
    if args.script:
        stub.script(*load_script(args.script))
    if args.reply is not None:
        fixed = Reply(args.reply, delay_s=args.delay_s)
        stub.responder = lambda path, body: fixed
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stub.start()
    print(f"LISTENING {stub.url}", flush=True)
    stop.wait()
    stub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
