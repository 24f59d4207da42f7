"""The repository ships no machine-local paths: a fresh clone must build its own environment.

A ``.venv`` or ``node_modules`` symlink committed by mistake makes ``make run`` in a new clone
install into (and repoint the editable install of) whatever environment the link names, or fail
on a machine where the link dangles.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-s"], capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def test_no_environment_directory_is_tracked() -> None:
    paths = [line.split("\t", 1)[1] for line in tracked_files()]
    local = [p for p in paths if {".venv", "node_modules"} & set(Path(p).parts)]
    assert local == []


def test_no_tracked_symlink_points_outside_the_repository() -> None:
    links = [line.split("\t", 1)[1] for line in tracked_files() if line.startswith("120000 ")]
    outside = [
        p for p in links if not (ROOT / p).resolve(strict=False).is_relative_to(ROOT.resolve())
    ]
    assert outside == []
