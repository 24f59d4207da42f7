"""The terminal the console channel owns: the conversation on stdout, a prompt while it waits
for a line, and log lines (and late replies, such as a reminder) written above that prompt
rather than into it. Off a terminal (a pipe, a test's StringIO) it writes straight through.

The prompt is cleared with a carriage return and an ANSI erase-line, and drawn again after what
was written above it; what the person had half typed stays in the terminal's line buffer (Enter
still sends it) but is no longer shown, as in most line-based REPLs.
"""

from __future__ import annotations

import threading
from typing import TextIO

PROMPT = "› "
ERASE_LINE = "\r\x1b[2K"


class Terminal:
    def __init__(self, out: TextIO, err: TextIO | None = None, tty: bool | None = None) -> None:
        self.out = out
        self.err = err or out
        self.tty = out.isatty() if tty is None else tty
        self.prompt_shown = False
        # Log lines come from worker threads too (the embedding model, the stdin reader).
        self._lock = threading.RLock()
        self.log = _LogStream(self)

    def show_prompt(self) -> None:
        if not self.tty:
            return
        with self._lock:
            self.out.write(PROMPT)
            self.out.flush()
            self.prompt_shown = True

    def prompt_answered(self) -> None:
        """The person pressed Enter: the cursor is on a fresh line, the prompt is gone."""
        self.prompt_shown = False

    def above(self, stream: TextIO, text: str) -> None:
        with self._lock:
            if self.prompt_shown:
                self.out.write(ERASE_LINE)
                self.out.flush()
            stream.write(text)
            stream.flush()
            if self.prompt_shown:
                self.out.write(PROMPT)
                self.out.flush()

    # The conversation's stream, as the console transport writes it.
    def write(self, text: str) -> int:
        self.above(self.out, text)
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return self.tty


class _LogStream:
    """What the log's terminal sink writes to: standard error, above the prompt."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal

    def write(self, text: str) -> int:
        self.terminal.above(self.terminal.err, text)
        return len(text)

    def flush(self) -> None:
        self.terminal.err.flush()
