"""The instance lock's other outcomes: a data directory that cannot hold the lock file is a clear
error, and the lock names its holder while held and nobody once released."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.daemon.lock import InstanceLock
from bot.errors import DataDirError
from jobs.datalock import LOCK_NAME


def test_a_data_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("a file where the data directory should be")
    with pytest.raises(DataDirError) as caught:
        InstanceLock(not_a_dir).acquire()
    assert f"cannot create the lock file {not_a_dir / LOCK_NAME}" in str(caught.value)
    assert "FAMILIAR_DATA_DIR" in caught.value.explain()
    assert not_a_dir.read_text() == "a file where the data directory should be"


def test_the_lock_file_names_the_holder_only_while_held(tmp_path: Path) -> None:
    with InstanceLock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_a_full_disk_does_not_keep_the_lock_from_being_taken(tmp_path: Path) -> None:
    """Found restarting the daemon while its disk was full (bench/faults.py --scenario
    disk_full): a clean stop empties the lock file, and writing the pid into it again failed
    with ENOSPC, so the daemon refused to start ("cannot create the lock file")."""
    from tests.mounts import fill_up, small_tmpfs

    with small_tmpfs(tmp_path / "mnt", size_mb=1) as mnt:
        with InstanceLock(mnt):
            pass
        filler = fill_up(mnt)
        with InstanceLock(mnt):
            with pytest.raises(DataDirError, match="another Familiar process"):  # held
                InstanceLock(mnt).acquire()
        filler.unlink()
