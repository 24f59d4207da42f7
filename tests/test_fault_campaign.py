"""CI's short fault campaign: ``bench/faults.py`` (the real daemon killed, cut off and starved)
once per scenario with a fixed seed. The full campaign (``make faults``) is a benchmark run; this
keeps the scenarios that pass in well under a minute each from regressing. Scenarios left out
here, and why, are listed in the README section "What is guaranteed and how it is tested"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[1]
# One trial each, seed 7: about 20-30 s a scenario on two shared cores. Left out: import and
# training (a minute or more each; their kills are tested in tests/memory/test_memory_kill_cli.py
# and tests/training/test_worker.py), disk_full and readonly (tests/telegram/
# test_storage_faults_e2e.py runs the same faults, the disk filling mid-answer included), backup
# (restore onto a new machine: branch data-backup), agent_task (a trial waits for a cron minute:
# 60-90 s; tests/jobs/test_agent_tools.py replays a run the process died in).
CI_SCENARIOS = ["conversation", "telegram_down", "reminder", "provider"]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_short_fault_campaign_finds_no_violation() -> None:
    require_tool("node", "the Telegram emulator runs on it")
    require_tool("npm", "installs the Telegram emulator")
    require_tool("familiar", "the campaign runs the real CLI and daemon")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAMILIAR_")}
    env["PYTHONPATH"] = str(REPO)
    # Two campaigns side by side (each with its own emulator): their daemons mostly wait, so
    # the pair takes about the time of the longer half, as the full campaigns ran.
    halves = [CI_SCENARIOS[::2], CI_SCENARIOS[1::2]]
    procs = []
    for half in halves:
        args = [sys.executable, str(REPO / "bench" / "faults.py")]
        args += ["--trials", "1", "--seed", "7", "--outage", "5"]
        for name in half:
            args += ["--scenario", name]
        procs.append(
            subprocess.Popen(
                args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    tables = []
    try:
        for half, proc in zip(halves, procs, strict=True):
            out, err = proc.communicate(timeout=880)
            assert proc.returncode == 0, f"{half}: {out}\n{err[-6000:]}"
            tables.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    table = "\n".join(tables)
    for name in CI_SCENARIOS:
        assert f"| {name} | 1 | 1 | 0 | 0 | 0 | 0 |" in table, table
