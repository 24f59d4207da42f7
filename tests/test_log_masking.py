"""Secrets never reach the log: configured values, token-shaped strings, tracebacks."""

from __future__ import annotations

import io
import json
import logging

import pytest
from loguru import logger

from bot.logs import SecretMasker, setup_logging

TOKEN = "1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
API_KEY = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789"
CUSTOM = "hunter2-very-secret"


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    setup_logging("DEBUG", secrets=[CUSTOM], stream=out)
    yield out
    logger.remove()


def test_configured_secret_is_masked(stream: io.StringIO) -> None:
    logger.info("the password is {}", CUSTOM)
    assert CUSTOM not in stream.getvalue()
    assert "the password is ***" in stream.getvalue()


def test_bot_token_in_a_stdlib_url_is_masked(stream: io.StringIO) -> None:
    logging.getLogger("httpx").warning(
        "HTTP Request: POST https://api.telegram.org/bot%s/getUpdates", TOKEN
    )
    out = stream.getvalue()
    assert TOKEN not in out
    assert "api.telegram.org/bot***/getUpdates" in out


def test_api_key_in_a_traceback_is_masked(stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"auth failed for key {API_KEY}")
    except RuntimeError:
        logger.exception("provider call failed")
    out = stream.getvalue()
    assert "RuntimeError" in out  # the traceback is there
    assert API_KEY not in out


def test_json_lines_are_masked_and_valid() -> None:
    out = io.StringIO()
    setup_logging("INFO", json_lines=True, secrets=[CUSTOM], stream=out)
    try:
        logger.info("token {} and {}", TOKEN, CUSTOM)
    finally:
        logger.remove()
    record = json.loads(out.getvalue().strip())
    assert record["record"]["message"] == "token *** and ***"


def test_masker_prefers_the_longest_secret() -> None:
    masker = SecretMasker(["abcdef", "abcdefghij"])
    assert masker("x abcdefghij y") == "x *** y"


def test_bearer_header_is_masked() -> None:
    assert "topsecretvalue1234567" not in SecretMasker()(
        "Authorization: Bearer topsecretvalue1234567"
    )
