"""The console channel: ``familiar chat`` talks to the same assistant core as Telegram.

Buttons are shown as numbered choices; typing the number presses the button.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from loguru import logger

from bot.core.assistant import Assistant
from bot.core.commands import parse_id
from bot.core.transport import Transport
from bot.core.types import Button, ButtonPress, Incoming, Reply, Sender, SentMessage
from bot.daemon.lifecycle import Service
from bot.terminal import Terminal

QUIT_WORDS = frozenset({"/quit", "/exit"})  # the console's own; Ctrl-D too
CONSOLE_CHAT_ID = 0  # Telegram chat ids are never 0, so the console has a scope of its own
CONSOLE_USER = Sender(id=0, name=os.environ.get("USER", "you"), is_admin=True)


def _settle(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a person's memory
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class ConsoleTransport(Transport):
    def __init__(self, out: TextIO, files_dir: Path | None = None) -> None:
        self.out = out
        self.files_dir = files_dir or Path.cwd()
        self.choices: dict[int, Button] = {}
        self._count = 0

    def _show(self, reply: Reply, prefix: str = "") -> None:
        self.out.write(f"{prefix}{reply.text}\n")
        if reply.buttons:
            self.choices = {}
            labels = []
            for row in reply.buttons:
                for button in row:
                    number = len(self.choices) + 1
                    self.choices[number] = button
                    labels.append(f"[{number}] {button.label}")
            self.out.write("  " + "  ".join(labels) + "\n")
        self.out.flush()

    async def send(self, chat_id: int, reply: Reply) -> SentMessage:
        self._count += 1
        self._show(reply)
        return SentMessage(chat_id, self._count)

    async def edit(self, message: SentMessage, reply: Reply) -> None:
        self._show(reply, prefix="(updated) ")

    async def send_document(
        self, chat_id: int, data: bytes, filename: str, caption: str = ""
    ) -> None:
        """Written into ``files_dir`` (the data directory's exports/), its path shown."""
        path = self.files_dir / Path(filename).name
        await asyncio.to_thread(_write_private, path, data)
        self._show(Reply(f"{caption} Saved to {path}".strip(), markdown=False))

    async def send_voice(self, chat_id: int, data: bytes, caption: str = "") -> None:
        await self._save_numbered("voice", ".ogg", data, caption or "🔊 Spoken answer.")

    async def send_photo(self, chat_id: int, data: bytes, caption: str = "") -> None:
        await self._save_numbered("picture", ".png", data, caption or "🖼 Picture.")

    async def _save_numbered(self, stem: str, suffix: str, data: bytes, caption: str) -> None:
        """A terminal shows no audio or pictures: they are saved beside exports, and named."""
        self.files_dir.mkdir(parents=True, exist_ok=True)
        n = 1
        while (self.files_dir / f"{stem}-{n}{suffix}").exists():
            n += 1
        path = self.files_dir / f"{stem}-{n}{suffix}"
        path.write_bytes(data)
        self._show(Reply(f"{caption} Saved to {path}", markdown=False))


class ConsoleChannel(Service):
    name = "console"

    def __init__(
        self,
        assistant: Assistant,
        on_eof: Callable[[], None],
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        files_dir: Path | None = None,
    ) -> None:
        self.assistant = assistant
        self.on_eof = on_eof
        self.stdin = stdin or sys.stdin
        out = stdout or sys.stdout
        self.terminal = out if isinstance(out, Terminal) else Terminal(out)
        self.transport = ConsoleTransport(self.terminal, files_dir)  # type: ignore[arg-type]
        self._task: asyncio.Task[None] | None = None
        self._next_id = 0

    async def start(self) -> None:
        self.transport.out.write(
            "Familiar console. Type /help for commands, /quit or Ctrl-D to quit.\n"
        )
        self.transport.out.flush()
        self._task = asyncio.create_task(self._loop(), name="console")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read_line(self) -> str:
        # A daemon thread per read: asyncio cannot read a tty without blocking, and the thread
        # must not keep the process alive at shutdown.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()

        def read() -> None:
            try:
                line = self.stdin.readline()
            except Exception as exc:  # a closed stdin ends the console like EOF
                line = ""
                logger.debug("console read failed: {}", exc)
            self.terminal.prompt_answered()
            loop.call_soon_threadsafe(_settle, future, line)

        self.terminal.show_prompt()

        threading.Thread(target=read, daemon=True, name="console-stdin").start()
        return await future

    async def _loop(self) -> None:
        while True:
            line = await self._read_line()
            text = line.strip()
            if line == "" or text.lower() in QUIT_WORDS:
                self.on_eof()
                return
            if not text:
                continue
            try:
                await self.handle_line(text)
            except Exception:
                logger.exception("console message failed")
                self.transport.out.write(
                    "Sorry, something went wrong; the details are in the log.\n"
                )

    async def handle_line(self, text: str) -> None:
        # The numbered choices answer only the line typed right after them: a "1" typed later
        # (an answer, a count) must not press a button shown long before, such as /forgetme's
        # "Yes, forget me" after "No" was chosen or the question was ignored.
        choices, self.transport.choices = self.transport.choices, {}
        choice = parse_id(text) if text[:1] != "#" else None
        if choice is not None and choice in choices:
            button = choices[choice]
            press = ButtonPress(CONSOLE_CHAT_ID, CONSOLE_USER, button.data, channel="console")
            notice = await self.assistant.press(press, self.transport)
            if notice:
                self.transport.out.write(f"({notice})\n")
                self.transport.out.flush()
            return
        self._next_id += 1
        msg = Incoming(
            CONSOLE_CHAT_ID, CONSOLE_USER, text, message_id=self._next_id, channel="console"
        )
        await self.assistant.handle(msg, self.transport)
