"""Shared fixtures: every test runs with a clean environment and its own data directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

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
def familiar_bin() -> str:
    """The installed console script, as systemd and people run it."""
    path = VENV_BIN / "familiar"
    if not path.exists():
        pytest.skip("the familiar console script is not installed (run `make test`)")
    return str(path)
