"""Logging: loguru to stderr (journald takes it under systemd), text or JSON lines.

When the console channel owns the terminal, the log would interleave with the conversation, so
it goes to ``familiar.log`` in the data directory instead (its path printed once) and only
warnings and errors still reach the terminal; ``familiar run|chat --verbose`` keeps it all there.

The stdlib loggers of python-telegram-bot, httpx and APScheduler are routed into loguru, and
every line, traceback included, passes through a mask that hides configured secrets and
anything shaped like a bot token or an API key. httpx logs request URLs, and a Bot API URL
carries the token, so the mask is not optional.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from loguru import logger

MASK = "***"
# Telegram bot tokens, Anthropic/OpenAI-style keys, and bearer tokens in headers.
TOKEN_PATTERNS = [
    re.compile(r"(?<![0-9])\d{5,16}:[A-Za-z0-9_-]{30,}"),
    re.compile(r"\bsk-(?:ant-)?[A-Za-z0-9_-]{16,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{16,}"),
    re.compile(r"(?i)(x-api-key['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9._-]{16,}"),
]


class SecretMasker:
    """Replaces known secret values and token-shaped strings with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        known = {s for s in (*self.secrets, *secrets) if s and len(s) >= 6}
        self.secrets = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern in TOKEN_PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
        return text


class _InterceptHandler(logging.Handler):
    """Sends stdlib records to loguru, keeping the caller's depth (from loguru's README)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 2
        while frame and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"
CONSOLE_FORMAT = "{level}: {message}"
LOG_FILE = "familiar.log"
TERMINAL_LEVEL = "WARNING"  # what still reaches a terminal the console channel owns
ROTATE_BYTES = 20 * 1024 * 1024


def _level_no(level: str) -> int:
    return int(logger.level(level).no)


def setup_logging(
    level: str = "INFO",
    json_lines: bool = False,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    log_dir: Path | None = None,
) -> SecretMasker:
    """Configure loguru once for the process; returns the masker so secrets can be added later.

    ``log_dir`` (given when the console channel owns the terminal): the log goes to
    ``log_dir/familiar.log``, whose path is printed once, and the terminal gets only warnings and
    errors, one short line each."""
    masker = SecretMasker(secrets)
    out = stream or sys.stderr

    def sink(message: str) -> None:
        out.write(masker(str(message)))
        out.flush()

    logger.remove()
    if log_dir is None:
        logger.add(
            sink,
            level=level,
            format=TEXT_FORMAT,
            serialize=json_lines,
            backtrace=False,
            diagnose=False,  # diagnose prints local variables, which may hold secrets
            colorize=False,
        )
    else:
        path = log_dir / LOG_FILE
        if path.exists() and path.stat().st_size > ROTATE_BYTES:
            path.replace(path.with_name(LOG_FILE + ".1"))  # one old file kept, checked at start
        log_file = path.open("a", encoding="utf-8")

        def file_sink(message: str) -> None:
            log_file.write(masker(str(message)))
            log_file.flush()

        logger.add(
            file_sink,
            level=level,
            format=TEXT_FORMAT,
            serialize=json_lines,
            backtrace=False,
            diagnose=False,
            colorize=False,
        )
        logger.add(
            sink,
            level=max(_level_no(level), _level_no(TERMINAL_LEVEL)),
            format=lambda _record: CONSOLE_FORMAT + "\n",  # a callable: no traceback here
            backtrace=False,
            diagnose=False,
            colorize=False,
        )
        out.write(f"Logging to {path} (warnings and errors also here; --verbose shows all).\n")
        out.flush()
    logging.basicConfig(handlers=[_InterceptHandler()], level=0, force=True)
    for noisy in ("httpx", "httpcore", "apscheduler", "telegram", "urllib3", "filelock"):
        logging.getLogger(noisy).handlers = []
        logging.getLogger(noisy).propagate = True
    # httpx logs every request at INFO; a poll every few seconds is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(
        logging.WARNING if level != "DEBUG" else logging.DEBUG
    )
    return masker
