"""A test that needs a missing program skips on a developer's machine, with a summary line, and
fails where ``FAMILIAR_TEST_REQUIRE`` asks for it (CI), naming the program and how to install it.

Runs pytest as a child process on a real test that needs systemd-analyze, with a PATH that holds
none of the tools, so what is checked is the suite's own behaviour, not a copy of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOOLS, require_tool

REPO = Path(__file__).resolve().parents[1]
TARGET = "tests/test_systemd.py::test_security_exposure_is_at_most_two"


def run_suite(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAMILIAR_")}
    env["PATH"] = str(tmp_path)  # an empty directory: no tool is found
    env["PYTHONPATH"] = str(REPO)
    if require is not None:
        env["FAMILIAR_TEST_REQUIRE"] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", TARGET, "-p", "no:cacheprovider", "-q", "-rs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_the_requirement_a_missing_tool_skips_and_is_summarised(tmp_path: Path) -> None:
    result = run_suite(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "skipped for missing tools" in result.stdout
    assert "systemd-analyze (1 tests): apt-get install systemd" in result.stdout


@pytest.mark.parametrize("require", ["all", "ffmpeg,systemd-analyze"])
def test_where_required_a_missing_tool_fails_naming_it(tmp_path: Path, require: str) -> None:
    result = run_suite(tmp_path, require)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout  # raised in setup, before the test body
    assert "systemd-analyze is not installed" in result.stdout
    assert "apt-get install systemd" in result.stdout


def test_a_requirement_for_other_tools_leaves_this_one_a_skip(tmp_path: Path) -> None:
    result = run_suite(tmp_path, "ffmpeg")
    assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout


def test_an_unknown_tool_is_a_mistake_in_the_test() -> None:
    with pytest.raises(ValueError, match="TOOLS"):
        require_tool("no-such-tool")
    assert {"node", "npm", "espeak-ng", "ffmpeg", "systemd-analyze"} <= set(TOOLS)
