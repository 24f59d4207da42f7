"""One daemon per data directory; a killed holder leaves no stale lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.daemon.lock import InstanceLock
from bot.errors import DataDirError


def test_second_lock_is_refused_with_the_holder_pid(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(DataDirError, match="another Familiar process") as info:
            InstanceLock(tmp_path).acquire()
        assert str(__import__("os").getpid()) in str(info.value)
        assert InstanceLock(tmp_path).is_held_elsewhere()
    finally:
        first.release()
    assert not InstanceLock(tmp_path).is_held_elsewhere()


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from bot.daemon.lock import InstanceLock; "
        "InstanceLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        assert InstanceLock(tmp_path).is_held_elsewhere()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 5
    while InstanceLock(tmp_path).is_held_elsewhere() and time.monotonic() < deadline:
        time.sleep(0.05)
    lock = InstanceLock(tmp_path)
    lock.acquire()
    lock.release()
