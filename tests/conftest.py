"""Shared fixtures: every test runs with a clean environment and its own data directory.

Tests that need a program from outside Python (node, espeak-ng, ffmpeg, systemd-analyze, ...)
ask for it with ``require_tool(name)`` or the ``requires_tool(name)`` mark. Without it they skip,
and the run ends with a line saying what was skipped and how to install it; with
``FAMILIAR_TEST_REQUIRE=all`` (or a comma list of tool names), as CI sets it, they fail instead,
so a machine missing a tool cannot pass by silently testing less.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory.service import WARM_THREAD
from tests.stubs.anthropic_stub import LLMStub, llm_stub

CLEARED_PREFIXES = ("FAMILIAR_",)
CLEARED = (
    "CREDENTIALS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "STATE_DIRECTORY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)
VENV_BIN = Path(sys.executable).parent

# Every program a test may need, with how to get it (Debian, as `make system-deps` installs it).
TOOLS = {
    "node": "apt-get install nodejs npm (make system-deps)",
    "npm": "apt-get install nodejs npm (make system-deps)",
    "espeak-ng": "apt-get install espeak-ng (make system-deps)",
    "ffmpeg": "apt-get install ffmpeg (make system-deps)",
    "systemd-analyze": "apt-get install systemd (make system-deps)",
    "familiar": "pip install -e . (make dev): the console script",
}
# Read once at start: the clean_env fixture removes FAMILIAR_* variables while a test runs.
REQUIRED = os.environ.get("FAMILIAR_TEST_REQUIRE", "")
_skipped: Counter[str] = Counter()
_SKIP_REASON = re.compile(r"(?:Skipped: )?(\S+) is not installed")


def tool_required(name: str) -> bool:
    wanted = {w.strip() for w in REQUIRED.split(",") if w.strip()}
    return "all" in wanted or name in wanted


def find_tool(name: str) -> str | None:
    if name == "familiar":
        path = VENV_BIN / "familiar"
        return str(path) if path.exists() else None
    return shutil.which(name)


def require_tool(name: str, why: str = "") -> str:
    """The path of program ``name``; skips the test without it, or fails where it is required."""
    if name not in TOOLS:
        raise ValueError(
            f"{name!r} is not in tests/conftest.py TOOLS: add it with how to install it"
        )
    path = find_tool(name)
    if path is not None:
        return path
    message = f"{name} is not installed{f' ({why})' if why else ''}; install: {TOOLS[name]}"
    if tool_required(name):
        pytest.fail(f"{message}. FAMILIAR_TEST_REQUIRE={REQUIRED} requires it.", pytrace=False)
    pytest.skip(message)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires_tool(name, why=''): the test needs this program (see TOOLS)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires_tool"):
        require_tool(*mark.args, **mark.kwargs)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Counted from the reports, so a module fixture's one skip counts for each test it skips.
    if report.skipped and isinstance(report.longrepr, tuple):
        found = _SKIP_REASON.match(str(report.longrepr[2]))
        if found and found.group(1) in TOOLS:
            _skipped[found.group(1)] += 1


def pytest_sessionfinish() -> None:
    """Let a model load that a test started end before the interpreter does: a thread still in
    torch when it finalises aborts the process ("terminate called without an active
    exception"), and pytest's exit code with it. (The daemon exits without finalising instead:
    ``bot.cli.app._exit_now_if_loading``.)"""
    for thread in threading.enumerate():
        if thread.name == WARM_THREAD:
            thread.join(60)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped:
        terminalreporter.write_line(
            "skipped for missing tools (CI fails instead, FAMILIAR_TEST_REQUIRE=all): "
            + "; ".join(f"{n} ({k} tests): {TOOLS[n]}" for n, k in sorted(_skipped.items())),
            yellow=True,
        )


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting leaks in from the machine; FAMILIAR_DATA_DIR is a fresh directory."""
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) or name in CLEARED:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    data = tmp_path / "data"
    monkeypatch.setenv("FAMILIAR_DATA_DIR", str(data))
    return data


@pytest.fixture
def data_dir(clean_env: Path) -> Path:
    return clean_env


@pytest.fixture
def stub_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMStub]:
    """The daemon's settings, by environment, pointed at the stub model (Anthropic's SDK), for
    tests of the whole service graph (``tests.core_graph``); fact extraction off."""
    with llm_stub() as stub:
        monkeypatch.setenv("FAMILIAR_LLM__PROVIDER", "anthropic")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
        monkeypatch.setenv("FAMILIAR_LLM__FACT_EXTRACTION_EVERY", "0")
        yield stub


@pytest.fixture
def familiar_bin() -> str:
    """The installed console script, as systemd and people run it."""
    return require_tool("familiar")
