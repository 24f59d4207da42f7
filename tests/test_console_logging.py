"""When the console channel owns the terminal, the log goes to a file and only warnings show."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from bot.logs import LOG_FILE, setup_logging
from bot.terminal import ERASE_LINE, PROMPT, Terminal

SECRET = "hunter2-very-secret"


@pytest.fixture
def console_log(tmp_path: Path) -> Iterator[tuple[io.StringIO, Path]]:
    terminal = io.StringIO()
    setup_logging("INFO", secrets=[SECRET], stream=terminal, log_dir=tmp_path)
    yield terminal, tmp_path / LOG_FILE
    logger.remove()


def test_info_goes_to_the_file_and_warnings_to_both(
    console_log: tuple[io.StringIO, Path],
) -> None:
    terminal, path = console_log
    logger.info("applied migration 3 of memory")
    logger.warning("the model provider is unreachable, password {}", SECRET)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("a handler failed")
    shown = terminal.getvalue()
    written = path.read_text()
    assert shown.count(str(path)) == 1  # the path, printed once at start
    assert "applied migration" not in shown and "applied migration" in written
    assert "WARNING: the model provider is unreachable, password ***" in shown
    assert "ERROR: a handler failed" in shown
    assert "Traceback" not in shown and "Traceback" in written  # the details stay in the file
    assert SECRET not in written and SECRET not in shown


def test_without_a_log_dir_everything_reaches_the_stream() -> None:
    terminal = io.StringIO()
    setup_logging("INFO", stream=terminal)
    try:
        logger.info("applied migration 3 of memory")
    finally:
        logger.remove()
    assert "applied migration 3 of memory" in terminal.getvalue()


def _chat_in_a_terminal(familiar_bin: str, *args: str, expect: bytes) -> bytes:
    """Run ``familiar chat ARGS`` with a pty as its whole terminal; return what it showed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [familiar_bin, "chat", *args], stdin=follower, stdout=follower, stderr=follower
    )
    os.close(follower)
    shown = b""
    try:
        deadline = time.monotonic() + 90
        while expect not in shown and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.5)[0]:
                shown += os.read(leader, 65536)
        assert expect in shown, shown.decode(errors="replace")
        time.sleep(0.5)  # what would follow "ready" in the log
        os.write(leader, b"/status\n")
        time.sleep(1.0)
        os.write(leader, b"\x04")  # Ctrl-D ends the console
        end = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < end:
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    shown += os.read(leader, 65536)
                except OSError:
                    break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return shown


def test_familiar_chat_keeps_info_lines_out_of_the_terminal(
    familiar_bin: str, data_dir: Path
) -> None:
    shown = _chat_in_a_terminal(familiar_bin, expect=b"Type /help").decode(errors="replace")
    assert f"Logging to {data_dir / LOG_FILE}" in shown
    assert "| INFO" not in shown, shown
    assert PROMPT in shown.split("Type /help", 1)[1]  # the console waits with a prompt
    log = (data_dir / LOG_FILE).read_text()
    assert "ready in" in log and "| INFO" in log


def test_verbose_keeps_the_log_in_the_terminal(familiar_bin: str, data_dir: Path) -> None:
    shown = _chat_in_a_terminal(familiar_bin, "--verbose", expect=b"Type /help")
    assert b"| INFO" in shown and b"ready in" in shown
    assert not (data_dir / LOG_FILE).exists()


def test_log_lines_and_late_replies_go_above_the_prompt() -> None:
    screen = io.StringIO()
    terminal = Terminal(screen, screen, tty=True)
    terminal.show_prompt()
    terminal.log.write("WARNING: the model provider is unreachable\n")
    terminal.write("⏰ water the plants\n")  # a reminder, while the person is typing
    assert screen.getvalue() == (
        f"{PROMPT}{ERASE_LINE}WARNING: the model provider is unreachable\n{PROMPT}"
        f"{ERASE_LINE}⏰ water the plants\n{PROMPT}"
    )
    terminal.prompt_answered()
    terminal.write("an answer\n")
    assert screen.getvalue().endswith(f"{PROMPT}an answer\n")


def test_off_a_terminal_nothing_but_the_text_is_written() -> None:
    screen = io.StringIO()
    terminal = Terminal(screen)
    terminal.show_prompt()
    terminal.log.write("WARNING: x\n")
    assert screen.getvalue() == "WARNING: x\n"
